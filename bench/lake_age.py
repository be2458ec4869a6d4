"""``make bench-lake-age``: what a lake's age costs. A 15-minute schedule writes 35,000 batches a
year; this measures ``totes run`` (no-op and after a small churn), ``totes status``, ``totes
backfill``, switching history mode on and ``totes rebuild`` on a lake of 2 batches and on lakes of
N batches, in one run, so each figure stands beside its young-lake baseline.

A lake is aged quickly: after two real runs (the full load, then a churn), the second batch is
written again N - 2 times under new batch ids — its raw and star manifests, naming the same files —
and the warehouse records each as loaded, as a warehouse kept in step for that long would. The
batches are small (what a quiet source gives); their count, not their size, is what is measured.
Every figure is a whole ``totes`` process (wall seconds; the no-op run and status: the median of
three), on a local-folder lake and, with ``--s3``,
on a lake in moto's S3 server too (whose listing is far faster than S3's: count requests, not
seconds, there).

Usage: python -m bench.lake_age [--batches 1000 5000] [--s3] [--rebuild-up-to 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from bench.__main__ import REPO, RESULTS, free_port, start_prefect_server

WORK = REPO / ".totes" / "bench-lake-age"
BIN = Path(sys.executable).parent


FAILURES: list[str] = []


def totes(env: dict[str, str], *args: str) -> float:
    """Wall seconds of one ``totes`` command (NaN if it failed: its last line is kept in FAILURES)."""
    started = time.perf_counter()
    done = subprocess.run([str(BIN / "totes"), *args], env=env, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        FAILURES.append(f"totes {' '.join(args)}: {done.stderr.strip().splitlines()[-1]}")
        print(FAILURES[-1], file=sys.stderr)
        return float("nan")
    return seconds


def age_lake(lake_url: str, warehouse_url: str, batches: int) -> None:
    """Write the lake's newest batch again under new ids until it has ``batches`` batches, each
    recorded as loaded in the warehouse."""
    from tasks.core.lake import RAW, STAR, Lake, batch_sequence, new_batch_id
    from tasks.core.postgres import connect
    from tasks.load.history import batch_time

    lake = Lake.from_url(lake_url)
    newest = lake.list_batches(RAW)[-1]
    raw = lake.read_manifest(RAW, newest)
    star = lake.read_manifest(STAR, newest)
    first = batch_sequence(newest) + 1
    made = [
        new_batch_id(sequence, batch_time(newest) + timedelta(seconds=sequence))
        for sequence in range(first, batches + 1)
    ]
    # Written all at once (s3fs puts them concurrently), then the zones' heads, as the runs would.
    lake.fs.pipe(
        {
            lake.full(lake.manifest_path(zone, batch_id)): json.dumps(manifest | {"batch_id": batch_id}).encode()
            for batch_id in made
            for zone, manifest in ((RAW, raw), (STAR, star))
        }
    )
    for zone in (RAW, STAR):
        lake.write_head(zone, made[-1])
    with connect(warehouse_url) as connection, connection.cursor() as cursor:
        for batch_id in made:
            cursor.execute(
                "insert into _totes_loaded_batch (batch_id, row_counts) values ($1, '{}'::jsonb)",
                parameters=(batch_id,),
            )
        connection.commit()


def measure(env: dict[str, str], source_url: str, *, rebuild: bool) -> dict[str, float]:
    """The commands' wall seconds on the lake as it is now."""
    from tasks.core.postgres import connect
    from tasks.sandbox.totesys import churn

    # The median of three: this machine's speed varies from run to run by up to a third.
    figures = {
        "run (no-op)": statistics.median(totes(env, "run") for _ in range(3)),
        "status": statistics.median(totes(env, "status") for _ in range(3)),
    }
    with connect(source_url) as connection:
        churn(connection, orders=3)
    figures["run (after a churn)"] = totes(env, "run")
    figures["backfill --table design"] = totes(env, "backfill", "--table", "design")
    figures["history switched on (first run)"] = totes(env | {"TOTES_DIMENSION_HISTORY": "true"}, "run")
    if rebuild:
        figures["rebuild"] = totes(env | {"TOTES_DIMENSION_HISTORY": "true"}, "rebuild", "--yes")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1000])
    parser.add_argument("--rebuild-up-to", type=int, default=1000, help="rebuild only lakes up to this many batches")
    parser.add_argument("--s3", action="store_true", help="also on a lake in moto's S3 server")
    args = parser.parse_args()

    from tasks.sandbox.embedded_postgres import recreate_databases, start_embedded_postgres
    from tasks.sandbox.totesys import seed_generated

    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    admin_url = start_embedded_postgres(WORK / "pg", fresh=True)
    server, server_url = start_prefect_server(WORK / "prefect")
    lakes = {"local folder": lambda tag: str(WORK / f"lake-{tag}")}
    moto = None
    if args.s3:
        import boto3
        from moto.server import ThreadedMotoServer

        port = free_port()
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        moto.start()
        os.environ.update(
            AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench-secret",  # noqa: S106 - moto's local server takes any key
            AWS_DEFAULT_REGION="us-east-1",
        )

        def s3_lake(tag: str) -> str:
            boto3.client("s3").create_bucket(Bucket=f"lake-{tag.replace('_', '-')}")
            return f"s3://lake-{tag.replace('_', '-')}/lake"

        lakes["moto S3"] = s3_lake
    results: list[dict] = []
    try:
        for where, make_lake in lakes.items():
            for batches in [2, *args.batches]:
                tag = f"{where.split()[0].lower()}_{batches}"
                urls = recreate_databases(admin_url, (f"age_source_{tag}", f"age_warehouse_{tag}"))
                source_url, warehouse_url = urls[f"age_source_{tag}"], urls[f"age_warehouse_{tag}"]
                env = dict(
                    os.environ,
                    TOTES_SOURCE_URL=source_url,
                    TOTES_WAREHOUSE_URL=warehouse_url,
                    TOTES_LAKE_URL=make_lake(tag),
                    PREFECT_API_URL=server_url,
                    PREFECT_LOGGING_LEVEL="WARNING",
                )
                from tasks.core.postgres import connect
                from tasks.sandbox.totesys import churn

                with connect(source_url) as connection:
                    seed_generated(connection, 0.02)
                totes(env, "run")
                with connect(source_url) as connection:
                    churn(connection, orders=3)
                totes(env, "run")
                started = time.perf_counter()
                if batches > 2:
                    age_lake(env["TOTES_LAKE_URL"], warehouse_url, batches)
                aged = time.perf_counter() - started
                figures = measure(env, source_url, rebuild=batches <= args.rebuild_up_to)
                results.append({"lake": where, "batches": batches, "aging_seconds": aged, "seconds": figures})
                print(f"{where}, {batches} batches: " + ", ".join(f"{k} {v:.1f} s" for k, v in figures.items()))
    finally:
        server.terminate()
        if moto is not None:
            moto.stop()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "lake_age.json").write_text(json.dumps(results, indent=1))
    (RESULTS / "lake_age.md").write_text(report(results))
    print(report(results))
    return 0


def report(results: list[dict]) -> str:
    commands = list(results[0]["seconds"])
    lines = [
        "# What a lake's age costs (`make bench-lake-age`)",
        "",
        "Wall seconds of each command, whole process, on this machine; 2 batches is the young-lake baseline.",
        "",
        "| lake | batches | " + " | ".join(commands) + " |",
        "|---|---:|" + "---:|" * len(commands),
    ]
    for result in results:
        cells = [f"{result['seconds'][c]:.1f}" if c in result["seconds"] else "-" for c in commands]
        lines.append(f"| {result['lake']} | {result['batches']} | " + " | ".join(cells) + " |")
    if FAILURES:
        lines += ["", "Failed (nan above):", *(f"- {failure}" for failure in FAILURES)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
