"""Keys under which the source holds more than one row (a source without a primary key, like the
real ToteSys dump): every row of such a key is read again by key and settled at once (see
:func:`tasks.ingest.delta.decide_conflicts`), so that no batch ever holds two rows of one key,
which no later stage could load. The I/O of it; the decision is pure.

A key is found so when a read of this batch meets it twice, when the delete check counts it twice
in the source, or because an earlier batch set it aside (``RawTableEntry.conflicting_keys``): such
keys are read by key every run until the source holds one row under them, which then arrives.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc

from tasks.core.lake import RAW, Lake
from tasks.core.postgres import Connection
from tasks.ingest.content import INDEX_ROWS_HELD, index_folder, index_schema
from tasks.ingest.delta import decide_conflicts, drop_known_versions
from tasks.ingest.source import read_rows_by_key
from tasks.schema import Table


@dataclass(frozen=True)
class SettledConflicts:
    """A table's raw files of this batch after its conflicting keys were settled.

    Attributes:
        files, rows: the batch's raw files and rows: those written before, without any row of the
            keys settled, and the rows that arrived for them.
        kept: the rows that arrived (one per key).
        index: the content index rows of those rows.
        set_aside: rows quarantined now, with ``_reason`` (None if none).
        conflicting: the keys still under several different rows.
    """

    files: list[str]
    rows: int
    kept: pa.Table
    index: pa.Table | None
    set_aside: pa.Table | None
    conflicting: frozenset[int]


def settle_conflicts(
    connection: Connection,
    lake: Lake,
    table: Table,
    *,
    batch_id: str,
    files: list[str],
    rows: int,
    keys: frozenset[int],
    reported: frozenset[int],
    known: AbstractSet[tuple[int | None, datetime, str]],
    rows_per_file: int,
) -> SettledConflicts:
    """Read every row the source holds under ``keys`` and settle them: the batch's files (``files``,
    ``rows``) lose the rows of those keys they hold (rewritten: the first files are never named by
    a manifest, so every reader ignores them) and gain those that arrive, but for versions read
    before with the same content (``known``: the previous batch's overlap). ``reported``: keys set
    aside before, not named again."""
    (key,) = table.key
    files, rows = rewrite_without_keys(
        lake, table, batch_id, files, rows, pa.array(sorted(keys), pa.int32()), rows_per_file=rows_per_file
    )
    reads = list(read_rows_by_key(connection, table, sorted(keys)))
    found = pa.Table.from_batches([read.rows for read in reads], table.schema)
    unfit = [read.rejected for read in reads if read.rejected is not None and read.rejected.num_rows]
    decision = decide_conflicts(found, pa.concat_tables(unfit) if unfit else None, table, reported=reported)
    index = pa.concat_tables([read.index for read in reads]) if reads else None
    if index is not None and decision.conflicting:
        still = pa.array(sorted(decision.conflicting), pa.int32())
        index = index.filter(pc.invert(pc.is_in(index.column(key), still)))
    kept = drop_known_versions(decision.kept, table, known)
    if kept.num_rows:
        arrived, arrived_rows = lake.write_batches(
            RAW, table.name, batch_id, table.schema, kept.to_batches(), rows_per_file=rows_per_file
        )
        files, rows = files + arrived, rows + arrived_rows
    return SettledConflicts(
        files=files,
        rows=rows,
        kept=kept,
        index=index,
        set_aside=decision.set_aside,
        conflicting=decision.conflicting,
    )


def rewrite_without_keys(
    lake: Lake, table: Table, batch_id: str, files: list[str], rows: int, keys: pa.Array, *, rows_per_file: int
) -> tuple[list[str], int]:
    """A batch's raw files of ``table`` without the rows of ``keys``: rewritten if they hold any (the
    first files are then named by no manifest, so every reader ignores them), else as they were."""
    (key,) = table.key
    return _files_without_keys(lake, table.name, table.schema, key, batch_id, files, rows, keys, rows_per_file)


def index_without_keys(lake: Lake, table: Table, batch_id: str, files: list[str], keys: pa.Array) -> list[str]:
    """A batch's content index files of ``table`` (written as the read went) without the entries
    of ``keys``, rewritten as :func:`rewrite_without_keys` rewrites its rows."""
    (key,) = table.key
    folder, schema = index_folder(table), index_schema(table)
    return _files_without_keys(lake, folder, schema, key, batch_id, files, 0, keys, INDEX_ROWS_HELD)[0]


def _files_without_keys(
    lake: Lake,
    folder: str,
    schema: pa.Schema,
    key: str,
    batch_id: str,
    files: list[str],
    rows: int,
    keys: pa.Array,
    rows_per_file: int,
) -> tuple[list[str], int]:
    """``files`` (of ``folder``, holding ``rows``) without the rows under ``keys``: rewritten if
    they hold any, else as they were."""
    if not files or not len(keys):
        return files, rows
    written = lake.read_table(files, pa.schema([schema.field(key)])).column(key)
    if not pc.any(pc.is_in(written, keys)).as_py():
        return files, rows
    return lake.write_batches(
        RAW,
        folder,
        batch_id,
        schema,
        (b.filter(pc.invert(pc.is_in(b.column(key), keys))) for b in lake.iter_batches(files, schema)),
        rows_per_file=rows_per_file,
    )


def without_keys(parts: list[pa.Table], key: str, keys: frozenset[int]) -> list[pa.Table]:
    """``parts`` (index rows, rows read) without the rows of ``keys``."""
    if not keys:
        return parts
    wanted = pa.array(sorted(keys), pa.int32())
    return [part.filter(pc.invert(pc.is_in(part.column(key), wanted))) for part in parts]
