"""Load: bulk-copy star Parquet into the warehouse and merge it, one transaction per lake batch.

For each batch: COPY (ADBC ingest) every star table into a temporary staging table, merge the staged
rows into the star tables (facts: insert versions not yet present; dimensions: upsert), record the
batch in ``_totes_loaded_batch``, and commit once. A crash anywhere rolls the whole batch back; a
batch already recorded is skipped, so loading the same batch twice changes nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial

import adbc_driver_postgresql.dbapi as adbc_postgres
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.extract import connect
from tasks.faults import RETRY_POLICY
from tasks.lake import STAR, Lake
from tasks.schema import (
    DIMENSION_TABLES,
    FACT_RECORD_IDS,
    FACT_REFERENCES,
    FEED_TABLES,
    STAR_NULLABLE_COLUMNS,
    STAR_TABLES,
    quote_ident,
    read_sql,
    deleted_marks_schema,
    split_sql,
)
from tasks.settings import load_settings

log = logging.getLogger("totes.load")

# What an inferred dimension member holds in its NOT NULL columns until the real row arrives.
UNKNOWN_MEMBER = "Unknown"

def migrate(connection: adbc_postgres.Connection) -> None:
    """Create or migrate the warehouse's star schema and bookkeeping tables (idempotent)."""
    with connection.cursor() as cursor:
        cursor.execute(read_sql("take_load_lock"))
        for statement in split_sql(read_sql("create_warehouse")):
            cursor.execute(statement)
    connection.commit()


def loaded_batches(connection: adbc_postgres.Connection) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(read_sql("select_loaded_batches"))
        found = {row[0] for row in cursor.fetchall()}
    connection.rollback()
    return found


def _staging_name(table: str) -> str:
    return f"_totes_staged_{table}"


def merge_statement(table: str) -> str:
    """The merge SQL of one star table, with identifiers from our schema only."""
    spec = STAR_TABLES[table]
    columns = [quote_ident(c) for c in spec.columns]
    fields = {
        "table": quote_ident(table),
        "staging": quote_ident(_staging_name(table)),
        "columns": ", ".join(columns),
        "key": ", ".join(quote_ident(k) for k in spec.key),
    }
    if table in DIMENSION_TABLES:
        fields["excluded_columns"] = ", ".join(f"excluded.{c}" for c in columns)
        fields["target_columns"] = ", ".join(f"target.{c}" for c in columns)
        return read_sql("upsert_dimension").format(**fields)
    return read_sql("insert_new_fact_versions").format(**fields)


# A stream factory: each call yields the table's record batches afresh (a fallback re-reads them).
BatchStream = tuple[pa.Schema, Callable[[], Iterator[pa.RecordBatch]]]


def with_batch_id(batches: Iterator[pa.RecordBatch], batch_id: str) -> Iterator[pa.RecordBatch]:
    """The record batches with the ``_batch_id`` lineage column appended, as the table has it."""
    for batch in batches:
        yield batch.append_column("_batch_id", pa.array([batch_id] * batch.num_rows, pa.string()))


def ingest_temporary(cursor: adbc_postgres.Cursor, name: str, data: pa.Table | pa.RecordBatchReader) -> int:
    """COPY ``data`` into a fresh temporary table ``name`` (dropped first: a batch's earlier attempt
    in this session may have left one); returns the rows copied."""
    cursor.execute(f"drop table if exists pg_temp.{quote_ident(name)}")
    return cursor.adbc_ingest(name, data, mode="create", temporary=True)


def collecting_references(
    batches: Callable[[], Iterator[pa.RecordBatch]], table: str, found: dict[str, list[pa.Array]]
) -> Iterator[pa.RecordBatch]:
    """A fresh stream of the fact table's record batches, unchanged, noting on the way the dimension
    ids they name (each batch's distinct ids, as new arrays; repeats across batches are removed at
    the end)."""
    for batch in batches():
        for column, dimension in FACT_REFERENCES[table].items():
            found.setdefault(dimension, []).append(pc.unique(batch.column(column).drop_null()))
        yield batch


def inferred_members_statement(dimension: str) -> str:
    """The SQL inserting placeholder members for referenced ids the dimension lacks: "Unknown" in
    every NOT NULL column, NULL in the others. Identifiers from our schema only."""
    spec = STAR_TABLES[dimension]
    (key,) = spec.key
    others = [c for c in spec.columns if c != key]
    values = ["null" if (dimension, c) in STAR_NULLABLE_COLUMNS else f"'{UNKNOWN_MEMBER}'" for c in others]
    return read_sql("insert_inferred_members").format(
        table=quote_ident(dimension),
        key=quote_ident(key),
        columns=", ".join(quote_ident(c) for c in others),
        values=", ".join(values),
    )


def infer_missing_members(
    cursor: adbc_postgres.Cursor, batch_id: str, referenced: dict[str, list[pa.Array]]
) -> dict[str, list[int]]:
    """Give every id the batch's facts name, and its dimension lacks, an inferred member; return
    the ids inferred per dimension."""
    inferred = {}
    for dimension, arrays in sorted(referenced.items()):
        # Polars, not pc.unique: Arrow's hash table costs ~120 bytes per id (177 MiB for the 1.5 M
        # transaction ids of a scale-100 full load), Polars' ~15.
        ids = pl.Series("id", pa.chunked_array(arrays, pa.int32())).unique().to_arrow()
        if len(ids) == 0:
            continue
        ingest_temporary(cursor, "_totes_referenced", pa.table({"id": ids}))
        # Statistics, or the planner guesses the anti-join badly: 4 s instead of under 1 at scale 100.
        cursor.execute("analyze pg_temp._totes_referenced")
        cursor.execute(inferred_members_statement(dimension), parameters=(batch_id,))
        if found := [row[0] for row in cursor.fetchall()]:
            inferred[dimension] = found
    return inferred


def describe_inferred(inferred: dict[str, list[int]]) -> list[str]:
    """One data-quality warning per dimension that got inferred members."""
    return [
        f"{dimension}: facts refer to {len(ids)} id(s) it does not hold ({', '.join(map(str, ids[:5]))}"
        f"{', ...' if len(ids) > 5 else ''}); loaded against inferred {UNKNOWN_MEMBER!r} members, "
        "filled in when the rows arrive"
        for dimension, ids in inferred.items()
    ]


def mark_deleted_statement(table: str) -> str:
    """The SQL marking a star table's rows whose source rows were hard-deleted (facts: the latest
    version of each key only). Identifiers from our schema only."""
    key = quote_ident(STAR_TABLES[table].key[0])
    if table in FACT_RECORD_IDS:
        return read_sql("mark_deleted_fact").format(
            table=quote_ident(table), key=key, record_id=quote_ident(FACT_RECORD_IDS[table])
        )
    return read_sql("mark_deleted_dimension").format(table=quote_ident(table), key=key)


def mark_deleted(cursor: adbc_postgres.Cursor, deletions: dict[str, pa.Table]) -> dict[str, int]:
    """Set ``_deleted_at`` on the rows of each star table whose keys the batch records as deleted."""
    marked = {}
    for table, marks in sorted(deletions.items()):
        ingest_temporary(cursor, "_totes_deleted", marks)
        cursor.execute(mark_deleted_statement(table))
        (marked[table],) = cursor.fetchone()
    return marked


def _copy_straight_in(cursor: adbc_postgres.Cursor, table: str, batch_id: str, stream: BatchStream) -> int:
    """COPY the batch straight into a star table that is still empty: nothing to collide with, so
    no staging table and no INSERT ... SELECT ... ON CONFLICT (half of a full load's time).

    Only for empty tables: a COPY that meets a key already loaded aborts the transaction, and the
    ADBC driver cannot roll back to a savepoint after a failed statement, so "try, then merge"
    is not an option.
    """
    schema, batches = stream
    target_schema = schema.append(pa.field("_batch_id", pa.string()))
    return cursor.adbc_ingest(
        table, pa.RecordBatchReader.from_batches(target_schema, with_batch_id(batches(), batch_id)), mode="append"
    )


def roll_back(connection: adbc_postgres.Connection) -> None:
    """Roll back after a failure, keeping the failure: if the connection itself is gone (the server
    ended the session), the server has already rolled the transaction back."""
    try:
        connection.rollback()
    except adbc_postgres.Error:
        log.info("rollback not possible, the connection is gone: the server rolled the transaction back")


def _is_empty(cursor: adbc_postgres.Cursor, table: str) -> bool:
    # bandit B608: identifier from tasks/schema.py, quoted
    cursor.execute(f"select not exists (select from public.{quote_ident(table)})")  # nosec B608
    return bool(cursor.fetchone()[0])


@dataclass(frozen=True)
class BatchLoad:
    """What loading one star batch changed: rows per table, and the inferred members it created."""

    changed: dict[str, int]
    inferred: dict[str, list[int]]
    deleted: dict[str, int] = field(default_factory=dict)

    @property
    def warnings(self) -> list[str]:
        return describe_inferred(self.inferred)


def load_batch(
    connection: adbc_postgres.Connection,
    batch_id: str,
    tables: dict[str, BatchStream],
    *,
    deletions: dict[str, pa.Table] | None = None,
    commit: bool = True,
) -> BatchLoad | None:
    """Merge one star batch in one transaction. Returns what changed, or None if the batch was
    already loaded (by an earlier run, or by a concurrent loader that got there first).

    ``tables`` maps each star table to its Arrow schema and a function returning a stream of its
    record batches; dimensions are merged before facts. The rows of a table that is still empty are
    copied straight in; otherwise they are staged in a temporary table and merged. With ``commit=False`` the caller owns
    the transaction (a full rebuild loads every batch in one). ``deletions`` holds, per star
    table, the keys found hard-deleted in the source (with ``_deleted_at``): marked last.
    """
    changed: dict[str, int] = {}
    referenced: dict[str, list[pa.Array]] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute(read_sql("take_load_lock"))
            cursor.execute(read_sql("select_loaded_batch"), parameters=(batch_id,))
            if cursor.fetchone() is not None:
                if commit:
                    connection.rollback()
                return None
            for table in sorted(tables, key=lambda name: (not name.startswith("dim_"), name)):
                schema, batches = tables[table]
                if table in FACT_REFERENCES:
                    batches = partial(collecting_references, batches, table, referenced)
                if _is_empty(cursor, table):
                    changed[table] = _copy_straight_in(cursor, table, batch_id, (schema, batches))
                    continue
                staged = ingest_temporary(
                    cursor, _staging_name(table), pa.RecordBatchReader.from_batches(schema, batches())
                )
                if staged == 0:
                    changed[table] = 0
                    continue
                cursor.execute(merge_statement(table), parameters=(batch_id,))
                (changed[table],) = cursor.fetchone()
            inferred = infer_missing_members(cursor, batch_id, referenced)
            for dimension, ids in inferred.items():
                changed[dimension] = changed.get(dimension, 0) + len(ids)
            # Last: a row changed and then deleted within the batch ends up deleted.
            deleted = mark_deleted(cursor, deletions or {})
            cursor.execute(
                read_sql("record_loaded_batch"),
                parameters=(batch_id, json.dumps(changed)),
            )
        if commit:
            connection.commit()
    except BaseException:
        roll_back(connection)
        raise
    return BatchLoad(changed, inferred, deleted)


def revenue_by_month(connection: adbc_postgres.Connection, *, months: int) -> list[tuple]:
    """The demo's star query (see select_revenue_by_month.sql): newest months first."""
    with connection.cursor() as cursor:
        cursor.execute(read_sql("select_revenue_by_month"), parameters=(months * 3,))
        rows = cursor.fetchall()
    connection.rollback()
    return rows


def exchange_rates_by_file(connection: adbc_postgres.Connection) -> list[tuple]:
    """(source file, version, rows, latest USD rate) of fact_exchange_rate: the demo's feed view."""
    with connection.cursor() as cursor:
        cursor.execute(read_sql("select_exchange_rates_by_file"))
        rows = cursor.fetchall()
    connection.rollback()
    return rows


def count_rows(connection: adbc_postgres.Connection) -> dict[str, int]:
    """Rows in each star table and feed table."""
    counts = {}
    with connection.cursor() as cursor:
        for table in [*STAR_TABLES, *FEED_TABLES]:
            # bandit B608: identifier from tasks/schema.py, quoted
            cursor.execute(f"select count(*) from public.{quote_ident(table)}")  # nosec B608
            (counts[table],) = cursor.fetchone()
    connection.rollback()
    return counts


# --- Prefect tasks: the load stage -----------------------------------------------------------------


@task(name="migrate-warehouse", cache_policy=NO_CACHE, **RETRY_POLICY)
def migrate_warehouse() -> list[str]:
    """Create or migrate the star schema; return the star batches the lake has and the warehouse lacks."""
    settings = load_settings()
    lake = Lake.from_url(settings.lake_url)
    lake.require_bucket()
    with connect(settings.require_warehouse_url(), purpose="warehouse database") as connection:
        migrate(connection)
        loaded = loaded_batches(connection)
    return [batch for batch in lake.list_batches(STAR) if batch not in loaded]


@task(name="load-star-batch", task_run_name="load-{batch_id}", cache_policy=NO_CACHE, **RETRY_POLICY)
def load_star_batch(batch_id: str) -> BatchLoad:
    """COPY one star batch into staging tables and merge it, all in one transaction."""
    settings = load_settings()
    lake = Lake.from_url(settings.lake_url)
    streams = star_batch_streams(lake, batch_id)
    warehouse_url = settings.require_warehouse_url()
    with connect(warehouse_url, purpose="warehouse database") as connection:
        loaded = load_batch(connection, batch_id, streams, deletions=star_batch_deletions(lake, batch_id))
    logger = get_run_logger()
    if loaded is None:
        logger.info("Batch %s was already loaded: skipped", batch_id)
        return BatchLoad({}, {})
    logger.info(
        "Batch %s loaded: %s",
        batch_id,
        ", ".join(f"{name} {rows}" for name, rows in loaded.changed.items() if rows) or "no changes",
    )
    for table, rows in loaded.deleted.items():
        logger.info("Batch %s: %d row(s) of %s marked deleted", batch_id, rows, table)
    for warning in loaded.warnings:
        logger.warning("Data quality, batch %s: %s", batch_id, warning)
    return loaded


def star_batch_streams(lake: Lake, batch_id: str) -> dict[str, BatchStream]:
    """Each star table of a batch as (schema, a function streaming its record batches file by file
    from the lake)."""
    manifest = lake.read_manifest(STAR, batch_id)
    return {
        name: (STAR_TABLES[name].schema, partial(lake.iter_batches, entry["files"], STAR_TABLES[name].schema))
        for name, entry in manifest["tables"].items()
        if entry["files"]
    }


def star_batch_deletions(lake: Lake, batch_id: str) -> dict[str, pa.Table]:
    """Per star table, the keys the batch records as hard-deleted in the source (small: read whole)."""
    manifest = lake.read_manifest(STAR, batch_id)
    return {
        name: lake.read_table(entry["files"], deleted_marks_schema(STAR_TABLES[name].key[0]))
        for name, entry in manifest.get("deleted", {}).items()
    }


@task(name="rebuild-warehouse", cache_policy=NO_CACHE, **RETRY_POLICY)
def rebuild_warehouse_from_lake() -> tuple[dict[str, int], list[str]]:
    """Empty the star tables and load every star batch of the lake, all in one transaction."""
    settings = load_settings()
    lake = Lake.from_url(settings.lake_url)
    batches = lake.list_batches(STAR)
    logger = get_run_logger()
    changed: dict[str, int] = {}
    with connect(settings.require_warehouse_url(), purpose="warehouse database") as connection:
        migrate(connection)
        try:
            with connection.cursor() as cursor:
                cursor.execute(read_sql("take_load_lock"))
                cursor.execute(read_sql("truncate_star"))
            for batch_id in batches:
                loaded = load_batch(
                    connection, batch_id, star_batch_streams(lake, batch_id),
                    deletions=star_batch_deletions(lake, batch_id), commit=False,
                )
                counts = loaded.changed if loaded else {}
                changed = {name: changed.get(name, 0) + counts.get(name, 0) for name in changed.keys() | counts.keys()}
                logger.info("Rebuild: batch %s merged", batch_id)
            connection.commit()
        except BaseException:
            roll_back(connection)
            raise
    logger.info("Warehouse rebuilt from %d lake batch(es)", len(batches))
    return changed, batches
