"""Merging one star batch into the warehouse, in one transaction (ADBC).

For each batch: COPY (ADBC ingest) every star table into a temporary staging table, merge the staged
rows into the star tables (facts: insert versions not yet present; dimensions: upsert), give ids the
facts name and the dimensions lack an inferred member, mark rows deleted in the source, record the
batch in ``_totes_loaded_batch``, and commit once. A crash anywhere rolls the whole batch back; a
batch already recorded is skipped, so loading the same batch twice changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from tasks.core.locks import verify_cycle_locks
from tasks.core.postgres import Connection, Cursor, copy_rows, execute_for_one, fetch_rows, roll_back
from tasks.core.progress import with_progress
from tasks.core.warehouse import WAREHOUSE_SCHEMA, take_load_lock, use_schema
from tasks.load.history import close_deleted_versions, record_merged_versions
from tasks.load.statements import (
    LOAD_SQL,
    describe_inferred,
    inferred_members_statement,
    mark_deleted_statement,
    merge_statement,
    staging_name,
)
from tasks.schema import DIMENSION_TABLES, FACT_REFERENCES, quote_ident


def loaded_batches(connection: Connection) -> set[str]:
    """Ids of the batches the warehouse has loaded."""
    return {row[0] for row in fetch_rows(connection, LOAD_SQL.read("select_loaded_batches"))}


# A table's Arrow schema and a stream factory, called once per merge of the table: from the lake it
# reads the table's files; from a handoff it yields the parts as the transform builds them.
BatchStream = tuple[pa.Schema, Callable[[], Iterator[pa.RecordBatch]]]


def with_batch_id(batches: Iterator[pa.RecordBatch], batch_id: str) -> Iterator[pa.RecordBatch]:
    """The record batches with the ``_batch_id`` lineage column appended, as the table has it."""
    for batch in batches:
        # pa.repeat, not a Python list of the id per row: that list cost ~1 s of a full load at scale 100.
        yield batch.append_column("_batch_id", pa.repeat(pa.scalar(batch_id, pa.string()), batch.num_rows))


def ingest_temporary(cursor: Cursor, name: str, data: pa.Table | pa.RecordBatchReader) -> int:
    """COPY ``data`` into a fresh temporary table ``name`` (dropped first: a batch's earlier attempt
    in this session may have left one); returns the rows copied."""
    cursor.execute(f"drop table if exists pg_temp.{quote_ident(name)}")
    return copy_rows(cursor, name, data, mode="create", temporary=True)


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


def infer_missing_members(cursor: Cursor, batch_id: str, referenced: dict[str, list[pa.Array]]) -> dict[str, list[int]]:
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


def mark_deleted(cursor: Cursor, deletions: dict[str, pa.Table], *, history: bool = False) -> dict[str, int]:
    """Set ``_deleted_at`` on the rows of each star table whose keys the batch records as deleted
    (with ``history``, their current versions end then)."""
    marked: dict[str, int] = {}
    for table, marks in sorted(deletions.items()):
        ingest_temporary(cursor, "_totes_deleted", marks)
        (marked[table],) = execute_for_one(cursor, mark_deleted_statement(table))
        if history:
            close_deleted_versions(cursor, table)
    return marked


def _copy_straight_in(cursor: Cursor, table: str, batch_id: str, stream: BatchStream) -> int:
    """COPY the batch straight into a star table that is still empty: nothing to collide with, so
    no staging table and no INSERT ... SELECT ... ON CONFLICT (half of a full load's time).

    Only for empty tables: a COPY that meets a key already loaded aborts the transaction, and the
    ADBC driver cannot roll back to a savepoint after a failed statement, so "try, then merge"
    is not an option.

    The table's indexes are dropped before the COPY and built again after it, in the same
    transaction: one sort-based build costs far less than keeping them up to date row by row
    (measured at scale 100: fact_payment 8.9 s -> 5.0 s + 1.1 s, dim_transaction 4.3 s -> 1.7 s +
    0.5 s). Readers of the table wait for the load's commit instead of seeing it empty.
    """
    schema, batches = stream
    target_schema = schema.append(pa.field("_batch_id", pa.string()))
    cursor.execute(LOAD_SQL.read("select_index_rebuild"), parameters=(quote_ident(table),))
    rebuilds = cursor.fetchall()
    for drop, _ in rebuilds:
        cursor.execute(drop)
    copied = copy_rows(
        cursor,
        table,
        pa.RecordBatchReader.from_batches(
            target_schema, with_progress(with_batch_id(batches(), batch_id), f"{table}: copied")
        ),
        mode="append",
    )
    for _, create in rebuilds:
        cursor.execute(create)
    return copied


def _merge_table(cursor: Cursor, table: str, batch_id: str, stream: BatchStream) -> int:
    """Merge one star table's rows of the batch; returns the rows changed."""
    if _is_empty(cursor, table):
        return _copy_straight_in(cursor, table, batch_id, stream)
    schema, batches = stream
    staged = ingest_temporary(
        cursor,
        staging_name(table),
        pa.RecordBatchReader.from_batches(schema, with_progress(batches(), f"{table}: staged")),
    )
    if staged == 0:
        return 0
    (changed,) = execute_for_one(cursor, merge_statement(table), (batch_id,))
    return int(changed)


def _is_empty(cursor: Cursor, table: str) -> bool:
    # bandit B608: identifier from tasks/schema.py, quoted
    (empty,) = execute_for_one(cursor, f"select not exists (select from {quote_ident(table)})")  # nosec B608
    return bool(empty)


@dataclass(frozen=True)
class BatchLoad:
    """What loading one star batch changed: rows per table, and the inferred members it created."""

    changed: dict[str, int]
    inferred: dict[str, list[int]]
    deleted: dict[str, int] = field(default_factory=dict)

    @property
    def warnings(self) -> list[str]:
        return describe_inferred(self.inferred)


def in_merge_order(tables: dict[str, BatchStream]) -> list[tuple[str, BatchStream]]:
    """Dimensions before facts, each group by name (the order a batch read from the lake merges in)."""
    return sorted(tables.items(), key=lambda item: (item[0] not in DIMENSION_TABLES, item[0]))


def load_batch(
    connection: Connection,
    batch_id: str,
    tables: Iterable[tuple[str, BatchStream]],
    *,
    deletions: Callable[[], dict[str, pa.Table]] = dict,
    history: bool = False,
    into: str = WAREHOUSE_SCHEMA,
) -> BatchLoad | None:
    """Merge one star batch in one transaction. Returns what changed, or None if the batch was
    already loaded (by an earlier run, or by a concurrent loader that got there first).

    ``tables`` yields each star table with its Arrow schema and a function returning a stream of
    its record batches, in the order to merge them (they may still be being built: see
    ``tasks/core/handoff.py``; a table may come more than once). The rows of a table that is still
    empty are copied straight in; otherwise they are staged in a temporary table and merged. The star
    tables are those of the database schema ``into``: the warehouse's, or a rebuild's shadow
    (``tasks/load/shadow.py``).
    ``deletions`` gives, once every table is merged, per star table the keys found hard-deleted in
    the source (with ``_deleted_at``): marked last. With ``history`` (history mode), the dimension
    rows merged and deleted become versions of ``dim_<name>_history`` in the same transaction
    (``tasks/load/history.py``).
    """
    changed: dict[str, int] = {}
    referenced: dict[str, list[pa.Array]] = {}
    try:
        take_load_lock(connection)
        with connection.cursor() as cursor:
            use_schema(cursor, into)
            cursor.execute(LOAD_SQL.read("select_loaded_batch"), parameters=(batch_id,))
            if cursor.fetchone() is not None:
                roll_back(connection)
                return None
            for table, (schema, batches) in tables:
                if table in FACT_REFERENCES:
                    batches = partial(collecting_references, batches, table, referenced)
                changed[table] = changed.get(table, 0) + _merge_table(cursor, table, batch_id, (schema, batches))
            inferred = infer_missing_members(cursor, batch_id, referenced)
            for dimension, ids in inferred.items():
                changed[dimension] = changed.get(dimension, 0) + len(ids)
            if history:
                record_merged_versions(cursor, batch_id, [table for table, rows in changed.items() if rows])
            # Last: a row changed and then deleted within the batch ends up deleted.
            deleted = mark_deleted(cursor, deletions(), history=history)
            cursor.execute(
                LOAD_SQL.read("record_loaded_batch"),
                parameters=(batch_id, json.dumps(changed)),
            )
        # The cycle lock still held, or taken again (the load lock and the batch record keep out a second loader).
        verify_cycle_locks()
        connection.commit()
    except BaseException:
        roll_back(connection)
        raise
    return BatchLoad(changed, inferred, deleted)
