"""``totes demo``: the whole pipeline on nothing but Python.

Starts an embedded PostgreSQL (the ``pgserver`` wheel, which ships its own server binaries) holding a
``totesys`` source and a ``warehouse`` database, uses a local folder as the lake and, without
``PREFECT_API_URL``, totes's local background Prefect server (``flows/cli/local_api.py``, started if
none answers, as by any command), then: seed, run, churn, run, and show what landed. Then the file
feeds: a loopback SFTP server receives an exchange-rates file, an amended version of it, a malformed
file and finally the removal of the first file, with ``totes files`` after each step.

It ends by handing over: what it left running (the embedded PostgreSQL, the local Prefect API) and
how to stop it, where the warehouse and the lake are and how to query them, the Prefect UI, and the
settings file (``<dir>/totes.env``) that points ``totes status`` and the other commands at them.
"""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from tasks.core.postgres import connect
from tasks.sandbox.demo_queries import (
    exchange_rates_by_file,
    revenue_by_month,
)
from tasks.sandbox.embedded_postgres import (
    embedded_postgres_pid,
    embedded_psql,
    recreate_databases,
    start_embedded_postgres,
)
from tasks.sandbox.sample_feeds import exchange_rates_csv
from tasks.sandbox.sftp_server import LoopbackSftpServer
from tasks.sandbox.totesys import churn, seed_from_dump, seed_generated

DEMO_DATABASES = ("totesys", "warehouse")


def _banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def run_demo(folder: Path, *, scale: float, dump: Path | None) -> None:
    """Seed, run, churn, run on embedded components under ``folder``, printing what landed."""
    from flows.cli.status import read_status, status_text
    from flows.etl import totesys_etl
    from tasks.settings import load_settings

    folder = folder.resolve()
    lake_dir = folder / "lake"
    shutil.rmtree(lake_dir, ignore_errors=True)
    _banner(f"Starting an embedded PostgreSQL in {folder / 'pgdata'}")
    # Left running at the end, for the user to look at what the demo built (the handover says so).
    server_url = start_embedded_postgres(folder / "pgdata", fresh=False, keep_running=True)
    urls = recreate_databases(server_url, DEMO_DATABASES)
    os.environ["TOTES_SOURCE_URL"] = urls["totesys"]
    os.environ["TOTES_WAREHOUSE_URL"] = urls["warehouse"]
    os.environ["TOTES_LAKE_URL"] = str(lake_dir)

    with connect(urls["totesys"]) as source:
        if dump:
            _banner(f"Seeding ToteSys from {dump}")
            counts = seed_from_dump(source, dump)
        else:
            _banner(f"Seeding ToteSys at scale {scale:g}")
            counts = seed_generated(source, scale)
    print(", ".join(f"{table} {rows}" for table, rows in counts.items()))

    for step, title in enumerate(("Full load", "Churn, then an incremental run"), start=1):
        if step == 2:
            with connect(urls["totesys"]) as source:
                churn(source, orders=30)
        _banner(f"{title}: totes run")
        started = time.perf_counter()
        summary = totesys_etl()
        print(summary.as_text())
        print(f"run {step} took {time.perf_counter() - started:.1f} s")

    with connect(urls["warehouse"]) as warehouse:
        _banner("Sales revenue by month and currency (latest version of each order), newest months")
        print(f"{'month':<9}{'currency':<10}{'orders':>8}{'revenue':>18}")
        for month, currency, orders, revenue in revenue_by_month(warehouse, months=3):
            print(f"{month:<9}{currency:<10}{orders:>8}{revenue:>18}")

    run_feeds_demo(folder, urls["warehouse"])
    _banner("Where it all stands: totes status")
    print(status_text(read_status(load_settings())))
    _hand_over(folder, urls)


def _shown(path: Path) -> str:
    """``path`` as a person types it where they stand: relative when it is under the working folder."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _command(name: str) -> str:
    """How to call ``name`` (``totes``, ``python``) of this installation from the working folder."""
    beside = Path(sys.executable).parent / name
    on_path = shutil.which(name)
    if on_path is not None and Path(on_path).resolve() == beside.resolve():
        return name
    return _shown(beside)


def _write_settings(folder: Path, urls: dict[str, str]) -> Path:
    """``<folder>/totes.env``: the demo's source, warehouse and lake as shell exports (no password:
    the embedded PostgreSQL is reached on a unix socket, with trust authentication)."""
    settings = folder / "totes.env"
    lines = [
        "# The demo's source, warehouse and lake, for totes commands in this shell (written by totes demo):",
        f"#   . {shlex.quote(_shown(settings))}",
        f"export TOTES_SOURCE_URL={shlex.quote(urls['totesys'])}",
        f"export TOTES_WAREHOUSE_URL={shlex.quote(urls['warehouse'])}",
        f"export TOTES_LAKE_URL={shlex.quote(str(folder / 'lake'))}",
    ]
    settings.write_text("\n".join(lines) + "\n")
    return settings


def _hand_over(folder: Path, urls: dict[str, str]) -> None:
    """What the demo leaves: what runs and how to stop it, where the data is and how to query it."""
    from prefect.settings import PREFECT_UI_URL, get_current_settings

    from flows.cli.local_api import running_local_api
    from tasks.core.prefect_api import is_local_api

    settings = _write_settings(folder, urls)
    totes = _command("totes")
    pgdata = folder / "pgdata"
    psql = _shown(embedded_psql())
    api_url = get_current_settings().api.url
    local_api = running_local_api() if is_local_api(api_url) else None

    _banner("What the demo leaves you")
    stop_postgres = f"{_command('python')} -m tasks.sandbox.embedded_postgres stop {_shown(pgdata)}"
    postgres = f"the embedded PostgreSQL (process {embedded_postgres_pid(pgdata)})"
    if local_api is not None:
        stops = (
            f", which stops by itself after {local_api.idle_minutes:g} minutes without a request"
            if local_api.idle_minutes
            else ""
        )
        print(f"Left running: {postgres} and the local Prefect API (process {local_api.pid}){stops}.")
        print(f"  To stop both now: {stop_postgres}; {totes} local-api stop")
        print(f"Prefect UI: {local_api.url.removesuffix('/api')} (every run above, with its tasks and logs)")
    else:
        print(f"Left running: {postgres}. To stop it: {stop_postgres}")
        if api_url:
            print(f"Prefect UI: {PREFECT_UI_URL.value() or api_url} (your Prefect API holds every run above)")
        else:
            print("Prefect: the runs used Prefect's temporary server, which stopped with the demo")
    print(f"Warehouse: {urls['warehouse']} (a unix socket, no password); query it:")
    example = "select * from current_fact_sales_order limit 5"  # nosec B608 - printed for the user, not run
    print(f"  {psql} {shlex.quote(urls['warehouse'])} -c '{example}'")
    print(
        f"Lake: {_shown(folder / 'lake')} (Parquet: raw/ and star/<table>/batch=<id>/, feed files in files/); read it:"
    )
    star = _shown(folder / "lake" / "star" / "fact_sales_order" / "*" / "*.parquet")
    print(f"  {_command('python')} -c \"import polars as pl; print(pl.read_parquet('{star}'))\"")
    print("totes on the demo's data (status, churn, run; the next totes demo starts them afresh):")
    print(f"  . {shlex.quote(_shown(settings))}; {totes} status")
    print(
        "On your own databases: set TOTES_SOURCE_URL, TOTES_WAREHOUSE_URL and TOTES_LAKE_URL (see docs/getting-started/own-databases.md)."
    )


# Daily rates to GBP of the currencies the seeded ToteSys knows.
DEMO_RATES = {"GBP": Decimal("1"), "USD": Decimal("1.2634"), "EUR": Decimal("1.1688")}


def run_feeds_demo(folder: Path, warehouse_url: str) -> None:
    """Drop, amend and remove exchange-rates files on a loopback SFTP server, with a files cycle
    after each step, and show the warehouse following exactly the files on the server."""
    from flows.files import FeedFilesRefused, totesys_files

    sftp_root = folder / "sftp"
    shutil.rmtree(sftp_root, ignore_errors=True)
    rates_dir = sftp_root / "exchange-rates"
    rates_dir.mkdir(parents=True)
    _banner(f"File feeds: an SFTP server on 127.0.0.1 serving {sftp_root}")
    with LoopbackSftpServer(sftp_root, password=secrets.token_urlsafe(16)) as server:
        os.environ["TOTES_SFTP_URL"] = server.url
        os.environ["TOTES_SFTP_KNOWN_HOSTS"] = str(server.write_known_hosts(folder / "known_hosts"))
        today = datetime.now(UTC).date()
        week = [today - timedelta(days=n) for n in range(14, 7, -1)]
        last_week = [today - timedelta(days=n) for n in range(7, 0, -1)]
        steps: list[tuple[str, dict[str, bytes | None]]] = [
            (
                "A partner drops two weekly rates files",
                {
                    "rates-week-1.csv": exchange_rates_csv(week, DEMO_RATES),
                    "rates-week-2.csv": exchange_rates_csv(last_week, DEMO_RATES),
                },
            ),
            (
                "They re-send week 1 amended (USD corrected, one day fewer): old rows out, new rows in",
                {
                    "rates-week-1.csv": exchange_rates_csv(week[:-1], DEMO_RATES | {"USD": Decimal("1.2701")}),
                },
            ),
            (
                "They drop a malformed file: it is quarantined, everything else stays",
                {
                    "rates-broken.csv": b"rate_date,currency_code,rate_to_gbp\n2024-02-30,EUR,1.17\n",
                },
            ),
            (
                "They remove week 1 and the broken file from the server: their rows leave the warehouse",
                {
                    "rates-week-1.csv": None,
                    "rates-broken.csv": None,
                },
            ),
        ]
        for title, changes in steps:
            _banner(f"{title}: totes files")
            for name, content in changes.items():
                if content is None:
                    (rates_dir / name).unlink()
                else:
                    (rates_dir / name).write_bytes(content)
            try:
                print(totesys_files().as_text())
            except FeedFilesRefused as refused:
                print(refused.summary.as_text())
            with connect(warehouse_url) as warehouse:
                print(f"\n{'fact_exchange_rate by source file':<40}{'version':<28}{'rows':>6}{'USD rate (latest)':>20}")
                for source_file, version, rows, usd in exchange_rates_by_file(warehouse):
                    print(f"{source_file:<40}{version[:26]:<28}{rows:>6}{usd or '':>20}")
    print(f"\nEvery version of every file is kept in {folder / 'lake' / 'files' / 'raw'}.")


if __name__ == "__main__":
    # ``python flows/cli/demo.py``: the demo, exactly as ``totes demo`` runs it (the same settings, Prefect API, output and exit
    # status). Handed to the command line by name: no flow module depends on the CLI.
    import runpy
    import sys

    sys.argv = ["totes", "demo"]
    runpy.run_module("flows.cli", run_name="__main__", alter_sys=True)
