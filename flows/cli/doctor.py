"""``totes doctor``: is everything totes needs there, and right? The settings, the source (and its
primary), the warehouse, the lake, SFTP and the Prefect API: each reached, with the grants totes
needs, the source's TimeZone and audit columns, and which lake the warehouse was loaded from. One
line per check, with the fix for each that fails. It changes nothing: it opens connections, reads
catalogues and lists, and runs the same checks a run would run before it reads.
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass

from tasks.settings import SettingsProblem, TotesSettings, load_settings, redact_url, scrub

OK, WARN, FAIL = "ok", "warn", "fail"
_MARKS = {OK: "✓", WARN: "!", FAIL: "✗"}


@dataclass(frozen=True)
class Check:
    """One check: what was checked, how it went (ok, warn: works but worth a look, fail), what was
    found, and what to do when it did not pass."""

    name: str
    outcome: str
    found: str
    fix: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome != FAIL


class Failed(Exception):
    """A check that failed: what was found and what to do."""

    def __init__(self, found: str, fix: str):
        super().__init__(found)
        self.found, self.fix = found, fix


class Warned(Exception):
    """A check that passed with a warning: what was found and what to consider."""

    def __init__(self, found: str, fix: str):
        super().__init__(found)
        self.found, self.fix = found, fix


def run_checks() -> list[Check]:
    """Every check, in order; a check whose prerequisite failed is not run."""
    try:
        settings = load_settings()
    except (SettingsProblem, ValueError, RuntimeError) as error:
        return [
            Check("settings", FAIL, str(error), "set the variables as the line says (see docs/reference/settings.md)")
        ]
    checks = [Check("settings", OK, _settings_found(settings))]
    steps: list[tuple[str, Callable[[TotesSettings], str], bool]] = [
        ("source database", _source, settings.source_url is not None),
        ("source tables and grants", _source_tables, settings.source_url is not None),
        ("source's time zone and audit columns", _source_time_zone, settings.source_url is not None),
        ("source's horizon (primary, standby, subscriber)", _source_horizon, settings.source_url is not None),
        ("warehouse database", _warehouse, settings.warehouse_url is not None),
        ("lake", _lake, True),
        ("lake and warehouse", _lake_and_warehouse, settings.warehouse_url is not None),
        ("SFTP server of the file feeds", _sftp, settings.sftp_url is not None),
        ("Prefect API", _prefect_api, True),
    ]
    failed: set[str] = set()
    for name, check, applies in steps:
        if not applies:
            checks.append(Check(name, WARN, "not checked: its setting is not set"))
            continue
        if (name.startswith("source") and "source database" in failed) or (
            name == "lake and warehouse" and {"warehouse database", "lake"} & failed
        ):
            checks.append(Check(name, WARN, "not checked: the check it needs failed"))
            continue
        try:
            checks.append(Check(name, OK, check(settings)))
        except Warned as warned:
            checks.append(Check(name, WARN, warned.found, warned.fix))
        except Failed as failure:
            failed.add(name)
            checks.append(Check(name, FAIL, scrub(failure.found, settings), failure.fix))
        except Exception as error:  # noqa: BLE001 - every other failure is this check's finding
            failed.add(name)
            found = scrub(
                f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}", settings
            )
            checks.append(Check(name, FAIL, found, _fix_for(found)))
    return checks


def checks_text(checks: list[Check]) -> str:
    lines = [f"{_MARKS[c.outcome]} {c.name}: {c.found}" + (f"\n    fix: {c.fix}" if c.fix else "") for c in checks]
    failed = sum(not c.ok for c in checks)
    lines.append(f"totes doctor: {failed} check(s) failed" if failed else "totes doctor: every check passed")
    return "\n".join(lines)


def checks_json(checks: list[Check]) -> dict[str, object]:
    return {"ok": all(c.ok for c in checks), "checks": [asdict(c) | {"ok": c.ok} for c in checks]}


# --- what to do, by what the server said -----------------------------------------------------------

_FIXES = (
    ("password authentication failed", "check the user and password in the URL (or its secret)"),
    ("no pg_hba.conf entry", "the server refuses this client: add it to pg_hba.conf, or connect with SSL"),
    ("does not exist", "check the database (or role) name in the URL"),
    ("could not translate host name", "check the host name in the URL, and DNS from here"),
    ("connection refused", "is the server running, and listening on that host and port?"),
    ("timeout", "is the host reachable from here (firewall, security group, VPN)?"),
    ("timed out", "is the host reachable from here (firewall, security group, VPN)?"),
    ("permission denied", "grant the role what the line names"),
    ("nosuchbucket", "create the bucket, or correct TOTES_LAKE_URL"),
    ("does not exist: create it", "create the bucket, or correct TOTES_LAKE_URL"),
    ("credentials", "check the AWS_* credentials (or the task role)"),
)


def _fix_for(found: str) -> str:
    lowered = found.lower()
    return next((fix for text, fix in _FIXES if text in lowered), "see the line above")


def _settings_found(settings: TotesSettings) -> str:
    described = settings.describe()
    return ", ".join(f"{what} {value}" for what, value in described.items())


# --- the checks ------------------------------------------------------------------------------------


def _source(settings: TotesSettings) -> str:
    from tasks.core.postgres import connect, fetch_rows

    url = settings.require_source_url()
    with connect(url, purpose="source database") as connection:
        ((version, in_recovery),) = fetch_rows(
            connection, "select current_setting('server_version'), pg_is_in_recovery()"
        )
    return f"{redact_url(url)}: PostgreSQL {version}{' (a standby)' if in_recovery else ''}"


def _source_tables(settings: TotesSettings) -> str:
    from tasks.core.postgres import connect, fetch_rows
    from tasks.ingest.drift import schema_drift
    from tasks.ingest.source import read_source_columns
    from tasks.schema import SOURCE_TABLES

    with connect(settings.require_source_url(), purpose="source database") as connection:
        found = read_source_columns(connection)
        granted = {
            name: bool(allowed)
            for name, allowed in fetch_rows(
                connection,
                "select t, has_table_privilege(format('public.%I', t), 'SELECT') from unnest($1::text[]) as t "
                "where to_regclass(format('public.%I', t)) is not null",
                ("{" + ",".join(SOURCE_TABLES) + "}",),
            )
        }
        ((sees_sessions,),) = fetch_rows(
            connection,
            "select pg_has_role(current_user, 'pg_read_all_stats', 'member') "
            "or (select rolsuper from pg_roles where rolname = current_user)",
        )
    errors, warnings = schema_drift(found, frozen=settings.frozen_tables())
    if errors:
        raise Failed("; ".join(errors), "restore the tables and columns, or upgrade totes to a model that has them")
    if lacking := sorted(name for name, allowed in granted.items() if not allowed):
        raise Failed(
            f"the role cannot SELECT {', '.join(lacking)}",
            f"grant select on {', '.join(lacking)} to the role of TOTES_SOURCE_URL",
        )
    note = f"all {len(SOURCE_TABLES)} tables readable"
    if warnings:
        note += f"; {'; '.join(warnings)}"
    if not sees_sessions:
        raise Warned(
            f"{note}; the role cannot see other sessions: watermarks lag TOTES_FALLBACK_LAG_SECONDS "
            f"({settings.fallback_lag_seconds:.0f} s) behind the clock",
            "grant pg_read_all_stats to the role of TOTES_SOURCE_URL",
        )
    return note


def _source_time_zone(settings: TotesSettings) -> str:
    from tasks.core.postgres import connect
    from tasks.ingest.drift import local_time_stamps
    from tasks.ingest.source import read_default_time_zone, read_source_columns

    with connect(settings.require_source_url(), purpose="source database") as connection:
        found = read_source_columns(connection)
        zone = read_default_time_zone(connection)
    problem = local_time_stamps(found, time_zone=zone.time_zone, is_utc=zone.is_utc, database=zone.database_name)
    if problem is None:
        return f"TimeZone {zone.time_zone}: the audit columns' stamps read as UTC"
    if settings.source_stamps_are_utc:
        return f"TimeZone {zone.time_zone}, writers declared to store UTC (TOTES_SOURCE_STAMPS_ARE_UTC)"
    found_text, _, fix = problem.partition(". Set ")
    raise Failed(found_text, "set " + fix.removesuffix("; nothing was read") if fix else "see the line above")


def _source_horizon(settings: TotesSettings) -> str:
    from tasks.core.postgres import connect
    from tasks.ingest.replica import read_horizon_of_source

    primary = settings.source_primary_url.get_secret_value() if settings.source_primary_url else None
    with connect(settings.require_source_url(), purpose="source database") as connection:
        found = read_horizon_of_source(
            connection,
            primary_url=primary,
            is_copy=settings.source_is_copy,
            wait_seconds=min(settings.replica_wait_seconds, 10.0),
        )
    where = f"taken from the primary {redact_url(primary)}" if primary else "the source is a primary"
    return f"{where}; oldest open transaction {found.reading.horizon.oldest_open_transaction_at or 'none'}"


def _warehouse(settings: TotesSettings) -> str:
    from tasks.core.postgres import connect, fetch_rows

    url = settings.require_warehouse_url()
    with connect(url, purpose="warehouse database") as connection:
        ((version, create, temporary),) = fetch_rows(
            connection,
            "select current_setting('server_version'), has_schema_privilege('public', 'CREATE'), "
            "has_database_privilege(current_database(), 'TEMP')",
        )
    lacking = [what for what, allowed in (("CREATE on schema public", create), ("TEMP", temporary)) if not allowed]
    if lacking:
        raise Failed(
            f"{redact_url(url)}: the role lacks {' and '.join(lacking)}",
            "grant usage, create on schema public and temporary on the database to the role of TOTES_WAREHOUSE_URL",
        )
    return f"{redact_url(url)}: PostgreSQL {version}; the role may create tables and temporary tables"


def _lake(settings: TotesSettings) -> str:
    from tasks.core.lake import RAW, STAR, Lake

    lake = Lake.from_url(settings.lake_url)
    lake.require_bucket()
    identity = lake.read_identity()
    raw, star = lake.newest_batch(RAW), lake.newest_batch(STAR)
    if identity is None and raw is None:
        what = "holds no lake yet" if lake.exists else "does not exist yet"
        raise Warned(
            f"{settings.lake_url} {what}: the first run starts one there",
            "if the warehouse was loaded before, point TOTES_LAKE_URL at its lake",
        )
    return f"{settings.lake_url}: lake {identity.lake_id if identity else '(no identity yet)'}, newest batch {raw}, newest star batch {star}"


def _lake_and_warehouse(settings: TotesSettings) -> str:
    from tasks.core.lake import Lake
    from tasks.core.lake_binding import read_warehouse_lake
    from tasks.core.postgres import connect

    lake = Lake.from_url(settings.lake_url)
    identity = lake.read_identity()
    with connect(settings.require_warehouse_url(), purpose="warehouse database") as connection:
        bound = read_warehouse_lake(connection)
    if bound.lake_id is None:
        if bound.batches_loaded:
            return f"the warehouse has loaded {bound.batches_loaded} batch(es) before lakes had identities: the next run binds it"
        return "the warehouse has loaded nothing yet: the first load binds it to this lake"
    if identity is not None and identity.lake_id == bound.lake_id:
        return f"the warehouse is loaded from this lake ({bound.batches_loaded} batch(es), the last {bound.last_batch})"
    raise Failed(
        f"the warehouse is loaded from lake {bound.lake_id} at {bound.lake_url}, not from {settings.lake_url}"
        f" ({'lake ' + identity.lake_id if identity else 'no lake there'}): run, backfill and rebuild refuse it",
        f"set TOTES_LAKE_URL={bound.lake_url}, or move the warehouse with `totes rebuild --adopt-lake`",
    )


def _sftp(settings: TotesSettings) -> str:
    from tasks.feeds.fetch import open_sftp

    with open_sftp(settings) as sftp:
        files = sftp.list(".")
        where = sftp.where
    return f"{where}: logged in, host key verified; {len(files)} file(s) in {sftp.base}"


def _prefect_api(settings: TotesSettings) -> str:
    url = os.environ.get("PREFECT_API_URL")
    if not url:
        from flows.cli.local_api import running_local_api

        local = running_local_api()
        if local is not None:
            return f"no PREFECT_API_URL: the local API runs at {local.url}"
        return "no PREFECT_API_URL: the next command starts the local API (totes local-api)"
    headers = {"Authorization": f"Bearer {os.environ['PREFECT_API_KEY']}"} if os.environ.get("PREFECT_API_KEY") else {}
    request = urllib.request.Request(f"{url.rstrip('/')}/health", headers=headers)  # noqa: S310 - the configured API  # nosec B310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - the configured API's URL  # nosec B310
            healthy = response.status == 200
    except OSError as error:
        raise Failed(f"{url}: {error}", "check PREFECT_API_URL (and PREFECT_API_KEY for Prefect Cloud)") from error
    if not healthy:
        raise Failed(f"{url}: not healthy", "check the Prefect server")
    return f"{url}: healthy"
