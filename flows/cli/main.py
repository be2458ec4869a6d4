"""The ``totes`` command: run, reconcile, backfill, rebuild, files, status, seed, churn, serve,
local-api, demo.

Exit status 0 on success; 1 with a one-line reason on stderr when the work fails; 2 for bad usage.
"""

from __future__ import annotations

import argparse
import atexit
import json
import logging
import os
import sys
import time
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from pydantic import ValidationError

from flows.cli.local_api import ensure_local_api, stop_local_api
from flows.cli.logs import NOISY_LIBRARIES, ReadableRunLogs
from tasks.settings import (
    SettingsProblem,
    TotesSettings,
    describe_validation_error,
    load_settings,
    scrub,
)

if TYPE_CHECKING:
    from tasks.core.reports import RunSummary
    from tasks.feeds.report import FeedsSummary

# When the command started (its imports come after): "done in" counts what the user waited for.
_STARTED = time.perf_counter()


class UsageError(ValueError):
    """The command was asked for something that does not exist (a table, a feed): nothing was run."""


def _one_line(error: BaseException, settings: TotesSettings | None) -> str:
    if isinstance(error, ValidationError):
        text = describe_validation_error(error)
    elif isinstance(error, SettingsProblem | UsageError):
        text = str(error).strip()
    else:
        text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        text = f"{type(error).__name__}: {text}"
        if text.startswith("RuntimeError: Failed to reach API at"):
            text += " (PREFECT_API_URL): start that server or correct the URL (and PREFECT_API_KEY), or unset it to use the local API"
    return scrub(text, settings)


def _print_report(args: argparse.Namespace, summary: RunSummary, done: str) -> None:
    """The run report: text and the command's last line for a person, or JSON (``--json``)."""
    if getattr(args, "json", False):
        print(json.dumps(summary_json(summary, seconds=time.perf_counter() - _STARTED), indent=1, default=str))
        return
    print(summary.as_text())
    print(done)


def summary_json(summary: RunSummary, *, seconds: float) -> dict[str, object]:
    """A run report as JSON (``--json``): the counts per table and stage, the batches, warnings."""
    return asdict(summary) | {"freshness_seconds": summary.freshness_seconds, "seconds": round(seconds, 3)}


def command_run(args: argparse.Namespace) -> int:
    from flows.etl import totesys_etl

    settings = load_settings()
    settings.require("TOTES_SOURCE_URL", "TOTES_WAREHOUSE_URL")
    with _prefect_api(settings):
        summary = totesys_etl(reconcile=args.command == "reconcile", fan_out=True if args.fan_out else None)
    elapsed = time.perf_counter() - _STARTED
    rest = elapsed - sum(summary.stage_seconds.values())
    _print_report(
        args,
        summary,
        f"totes {args.command}: done in {elapsed:.1f} s ({summary.stages_text()}; start-up, Prefect and the rest {rest:.1f} s)",
    )
    return 0


def command_backfill(args: argparse.Namespace) -> int:
    from flows.etl import backfill_tables, totesys_etl

    try:
        tables = sorted(backfill_tables(args.table))  # a wrong name fails here, before any flow run
    except ValueError as error:
        raise UsageError(str(error)) from None
    settings = load_settings()
    settings.require("TOTES_SOURCE_URL", "TOTES_WAREHOUSE_URL")
    with _prefect_api(settings):
        summary = totesys_etl(backfill=tables)
    _print_report(
        args, summary, f"totes backfill: done in {time.perf_counter() - _STARTED:.1f} s ({summary.stages_text()})"
    )
    return 0


class NotConfirmed(UsageError):
    """A command that replaces what the warehouse holds was not confirmed (no terminal to ask on)."""


def command_rebuild(args: argparse.Namespace) -> int:
    from flows.etl import rebuild_warehouse
    from tasks.core.lake import STAR, Lake
    from tasks.core.lake_binding import check_warehouse_lake
    from tasks.settings import redact_url

    settings = load_settings()
    warehouse_url = settings.require_warehouse_url()
    # A wrong, empty or missing lake is refused before anything is asked or changed.
    identity = check_warehouse_lake(warehouse_url, settings.lake_url, rebuild=True, adopt=args.adopt_lake)
    if not args.yes:
        batches = len(Lake.from_url(settings.lake_url).list_batches(STAR))
        question = (
            f"Replace every star table of the warehouse {redact_url(warehouse_url)} with the {batches} batch(es) "
            f"of lake {identity.lake_id if identity else '(new)'} at {settings.lake_url}"
            f"{' (adopting that lake)' if args.adopt_lake else ''}? Readers see the old warehouse until the "
            "rebuilt one is swapped in. [y/N] "
        )
        if not sys.stdin.isatty():
            msg = "the rebuild replaces every star table: confirm with --yes (no terminal to ask on)"
            raise NotConfirmed(msg)
        if input(question).strip().lower() not in ("y", "yes"):
            print("totes rebuild: not confirmed; nothing changed")
            return 0
    with _prefect_api(settings):
        summary = rebuild_warehouse(adopt_lake=args.adopt_lake)
    _print_report(
        args, summary, f"totes rebuild: done in {time.perf_counter() - _STARTED:.1f} s ({summary.stages_text()})"
    )
    return 0


def command_files(args: argparse.Namespace) -> int:
    from flows.files import FeedFilesRefused, totesys_files
    from tasks.feeds.declarations import load_feeds

    settings = load_settings()
    settings.require("TOTES_SFTP_URL", "TOTES_WAREHOUSE_URL")
    declared = load_feeds(settings.feeds_file)
    if unknown := sorted(set(args.feed or []) - declared.keys()):
        # A typo is not a failed run: nothing runs, and nobody is alerted.
        msg = f"unknown feed(s) {', '.join(unknown)}; the feeds: {', '.join(declared)}"
        raise UsageError(msg)
    started = time.perf_counter()
    try:
        with _prefect_api(settings):
            summary = totesys_files(feeds=args.feed or None)
    except FeedFilesRefused as refused:
        _print_files(args, refused.summary)
        raise
    _print_files(args, summary)
    if not args.json:
        print(f"totes files: done in {time.perf_counter() - started:.1f} s")
    return 0


def _print_files(args: argparse.Namespace, summary: FeedsSummary) -> None:
    if args.json:
        print(json.dumps(asdict(summary) | {"problems": summary.problems}, indent=1, default=str))
    else:
        print(summary.as_text())


@contextmanager
def _prefect_api(settings: TotesSettings) -> Iterator[None]:
    """Without ``PREFECT_API_URL`` (and ``TOTES_LOCAL_PREFECT_API`` left at ``background``): run
    against totes's local background Prefect server, starting it if none answers. If it cannot be
    started, the run goes on with Prefect's temporary server, saying why. Each flow run the command
    starts prints its link in the Prefect UI."""
    from contextlib import ExitStack

    from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

    from flows.cli.local_api import kept_awake

    with ExitStack() as stack:
        stack.enter_context(_printed_run_links())
        if not get_current_settings().api.url and settings.local_prefect_api == "background":
            try:
                api = ensure_local_api(
                    wait_seconds=float(_PREFECT_SERVER_STARTUP_SECONDS), idle_minutes=settings.local_api_idle_minutes
                )
            except (RuntimeError, OSError) as error:
                logging.getLogger("totes.local_api").warning(
                    "%s: this run uses Prefect's temporary server instead", error
                )
            else:
                stack.enter_context(temporary_settings(updates={PREFECT_API_URL: api.url}))
                stack.enter_context(kept_awake(api))
        yield


class _RunLinks(logging.Handler):
    """Prints the Prefect UI link of the command's flow run: Prefect's "View at <url>" line, which
    the readable logs (``ReadableRunLogs``) leave out with the rest of a run's life, goes to those
    handlers as "In the Prefect UI: <url>". Subflows' links stay out (their runs are in the UI)."""

    def __init__(self, readable: list[logging.Handler]):
        super().__init__()
        self.readable = readable

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if not message.startswith("View at ") or not _top_level_run(message):
            return
        link = logging.makeLogRecord(
            record.__dict__ | {"msg": f"In the Prefect UI: {message.removeprefix('View at ')}", "args": ()}
        )
        for handler in self.readable:
            handler.handle(link)


def _top_level_run(view_at: str) -> bool:
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    run = context.flow_run if context is not None else None
    # Prefect logs the link inside the run's context, or (async engine) before entering it.
    return run is None or (view_at.endswith(str(run.id)) and run.parent_task_run_id is None)


@contextmanager
def _printed_run_links() -> Iterator[None]:
    from prefect.logging.configuration import ensure_logging_setup

    # Prefect configures its loggers (replacing their handlers) the first time it sets logging up:
    # before the handler is added here, not after (later set-ups only change levels).
    ensure_logging_setup()
    readable = [
        handler
        for handler in logging.getLogger().handlers
        if any(isinstance(kept, ReadableRunLogs) for kept in handler.filters)
    ]
    if not readable:  # -v: Prefect's own line is printed
        yield
        return
    links = _RunLinks(readable)
    engine = logging.getLogger("prefect.flow_runs")
    engine.addHandler(links)
    try:
        yield
    finally:
        engine.removeHandler(links)


def command_local_api(args: argparse.Namespace) -> int:
    from datetime import datetime, timedelta

    from flows.cli.local_api import look_at_local_api, quiet, stopped_when_idle

    if args.action == "stop":
        stopped = stop_local_api()
        print(
            f"totes local-api: stopped the server at {stopped.url}" if stopped else "totes local-api: none was running"
        )
        return 0
    if args.action == "start":
        api = ensure_local_api(
            wait_seconds=float(_PREFECT_SERVER_STARTUP_SECONDS), idle_minutes=load_settings().local_api_idle_minutes
        )
        state = quiet(api)
    elif (found := look_at_local_api()) is not None:  # the look does not count as a request
        api, state = found
    else:
        stopped_at = stopped_when_idle()
        why = (
            f": it stopped by itself at {stopped_at[0]:%Y-%m-%d %H:%M:%S} after {stopped_at[1]:g} minutes without a request"
            if stopped_at
            else ""
        )
        print(f"totes local-api: not running{why} (the next totes run starts it)")
        return 0
    print(
        f"totes local-api: running at {api.url} (process {api.pid}, log {api.log}); UI at {api.url.removesuffix('/api')}"
    )
    if state is None:
        print("  it does not stop by itself (started by an earlier totes): `totes local-api stop` ends it")
    elif (left := state.stops_in_seconds()) is None:
        print("  it does not stop by itself (TOTES_LOCAL_API_IDLE_MINUTES=0): `totes local-api stop` ends it")
    else:
        now = (
            "in use now"
            if state.in_flight
            else f"quiet for {state.seconds:.0f} s"
            if state.seconds < 120
            else f"quiet for {state.seconds / 60:.0f} min"
        )
        at = datetime.now().astimezone() + timedelta(seconds=left)
        print(
            f"  {now}; it stops by itself after {state.idle_minutes:g} minutes without a request "
            f"(at {at:%H:%M} if none comes; the next totes command starts it again)"
        )
    return 0


def command_status(args: argparse.Namespace) -> int:
    from flows.cli.status import behind, read_status, status_json, status_text

    status = read_status(load_settings(), recent_batches=args.batches)
    print(json.dumps(status_json(status), indent=1, default=str) if args.json else status_text(status))
    if problems := behind(status, stale_minutes=args.fail_if_stale, pending=args.fail_if_pending):
        print(f"totes status: behind: {'; '.join(problems)}", file=sys.stderr)
        return 1
    return 0


def command_doctor(args: argparse.Namespace) -> int:
    from flows.cli.doctor import checks_json, checks_text, run_checks

    checks = run_checks()
    print(json.dumps(checks_json(checks), indent=1) if args.json else checks_text(checks))
    return 0 if all(check.ok for check in checks) else 1


def command_seed(args: argparse.Namespace) -> int:
    from tasks.core.postgres import connect
    from tasks.sandbox.totesys import seed_from_dump, seed_generated

    settings = load_settings()
    started = time.perf_counter()
    with connect(settings.require_source_url()) as connection:
        if args.from_dump:
            counts = seed_from_dump(
                connection, Path(args.from_dump), replace=args.replace, delta_indexes=args.delta_indexes
            )
        else:
            counts = seed_generated(
                connection, args.scale, seed=args.seed, replace=args.replace, delta_indexes=args.delta_indexes
            )
    for table, rows in counts.items():
        print(f"{table:<16}{rows:>12}")
    print(f"totes seed: {sum(counts.values())} rows in {time.perf_counter() - started:.1f} s")
    return 0


def command_churn(args: argparse.Namespace) -> int:
    from tasks.core.postgres import connect
    from tasks.sandbox.totesys import churn

    settings = load_settings()
    with connect(settings.require_source_url()) as connection:
        churn(connection, orders=args.orders)
    print(f"totes churn: {args.orders} new sales orders and the activity around them")
    return 0


def command_demo(args: argparse.Namespace) -> int:
    from flows.cli.demo import run_demo

    # Like any run without PREFECT_API_URL: on totes's local Prefect server (started if need be).
    with _prefect_api(load_settings()):
        run_demo(Path(args.dir), scale=args.scale, dump=Path(args.from_dump) if args.from_dump else None)
    return 0


def command_serve(args: argparse.Namespace) -> int:
    from flows.served import serve_deployments

    load_settings().require_warehouse_url()
    serve_deployments(interval_seconds=args.interval)
    return 0


# Each command: its one-line help, what it does (shown by `totes <command> --help`) and examples.
_COMMANDS: dict[str, tuple[str, str, str]] = {
    "run": (
        "one ETL cycle: ingest, transform, load",
        "One ETL cycle as the Prefect flow totesys-etl: the source tables' changes into the lake, the star\n"
        "tables built from them, merged into the warehouse in one transaction per batch. Prints rows per\n"
        "table per stage and the seconds of each stage.",
        "totes run\n  totes run --json > report.json\n  totes run --fan-out",
    ),
    "reconcile": (
        "one ETL cycle that also compares every source row's content with the lake's (the deep pass)",
        "One ETL cycle whose ingest also compares every source row's content with what the lake last\n"
        "observed: changes made without a new last_updated (a manual fix, a restore) arrive too.",
        "totes reconcile",
    ),
    "backfill": (
        "one ETL cycle that reads the given source tables whole",
        "One ETL cycle that reads the named source tables whole, every row again (after a repair in the\n"
        "source): versions already held stay once, dimensions built from them are rebuilt.",
        "totes backfill --table staff\n  totes backfill --table sales_order --table payment",
    ),
    "rebuild": (
        "rebuild the whole warehouse from the lake alone (asks first)",
        "Reloads every batch of the lake beside the warehouse and swaps it in, in one transaction (readers\n"
        "see the old warehouse until then). Refuses a lake that is not the warehouse's own.",
        "totes rebuild\n  totes rebuild --yes\n  TOTES_LAKE_URL=s3://other/lake totes rebuild --adopt-lake",
    ),
    "files": (
        "one file-feeds cycle: SFTP -> versioned raw zone -> staging -> warehouse",
        "One file-feeds cycle as the Prefect flow totesys-files: changed files fetched from SFTP into the\n"
        "versioned raw zone, the latest good version of each staged, each feed's table made equal to them.",
        "totes files\n  totes files --feed exchange_rates --json",
    ),
    "status": (
        "where the pipeline stands (reads the lake, the warehouse and the Prefect API; never the source)",
        "Watermarks, pending batches, freshness, rows set aside, star rows, connection slots. With\n"
        "--fail-if-stale or --fail-if-pending it exits 1 when the warehouse is behind: for monitors.",
        "totes status\n  totes status --json\n  totes status --fail-if-stale 60 --fail-if-pending",
    ),
    "doctor": (
        "check the settings, every connection, the roles' grants and the lake, changing nothing",
        "Checks the settings, the source (and its primary), the warehouse, the lake, SFTP and the Prefect\n"
        "API: reachable, the grants totes needs, the source's TimeZone and audit columns, which lake the\n"
        "warehouse was loaded from. One line per check, with the fix for each that fails.",
        "totes doctor\n  totes doctor --json",
    ),
    "seed": (
        "create and fill a ToteSys source database",
        "Creates the ToteSys schema in TOTES_SOURCE_URL and fills it: generated data, or a real pg_dump.",
        "totes seed --scale 1\n  totes seed --from totesys.sql.gz --replace",
    ),
    "churn": (
        "apply one round of business activity to the source",
        "One round of business activity in the source, in one transaction: new orders, payments,\n"
        "amendments, a changed address and department, a cancelled order.",
        "totes churn --orders 30",
    ),
    "serve": (
        "serve the deployments from this process (no work pool needed) until stopped",
        "Serves every deployment from this one process: the ETL cycle every --interval seconds, and each\n"
        "stage, the backfill, the reconcile and the rebuild on demand (prefect deployment run).",
        "totes serve --interval 900",
    ),
    "local-api": (
        "the local Prefect server that runs without PREFECT_API_URL use",
        "The local Prefect server that commands without PREFECT_API_URL share: where it listens, its log;\n"
        "start starts it now, stop ends it (it also stops by itself after a quiet spell).",
        "totes local-api\n  totes local-api stop",
    ),
    "demo": (
        "the whole pipeline on an embedded PostgreSQL and a local lake",
        "The whole pipeline on an embedded PostgreSQL and a local lake: seed, run, churn, run, files.",
        "totes demo\n  totes demo --scale 0.1 --dir /tmp/totes-demo",
    ),
}


def _command(commands: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    summary, description, examples = _COMMANDS[name]
    return commands.add_parser(
        name,
        help=summary,
        description=description,
        epilog=f"examples:\n  {examples}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("totes")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="totes",
        description="Keep a star-schema warehouse in step with ToteSys, through an S3 data lake.",
        epilog="Configuration: TOTES_SOURCE_URL, TOTES_WAREHOUSE_URL, TOTES_LAKE_URL (and AWS_*); "
        "file feeds: TOTES_SFTP_URL, TOTES_SFTP_KNOWN_HOSTS, TOTES_FEEDS_FILE. `totes doctor` checks them. "
        "Exit status: 0 done; 1 the work failed or was refused (one line on stderr); 2 a usage or settings "
        "problem (nothing was run).",
    )
    parser.add_argument("--version", action="version", version=f"totes {_version()}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log everything: every task run's state, the libraries' connections, tracebacks "
        "(default: the stages, rows, warnings)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for name in ("run", "reconcile"):
        cycle = _command(commands, name)
        cycle.add_argument(
            "--fan-out",
            action="store_true",
            help="extract each source table in a flow run of its own on the work pool (default: TOTES_FAN_OUT)",
        )
        _json_flag(cycle, "the run report")
        cycle.set_defaults(handler=command_run)

    backfill = _command(commands, "backfill")
    backfill.add_argument(
        "--table", action="append", required=True, metavar="TABLE", help="a source table to read whole (repeatable)"
    )
    _json_flag(backfill, "the run report")
    backfill.set_defaults(handler=command_backfill)

    rebuild = _command(commands, "rebuild")
    rebuild.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    rebuild.add_argument(
        "--adopt-lake",
        action="store_true",
        help="rebuild from a lake other than the one the warehouse was loaded from, and load from it from now on",
    )
    _json_flag(rebuild, "the run report")
    rebuild.set_defaults(handler=command_rebuild)

    files = _command(commands, "files")
    files.add_argument("--feed", action="append", help="only this feed (repeatable; default: every feed)")
    _json_flag(files, "the files report")
    files.set_defaults(handler=command_files)

    status = _command(commands, "status")
    _json_flag(status, "the status")
    status.add_argument(
        "--batches", type=int, default=96, help="how many recent batches the per-table history covers (default 96)"
    )
    status.add_argument(
        "--fail-if-stale",
        type=float,
        metavar="MINUTES",
        help="exit 1 if the warehouse's last load is older than this (or it has loaded nothing)",
    )
    status.add_argument(
        "--fail-if-pending", action="store_true", help="exit 1 if batches wait to be transformed or loaded"
    )
    status.set_defaults(handler=command_status)

    doctor = _command(commands, "doctor")
    _json_flag(doctor, "the checks")
    doctor.set_defaults(handler=command_doctor)

    seed = _command(commands, "seed")
    source = seed.add_mutually_exclusive_group()
    source.add_argument("--scale", type=float, default=1.0, help="1 = the real database's size (default)")
    source.add_argument("--from", dest="from_dump", metavar="DUMP", help="load a ToteSys pg_dump (.sql or .sql.gz)")
    seed.add_argument("--seed", type=int, default=2024, help="random seed of the generated data")
    seed.add_argument("--replace", action="store_true", help="drop existing ToteSys tables first")
    seed.add_argument("--delta-indexes", action="store_true", help="index last_updated so delta reads are range scans")
    seed.set_defaults(handler=command_seed)

    churn = _command(commands, "churn")
    churn.add_argument("--orders", type=int, default=30, help="new sales orders in this round (default 30)")
    churn.set_defaults(handler=command_churn)

    serve = _command(commands, "serve")
    serve.add_argument("--interval", type=int, default=900, help="seconds between scheduled ETL cycles (default 900)")
    serve.set_defaults(handler=command_serve)

    local_api = _command(commands, "local-api")
    local_api.add_argument("action", choices=("status", "start", "stop"), nargs="?", default="status")
    local_api.set_defaults(handler=command_local_api)

    demo = _command(commands, "demo")
    demo.add_argument("--dir", default=".totes/demo", help="where the demo keeps its database and lake")
    demo.add_argument("--scale", type=float, default=1.0, help="size of the seeded source (default 1)")
    demo.add_argument("--from", dest="from_dump", metavar="DUMP", help="seed from a ToteSys pg_dump instead")
    demo.set_defaults(handler=command_demo)
    return parser


def _json_flag(command: argparse.ArgumentParser, what: str) -> None:
    command.add_argument("--json", action="store_true", help=f"print {what} as JSON on stdout (logs stay on stderr)")


class _RunLogFormatter(logging.Formatter):
    """Log lines that name the Prefect task (or flow) run they come from: `[extract-payment-0]`.
    Without ``tracebacks`` (no ``-v``), a failure logged with its exception is its one line: the
    command ends with the cause, and the Prefect API keeps the whole traceback."""

    def __init__(self, fmt: str, *, tracebacks: bool):
        super().__init__(fmt)
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        run = getattr(record, "task_run_name", None) or getattr(record, "flow_run_name", None)
        record.run = f" [{run}]" if run else ""
        if self.tracebacks or not (record.exc_info or record.stack_info):
            return super().format(record)
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            return super().format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


# Prefect's temporary local API (no PREFECT_API_URL) gives its server 20 s to start; a busy laptop or
# CI runner can take longer, and the run then fails before it begins. Set before Prefect is imported.
_PREFECT_SERVER_STARTUP_SECONDS = "90"


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", _PREFECT_SERVER_STARTUP_SECONDS)
    args = build_parser().parse_args(argv)
    if not args.verbose:
        # The libraries' warnings are for their authors (asyncssh's CryptographyDeprecationWarning at a
        # key exchange, pgserver's platformdirs where XDG_RUNTIME_DIR is unset): only a warning about
        # totes's own code reaches the default output. -v shows them all.
        warnings.filterwarnings("ignore", module=r"(?!(tasks|flows|bench|__main__)(\.|$))")
    handler = logging.StreamHandler()
    handler.setFormatter(
        _RunLogFormatter("%(asctime)s %(levelname)s %(name)s%(run)s: %(message)s", tracebacks=args.verbose)
    )
    if not args.verbose:
        handler.addFilter(ReadableRunLogs())
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    for noisy in NOISY_LIBRARIES:
        logging.getLogger(noisy).setLevel(logging.INFO if args.verbose else logging.WARNING)
    settings = None
    try:
        # The settings are read before any work: a problem with them is one line and exit 2. The
        # doctor reads them itself, as its first check.
        settings = load_settings() if args.command != "doctor" else None
        return args.handler(args)
    except KeyboardInterrupt:
        print(f"totes {args.command}: interrupted", file=sys.stderr)
        return 130
    except (SettingsProblem, UsageError) as problem:
        print(f"totes {args.command}: {_one_line(problem, settings)}", file=sys.stderr)
        return 2
    except Exception as error:  # noqa: BLE001 - the CLI's boundary: one line, no traceback, no secrets
        if args.verbose:
            traceback.print_exc()
        print(f"totes {args.command}: failed: {_one_line(error, settings)}", file=sys.stderr)
        return 1


def entry(argv: list[str] | None = None) -> NoReturn:
    """The ``totes`` console script: :func:`main`, then out without the interpreter's teardown.
    (``python flows/etl.py`` and the other flow modules call it with their command.)

    Freeing every module and object of a run that imported Prefect, Polars and Arrow took ~0.5 s
    here, on every run, after the work was done. The exit handlers still run first: Prefect sends
    its last logs and events, logging flushes, a temporary Prefect server stops."""
    code = main(argv)
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
