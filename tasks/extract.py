"""Extract: delta reads from ToteSys with ADBC, streamed as Arrow record batches.

The watermark logic is what makes totes miss nothing (SPEC rule 5):

* reads are closed below (``last_updated >= watermark``), so rows sharing the watermark's timestamp
  are read again; rows already ingested are recognised by (key, ``last_updated``) and dropped;
* the next watermark never passes the *in-flight horizon*: the start of the oldest transaction still
  open in the source when the run began. A transaction that began before a run and commits after it
  stamps its rows no earlier than its own start, so the next run still reads them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit
from datetime import UTC, datetime, timedelta

import adbc_driver_postgresql.dbapi as adbc_postgres
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.faults import RETRY_POLICY
from tasks.lake import RAW, Lake, batch_sequence, new_batch_id
from tasks.schema import (
    SOURCE_ENUM_COLUMNS,
    SOURCE_TABLES,
    SOURCE_TEXT_CAST_TYPES,
    TIMESTAMP,
    Table,
    deleted_marks_schema,
    quote_ident,
    read_sql,
)
from tasks.settings import load_settings, redact_url

BEGINNING_OF_TIME = datetime(1900, 1, 1)


@dataclass(frozen=True)
class Horizon:
    """What the source said about in-flight work, read before any data."""

    clock_at: datetime
    oldest_open_transaction_at: datetime | None
    has_hidden_sessions: bool

    @property
    def complete_before(self) -> datetime:
        """Every source change stamped before this time was committed when the run read the source."""
        if self.oldest_open_transaction_at is None:
            return self.clock_at
        return min(self.clock_at, self.oldest_open_transaction_at)


@dataclass
class TableWatermark:
    """Where the next delta read of one table starts, and the versions already read from there."""

    watermark: datetime = BEGINNING_OF_TIME
    overlap_keys: set[tuple[int, datetime]] = field(default_factory=set)

    def to_json(self) -> dict:
        return {
            "watermark": self.watermark.isoformat(),
            "overlap_keys": sorted([key, ts.isoformat()] for key, ts in self.overlap_keys),
        }

    @classmethod
    def from_json(cls, data: dict | None) -> TableWatermark:
        if not data:
            return cls()
        return cls(
            watermark=datetime.fromisoformat(data["watermark"]),
            overlap_keys={(int(k), datetime.fromisoformat(ts)) for k, ts in data["overlap_keys"]},
        )


class ConnectionFailed(RuntimeError):
    """A database could not be reached or refused us; the message names which one and why."""


def connect(url: str, *, purpose: str = "database") -> adbc_postgres.Connection:
    """An ADBC connection to PostgreSQL (``autocommit`` off: every statement runs in a transaction).

    Raises:
        ConnectionFailed: naming ``purpose`` (e.g. "source database") and the URL without password;
            the driver's error is kept as the cause, so retry classification still sees it.
    """
    try:
        return adbc_postgres.connect(url)
    except adbc_postgres.Error as error:
        msg = f"cannot connect to the {purpose} {redact_url(url)}: {database_error_reason(error)}"
        raise ConnectionFailed(msg) from error


_DRIVER_PREFIXES = re.compile(r"^(?:[A-Z_]+: )?(?:\[libpq\] )?(?:Failed to (?:connect|prepare query|execute query)[^:]*: )?(?:ERROR: +)?")


def database_error_reason(error: BaseException) -> str:
    """The server's own words from an ADBC error: its first line without the driver's prefixes
    (and never the SQL text the driver appends), with the SQLSTATE when there is one."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    reason = _DRIVER_PREFIXES.sub("", first).strip()
    sqlstate = getattr(error, "sqlstate", None)
    return f"{reason} (SQLSTATE {sqlstate})" if sqlstate else reason


class SourceReadFailed(RuntimeError):
    """Reading a source table failed; the message names the table and the database (no password)."""


_UNSAFE_IN_LIMIT_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def database_limit_name(url: str) -> str:
    """The name of a database's Prefect global concurrency limit: host, port and database name
    (never the user or the password), e.g. ``totes-db-totesys.example.com-5432-totesys``."""
    parts = urlsplit(url)
    host = parse_qs(parts.query).get("host", [parts.hostname or "localhost"])[0]
    name = f"totes-db-{host}-{parts.port or 5432}-{parts.path.lstrip('/')}"
    return _UNSAFE_IN_LIMIT_NAME.sub("-", name).strip("-")[:120]


def _limit_slots(name: str, default_slots: int) -> int:
    """The slots of the global concurrency limit ``name``, created with ``default_slots`` if it does
    not exist (an operator may have tuned an existing one with ``prefect gcl update``)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            return client.read_global_concurrency_limit_by_name(name).limit
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=default_slots))
            except ObjectAlreadyExists:
                return client.read_global_concurrency_limit_by_name(name).limit  # another run made it
            return default_slots


@contextmanager
def database_slots(url: str, *, wanted: int, default_slots: int) -> Iterator[int]:
    """Hold up to ``wanted`` slots of the database's Prefect global concurrency limit for a stage;
    yield how many were taken: the stage opens at most that many connections at once.

    Every totes run, on every worker, takes its slots from the same limit, so together they never
    hold more connections to one database than the limit allows: a run never swamps the source.
    Slots are taken once per stage, not per task: with Prefect's own server, concurrent slot
    requests are answered "retry in 2 s", which would add seconds to every run.
    """
    from prefect.concurrency.sync import concurrency

    name = database_limit_name(url)
    slots = max(1, min(wanted, _limit_slots(name, default_slots)))
    # The shortest lease Prefect grants: a run killed outright frees its slots within about a minute.
    with concurrency(name, occupy=slots, strict=False, lease_duration=60):
        yield slots


class SchemaDrift(RuntimeError):
    """The source's tables no longer have the columns or types totes reads (names them all)."""


# The PostgreSQL types (information_schema's data_type) each raw Arrow type can be read from.
_SOURCE_TYPES_FOR = (
    (pa.types.is_int32, {"integer", "smallint"}),
    (pa.types.is_string, {"text", "character varying", "character", "USER-DEFINED"}),
    (pa.types.is_timestamp, {"timestamp without time zone", "timestamp with time zone"}),
    (pa.types.is_decimal, {"numeric"}),
    (pa.types.is_date32, {"date"}),
    (pa.types.is_boolean, {"boolean"}),
)


def schema_drift(found: dict[str, dict[str, str]]) -> tuple[list[str], list[str]]:
    """(errors, warnings) from the source's columns (table -> column -> data_type) against the model.

    Errors: a table or a column totes reads is gone (dropped or renamed), or its type changed to one
    the model cannot take. Warnings: new columns, which totes does not carry (the run goes on). Pure.
    """
    errors, warnings = [], []
    for name, table in SOURCE_TABLES.items():
        columns = found.get(name)
        if columns is None:
            errors.append(f"source table {name} does not exist")
            continue
        missing = [c for c in table.columns if c not in columns]
        new = [c for c in columns if c not in table.columns]
        if missing:
            hint = f"; new column(s) there: {', '.join(new)} (renamed?)" if new else " (dropped or renamed?)"
            errors.append(f"source table {name} lacks column(s) {', '.join(missing)}{hint}")
        elif new:
            warnings.append(f"schema drift: source table {name} has new column(s) {', '.join(new)}, not carried into the warehouse")
        for expected in table.schema:
            actual = columns.get(expected.name)
            allowed = next((types for test, types in _SOURCE_TYPES_FOR if test(expected.type)), set())
            if actual is not None and actual not in allowed:
                errors.append(f"source column {name}.{expected.name} is {actual}, expected one of {', '.join(sorted(allowed))}")
    return errors, warnings


def read_source_columns(connection: adbc_postgres.Connection) -> dict[str, dict[str, str]]:
    with connection.cursor() as cursor:
        cursor.execute(read_sql("select_source_columns"))
        rows = cursor.fetchall()
    connection.rollback()
    found: dict[str, dict[str, str]] = {}
    for table, column, data_type in rows:
        found.setdefault(table, {})[column] = data_type
    return found


def read_source_horizon(connection: adbc_postgres.Connection) -> Horizon:
    with connection.cursor() as cursor:
        cursor.execute(read_sql("read_source_horizon"))
        clock_at, oldest_open, has_hidden = cursor.fetchone()
    connection.rollback()
    return Horizon(
        clock_at=_naive(clock_at),
        oldest_open_transaction_at=_naive(oldest_open) if oldest_open else None,
        has_hidden_sessions=bool(has_hidden),
    )


def next_watermark(
    previous: datetime, horizon: Horizon, *, safety_seconds: float, fallback_lag_seconds: float
) -> datetime:
    """The watermark the run after this one starts from. Pure.

    Never later than the in-flight horizon (less a safety margin for writers' clocks), never earlier
    than the previous watermark. When the source role cannot see other sessions' transactions, a
    fixed lag stands in for the horizon.
    """
    if horizon.has_hidden_sessions:
        bound = horizon.clock_at - timedelta(seconds=fallback_lag_seconds)
    else:
        bound = horizon.clock_at
    if horizon.oldest_open_transaction_at is not None:
        bound = min(bound, horizon.oldest_open_transaction_at)
    return max(previous, bound - timedelta(seconds=safety_seconds))


def timestamp_literal(value: datetime) -> str:
    """A SQL literal for a naive datetime, built from the datetime's own fields (never from text)."""
    if not isinstance(value, datetime):
        msg = f"watermark must be a datetime, got {type(value).__name__}"
        raise TypeError(msg)
    return f"'{value.replace(tzinfo=None).isoformat(sep=' ', timespec='microseconds')}'"


def delta_query(table: Table, since: datetime) -> str:
    """The delta SELECT of one source table; identifiers come from our schema only."""
    columns = []
    for name, arrow_type in zip(table.schema.names, table.schema.types, strict=True):
        quoted = quote_ident(name)
        # ADBC returns numeric and enum columns as opaque extension types: select them as text.
        needs_text = arrow_type in SOURCE_TEXT_CAST_TYPES or (table.name, name) in SOURCE_ENUM_COLUMNS
        columns.append(f"source.{quoted}::text as {quoted}" if needs_text else f"source.{quoted}")
    return read_sql("extract_delta").format(
        table=quote_ident(table.name), columns=",\n    ".join(columns), watermark=timestamp_literal(since)
    )


# The text of a numeric that numeric(10,2) holds exactly: at most 8 integer digits and 2 decimals
# (trailing zeros beyond them are exact too). The source's money columns are unconstrained
# numeric in the real ToteSys dump, so anything may arrive: 1e9, 2.005, NaN.
_EXACT_MONEY_TEXT = r"^-?[0-9]{1,8}(\.[0-9]{0,2}0*)?$"


def conform_batch(batch: pa.RecordBatch, table: Table) -> tuple[pa.RecordBatch, pa.Table | None]:
    """Cast one record batch read from the source to the table's exact raw-zone schema. Pure.

    Returns the conformed rows and the rows that cannot be conformed (None if none): a money
    value that numeric(10,2) cannot hold exactly (too large, more than 2 decimals, NaN). Those
    rows keep their source text and gain ``_reason``, naming the column and value; the
    rest of the batch flows.

    Raises:
        ValueError: a column is missing, or a value does not fit its type; names the table and column.
    """
    unfit = reasons = None
    for target in table.schema:
        if target.name in batch.schema.names and pa.types.is_decimal(target.type) and pa.types.is_string(batch.column(target.name).type):
            text = batch.column(target.name)
            bad = pc.fill_null(pc.invert(pc.match_substring_regex(text, _EXACT_MONEY_TEXT)), False)
            if not pc.any(bad).as_py():
                continue  # the usual case: no reason strings built
            reason = pc.binary_join_element_wise(
                pa.scalar(f"{target.name} "), text, pa.scalar(f" does not fit {_decimal_sql(target.type)} exactly"), ""
            )
            reason = pc.if_else(bad, reason, pa.scalar(None, pa.string()))
            reasons = reason if reasons is None else pc.coalesce(reasons, reason)
            unfit = bad if unfit is None else pc.or_(unfit, bad)
    rejected = None
    if unfit is not None:
        rejected = pa.Table.from_batches([batch.filter(unfit)]).append_column(
            "_reason", reasons.filter(unfit)
        )
        batch = batch.filter(pc.invert(unfit))
    arrays = []
    for target in table.schema:
        if target.name not in batch.schema.names:
            msg = f"source table {table.name} has no column {target.name!r} (schema drift)"
            raise ValueError(msg)
        column = batch.column(target.name)
        try:
            arrays.append(pc.cast(column, target.type) if column.type != target.type else column)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
            msg = f"{table.name}.{target.name}: cannot read as {target.type}: {error}"
            raise ValueError(msg) from error
    return pa.RecordBatch.from_arrays(arrays, schema=table.schema), rejected


def _decimal_sql(decimal: pa.Decimal128Type) -> str:
    return f"numeric({decimal.precision},{decimal.scale})"


def drop_known_versions(batch: pa.RecordBatch | pa.Table, table: Table, known: set[tuple[int, datetime]]) -> pa.Table:
    """Drop rows whose (key, last_updated) was ingested by an earlier run. Pure."""
    rows = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    if not known or rows.num_rows == 0:
        return rows
    (key,) = table.key
    known_frame = pl.DataFrame(
        {key: [k for k, _ in known], "last_updated": [ts for _, ts in known]},
        schema={key: pl.Int32, "last_updated": pl.Datetime("us")},
    )
    fresh = pl.from_arrow(rows).join(known_frame, on=[key, "last_updated"], how="anti")
    return fresh.to_arrow().cast(rows.schema) if fresh.height else rows.slice(0, 0)


def versions_since(batch: pa.RecordBatch | pa.Table, table: Table, since: datetime) -> set[tuple[int, datetime]]:
    """(key, last_updated) of the rows stamped at or after ``since``. Pure."""
    (key,) = table.key
    stamped = batch.column("last_updated")
    mask = pc.greater_equal(stamped, pa.scalar(since, type=stamped.type))
    recent = batch.filter(mask)
    return set(
        zip(
            recent.column(key).to_pylist(),
            recent.column("last_updated").to_pylist(),
            strict=True,
        )
    )


def stream_delta(
    connection: adbc_postgres.Connection, table: Table, since: datetime
) -> Iterator[tuple[pa.RecordBatch, pa.Table | None]]:
    """Every version of ``table`` stamped at or after ``since``, batch by batch, conformed (with the
    rows that could not be, see :func:`conform_batch`)."""
    with connection.cursor() as cursor:
        cursor.execute(delta_query(table, since))
        reader = cursor.fetch_record_batch()
        for batch in reader:
            yield conform_batch(batch, table)
    connection.rollback()


# --- hard deletes: key sets compared range by range ----------------------------------------------

# The hash select_key_buckets.sql sums per range: a cubic polynomial of the key modulo the prime
# 2^31 - 1. With the count and the plain sum it tells two key sets of one range apart unless a
# deliberate collision was built; a range that differs is then compared key by key, so a false
# "differs" costs one small read and never marks a row.
KEY_HASH_MODULUS = 2147483647


def key_buckets(keys: pl.Series, width: int) -> pl.DataFrame:
    """The per-range summary of a key set that select_key_buckets.sql computes in the source. Pure."""
    k, r, p = pl.col("k"), pl.col("r"), KEY_HASH_MODULUS
    r2 = (r * r) % p
    # Streaming: a full load summarises millions of keys, which eagerly costs ~100 MiB per table.
    return (
        pl.LazyFrame({"k": keys})
        .with_columns(k.cast(pl.Int64))
        .with_columns(((k % p + p) % p).alias("r"))
        .group_by(((k - ((k % width) + width) % width) // width).alias("bucket"))
        .agg(
            pl.len().cast(pl.Int64).alias("keys"),
            k.sum().alias("key_sum"),
            ((((r2 * r) % p) * 48271 + r2 * 16807 + r) % p).sum().alias("key_hash"),
        )
        .collect(engine="streaming")
    )


def differing_buckets(source: pl.DataFrame, known: pl.DataFrame) -> list[int]:
    """The ranges whose key-set summaries differ between the source and the known keys. Pure."""
    joined = source.join(known, on="bucket", how="full", suffix="_known", coalesce=True)
    differs = pl.any_horizontal(pl.col(c).ne_missing(pl.col(f"{c}_known")) for c in ("keys", "key_sum", "key_hash"))
    return sorted(joined.filter(differs)["bucket"].to_list())


def combine_buckets(summary: pl.DataFrame, change: pl.DataFrame, *, sign: int) -> pl.DataFrame:
    """``summary`` with the summary of a set of keys added (``sign`` 1) or taken away (-1): the three
    figures are sums, so the summary of a changed key set never needs the whole set. Pure."""
    columns = ("keys", "key_sum", "key_hash")
    joined = summary.join(change, on="bucket", how="full", suffix="_change", coalesce=True).fill_null(0)
    return joined.select(
        "bucket", *[(pl.col(c) + sign * pl.col(f"{c}_change")).alias(c) for c in columns]
    ).filter(pl.col("keys") != 0)


def _bucket_schema() -> pa.Schema:
    return pa.schema([(c, pa.int64()) for c in ("bucket", "keys", "key_sum", "key_hash")])


def read_source_buckets(connection: adbc_postgres.Connection, table: Table, width: int) -> pl.DataFrame:
    """The source's per-range summary of ``table``'s keys (select_key_buckets.sql)."""
    (key,) = table.key
    fields = {"table": quote_ident(table.name), "key": quote_ident(key), "width": int(width)}
    with connection.cursor() as cursor:
        cursor.execute(read_sql("select_key_buckets").format(**fields))
        summary = pl.from_arrow(cursor.fetch_arrow_table()).cast(pl.Int64)
    connection.rollback()
    return summary


def read_source_keys(connection: adbc_postgres.Connection, table: Table, low: int, high: int) -> pl.Series:
    """The source's keys of ``table`` in [low, high)."""
    (key,) = table.key
    fields = {"table": quote_ident(table.name), "key": quote_ident(key)}
    with connection.cursor() as cursor:
        cursor.execute(read_sql("select_keys_in_range").format(**fields), parameters=(low, high))
        present = pl.from_arrow(cursor.fetch_arrow_table())[key].cast(pl.Int64)
    connection.rollback()
    return present


def _naive(value: datetime) -> datetime:
    return value.replace(tzinfo=None) if value.tzinfo else value


# --- Prefect tasks: the ingest stage ---------------------------------------------------------------


@dataclass(frozen=True)
class IngestPlan:
    """The batch an ingest run will write, and each table's watermark state before it."""

    batch_id: str
    previous: dict[str, dict]


@task(name="plan-ingest-batch", cache_policy=NO_CACHE, **RETRY_POLICY)
def plan_ingest_batch() -> IngestPlan:
    """Read the newest ingest manifest: its watermarks are where this run's reads start."""
    lake = Lake.from_url(load_settings().lake_url)
    lake.require_bucket()
    batches = lake.list_batches(RAW)
    if not batches:
        return IngestPlan(batch_id=new_batch_id(1), previous={})
    newest = batches[-1]
    manifest = lake.read_manifest(RAW, newest)
    return IngestPlan(batch_id=new_batch_id(batch_sequence(newest) + 1), previous=manifest["tables"])


@task(name="read-source-horizon", cache_policy=NO_CACHE, **RETRY_POLICY)
def read_horizon() -> Horizon:
    """Read the source's in-flight horizon, before any data is read."""
    settings = load_settings()
    with connect(settings.require_source_url(), purpose="source database") as connection:
        horizon = read_source_horizon(connection)
    logger = get_run_logger()
    if horizon.has_hidden_sessions:
        logger.warning(
            "The source role cannot see other sessions in pg_stat_activity; watermarks lag %.0f s "
            "behind the clock instead of tracking open transactions (grant it pg_read_all_stats).",
            settings.fallback_lag_seconds,
        )
    logger.info(
        "Source horizon: clock %s, oldest open transaction %s",
        horizon.clock_at,
        horizon.oldest_open_transaction_at or "none",
    )
    return horizon


@task(name="check-source-schema", cache_policy=NO_CACHE, **RETRY_POLICY)
def check_source_schema() -> tuple[list[str], list[str]]:
    """Compare the source's tables with the model before reading: fail on a missing table, column or
    incompatible type (nothing is read, no watermark moves); warn about new columns.

    Returns the drift warnings, and those not reported by an earlier run (the lake keeps the last
    set in ``raw/_schema_drift.json``), so that a new column alerts once, not every run."""
    settings = load_settings()
    with connect(settings.require_source_url(), purpose="source database") as connection:
        errors, warnings = schema_drift(read_source_columns(connection))
    logger = get_run_logger()
    for warning in warnings:
        logger.warning(warning)
    if errors:
        raise SchemaDrift("schema drift: " + "; ".join(errors))
    lake = Lake.from_url(settings.lake_url)
    reported_path = f"{RAW}/_schema_drift.json"
    reported = json.loads(lake.fs.cat_file(lake.full(reported_path))) if lake.fs.exists(lake.full(reported_path)) else []
    if sorted(warnings) != sorted(reported):
        lake.put_whole(reported_path, json.dumps(sorted(warnings)).encode())
    return warnings, [w for w in warnings if w not in reported]


@task(
    name="extract-table-delta",
    task_run_name="extract-{table_name}",
    cache_policy=NO_CACHE,
    **RETRY_POLICY,
)
def extract_table_delta(table_name: str, batch_id: str, previous: dict | None, horizon: Horizon) -> dict:
    """Stream one table's new versions into the raw zone; return its files and next watermark."""
    settings = load_settings()
    lake = Lake.from_url(settings.lake_url)
    table = SOURCE_TABLES[table_name]
    state = TableWatermark.from_json(previous)
    watermark = next_watermark(
        state.watermark,
        horizon,
        safety_seconds=settings.watermark_safety_seconds,
        fallback_lag_seconds=settings.fallback_lag_seconds,
    )
    overlap: set[tuple[int, datetime]] = set()
    read = 0
    unfit: list[pa.Table] = []
    seen_keys: list[np.ndarray] = []
    (key,) = table.key

    def fresh_batches() -> Iterator[pa.RecordBatch]:
        nonlocal read
        for batch, rejected in stream_delta(connection, table, state.watermark):
            read += batch.num_rows
            overlap.update(versions_since(batch, table, watermark))
            if rejected is not None:
                read += rejected.num_rows
                overlap.update(versions_since(rejected, table, watermark))
                unfit.append(drop_known_versions(rejected, table, state.overlap_keys))
            # A copy: the driver's batch is one allocation, and a column kept by reference would
            # keep every column of every batch alive (the whole table, in memory, on a full load).
            seen_keys.append(np.array(batch.column(key).to_numpy(zero_copy_only=False), copy=True))
            yield from drop_known_versions(batch, table, state.overlap_keys).to_batches()

    logger = get_run_logger()
    source_url = settings.require_source_url()
    with connect(source_url, purpose="source database") as connection:
        try:
            files, rows = lake.write_batches(
                RAW, table_name, batch_id, table.schema, fresh_batches(),
                rows_per_file=settings.parquet_rows_per_file,
            )
            seen = pl.Series(key, np.concatenate(seen_keys) if seen_keys else [], pl.Int32)
            deletes = check_deletes(connection, lake, table, batch_id, previous, seen, horizon.clock_at)
        except adbc_postgres.Error as error:
            msg = (
                f"reading source table {table_name} from the source database {redact_url(source_url)}: "
                f"{database_error_reason(error)}"
            )
            raise SourceReadFailed(msg) from error
    result = {"files": files, "rows": rows, **TableWatermark(watermark, overlap).to_json(), **deletes}
    if deletes.get("deleted"):
        logger.info("%s: %d row(s) deleted in the source since the last check", table_name, deletes["deleted"]["rows"])
    rejected = pa.concat_tables(unfit) if unfit else None
    if rejected is not None and rejected.num_rows:
        # Kept in the raw zone beside the batch: the transform reports them with the other rejects.
        result["rejected"] = {
            "files": lake.write_table(RAW, raw_quarantine_name(table_name), batch_id, rejected),
            "rows": rejected.num_rows,
        }
        logger.warning(
            "%s: %d row(s) cannot be read exactly and are quarantined (first: %s)",
            table_name, rejected.num_rows, rejected.column("_reason")[0],
        )
    logger.info(
        "%s: read %d row(s) since %s, %d new version(s) in %d file(s); next watermark %s",
        table_name, read, state.watermark, rows, len(files), watermark,
    )
    return result


@dataclass
class KnownKeys:
    """The keys of one table totes has read and not found deleted, as kept in the raw zone beside
    each manifest: the sorted keys (``keys``) and their per-range summary (``key_summary``). The
    summary is read every run; the keys only when they change or a range differs."""

    lake: Lake
    table: Table
    files: list[str] | None
    summary: pl.DataFrame
    _keys: pl.Series | None = None

    @classmethod
    def before(cls, lake: Lake, table: Table, previous: dict | None, width: int) -> KnownKeys:
        """The state the previous batch left. A lake written before totes detected deletes (or
        with another range width) has no summary: it is rebuilt once, from every raw batch's
        files if there are no key files either."""
        if previous and previous.get("key_summary") is not None and previous.get("key_width") == width:
            summary = pl.from_arrow(lake.read_table(previous["key_summary"], _bucket_schema()))
            return cls(lake, table, previous["keys"], summary)
        if previous is None:
            files = []
        elif "keys" in previous:
            files = previous["keys"]
        else:
            files = [f for b in lake.list_batches(RAW) for f in lake.read_manifest(RAW, b)["tables"].get(table.name, {}).get("files", [])]
        keys = _read_keys(lake, table, files).unique().sort()
        return cls(lake, table, None, key_buckets(keys, width), keys)

    def keys(self) -> pl.Series:
        if self._keys is None:
            self._keys = _read_keys(self.lake, self.table, self.files or [])
        return self._keys


def _read_keys(lake: Lake, table: Table, files: list[str]) -> pl.Series:
    """The key column of ``table`` in these lake files."""
    (key,) = table.key
    return pl.from_arrow(lake.read_table(files, pa.schema([table.schema.field(key)])))[key]


def check_deletes(
    connection: adbc_postgres.Connection, lake: Lake, table: Table, batch_id: str, previous: dict | None,
    seen: pl.Series, checked_at: datetime,
) -> dict:
    """Find the keys hard-deleted in the source since the last check and keep the known key set
    up to date; returns the manifest entries ``keys``, ``key_summary``, ``key_width`` and, if any
    key is gone, ``deleted`` (written to the raw zone with ``_deleted_at``).

    The source's per-range summary is compared with the known one; only the ranges that differ
    are read key by key. A known key the source no longer holds is deleted; a source key totes
    does not know yet is a new row, which a delta reads (ignored here).
    """
    (key,) = table.key
    width = load_settings().delete_check_bucket_keys
    if width == 0:
        return {}  # delete detection is off: no key set kept (turning it on later rebuilds it once)
    known = KnownKeys.before(lake, table, previous, width)
    new = seen.unique()
    if new.len():
        new = new.filter(~new.is_in(known.keys().implode()))
    summary = combine_buckets(known.summary, key_buckets(new, width), sign=1)
    gone = []
    for bucket in differing_buckets(read_source_buckets(connection, table, width), summary):
        low, high = bucket * width, (bucket + 1) * width
        candidates = pl.concat([known.keys(), new]).cast(pl.Int64)
        candidates = candidates.filter((candidates >= low) & (candidates < high))
        gone.append(candidates.filter(~candidates.is_in(read_source_keys(connection, table, low, high).implode())))
    deleted = pl.concat(gone).cast(pl.Int32).sort() if gone else pl.Series(key, [], pl.Int32)
    entries: dict = {"keys": known.files, "key_summary": previous.get("key_summary") if previous else None, "key_width": width}
    if deleted.len():
        marks = pa.table(
            {key: deleted.to_arrow(), "_deleted_at": pa.array([checked_at] * deleted.len(), TIMESTAMP)},
            schema=deleted_marks_schema(key),
        )
        entries["deleted"] = {"files": lake.write_table(RAW, f"_deleted_{table.name}", batch_id, marks), "rows": deleted.len()}
        summary = combine_buckets(summary, key_buckets(deleted, width), sign=-1)
    if new.len() or deleted.len() or known.files is None:
        keys = pl.concat([known.keys(), new])
        keys = keys.filter(~keys.is_in(deleted.implode())).sort()
        entries["keys"] = lake.write_table(RAW, f"_keys_{table.name}", batch_id, pa.table({key: keys.to_arrow()}))
        entries["key_summary"] = lake.write_table(RAW, f"_key_summary_{table.name}", batch_id, summary.to_arrow().cast(_bucket_schema()))
    return entries


def raw_quarantine_name(table: str) -> str:
    """The raw-zone table holding a source table's rows that could not be read exactly."""
    return f"_unreadable_{table}"


def unreadable_schema(table: Table) -> pa.Schema:
    """The schema of those rows: the source's columns, money as the source's text, and ``_reason``."""
    fields = [pa.field(f.name, pa.string()) if pa.types.is_decimal(f.type) else f for f in table.schema]
    return pa.schema([*fields, pa.field("_reason", pa.string())])


@task(name="record-ingest-batch", cache_policy=NO_CACHE, **RETRY_POLICY)
def record_ingest_batch(plan: IngestPlan, tables: dict[str, dict], horizon: Horizon) -> str | None:
    """Write the batch's manifest: from this moment its data is durable and its watermarks count.

    Writes nothing when no table has a new version, an unreadable row or a deleted row, so a run
    with nothing to do leaves the lake exactly as it was.
    """
    if not any(result["rows"] or result.get("rejected") or result.get("deleted") for result in tables.values()):
        get_run_logger().info("No new versions in any source table: nothing to record.")
        return None
    lake = Lake.from_url(load_settings().lake_url)
    manifest = {
        "batch_id": plan.batch_id,
        "written_at": datetime.now(UTC).isoformat(),
        "horizon": {
            "clock_at": horizon.clock_at.isoformat(),
            "oldest_open_transaction_at": horizon.oldest_open_transaction_at.isoformat()
            if horizon.oldest_open_transaction_at
            else None,
        },
        "tables": tables,
    }
    lake.write_manifest(RAW, plan.batch_id, manifest)
    get_run_logger().info("Recorded ingest batch %s", plan.batch_id)
    return plan.batch_id
