"""Changes no delta can see, found by content: children that PostgreSQL rewrote when their parent key
was deleted or changed (every run), and any row whose content is not what the lake last observed
(the deep pass, ``totes reconcile``). The arithmetic is in ``content.py``; this is its I/O. And the
one-off rewrite of a table's index when the PII policy changes how it must be hashed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from tasks.core.lake import RAW, Lake
from tasks.core.postgres import Connection
from tasks.ingest.content import (
    CONTENT_SUMMARY,
    INDEX_BATCHES_BEFORE_FOLDING,
    changed_rows,
    content_buckets,
    content_only_schema,
    fold_index,
    index_encoding,
    index_folder,
    index_schema,
    tombstones,
)
from tasks.ingest.deletes import differing_buckets
from tasks.ingest.source import (
    SourceRows,
    read_content_buckets,
    read_rows_by_key,
    read_rows_in_range,
    stream_every_row,
)
from tasks.schema import Table


def read_index(
    lake: Lake,
    table: Table,
    files: list[str] | None,
    *,
    referencing: dict[str, pl.Series] | None = None,
    content_only: bool = False,
) -> pl.DataFrame:
    """The content index as the lake holds it: the latest entry of each key not found deleted. With
    ``referencing`` (per foreign-key column, parent keys), only the keys any entry shows referencing
    one of them: what a run needs to find children, without folding the whole index. With
    ``content_only``, the keys and hashes alone (what the deep pass compares: a third of the index)."""
    (key,) = table.key
    schema = index_schema(table)
    if referencing is None:
        wanted = content_only_schema(table) if content_only else schema
        return fold_index([lake.read_table(files or [], wanted)], table, wanted)
    # Streamed twice, a record batch at a time, never held whole (a big table's index is hundreds of
    # MiB): the keys any entry shows referencing a parent, then every entry of those keys.
    # Only the row groups whose statistics allow a wanted value are read: keys and foreign keys grow
    # together, so a few parents' children sit in a few of a big index's row groups.
    hit = pl.any_horizontal(pl.col(c).is_in(keys.cast(pl.Int32).implode()) for c, keys in referencing.items())
    parents = {column: np.unique(keys.drop_nulls().to_numpy()) for column, keys in referencing.items()}
    candidates = pa.concat_arrays(
        [pa.array([], pa.int32())]
        + [
            pl.DataFrame(pa.Table.from_batches([batch])).filter(hit)[key].unique().to_arrow()
            for batch in lake.iter_batches(files or [], schema, holding=parents)
        ]
    ).unique()
    entries = [
        batch.filter(pc.is_in(batch.column(key), candidates))
        for batch in lake.iter_batches(files or [], schema, holding={key: np.sort(candidates.to_numpy())})
        if len(candidates)
    ]
    return fold_index([pa.Table.from_batches(entries, schema=schema)], table)


def write_index(
    lake: Lake,
    table: Table,
    batch_id: str,
    before: list[str] | None,
    parts: list[pa.Table],
    *,
    written: list[str] | None = None,
) -> list[str]:
    """The content index after this batch: the files before it, those this batch ``written`` as it
    read (in order), and one more with ``parts``; folded into one file once they come from many
    batches (reading them all costs more than writing one)."""
    files = [*(before or []), *(written or [])]
    files += write_index_part(lake, table, batch_id, parts)
    if len(files) == len(before or []):
        return files
    if len({_batch_of(f) for f in files}) > INDEX_BATCHES_BEFORE_FOLDING:
        folded = read_index(lake, table, files).to_arrow().cast(index_schema(table))
        files = lake.write_table(RAW, index_folder(table), batch_id, folded, column_encoding=index_encoding(table))
    return files


def write_index_part(lake: Lake, table: Table, batch_id: str, parts: list[pa.Table]) -> list[str]:
    """One file of this batch's index rows (none for no rows), written as read, not folded: folding
    a full load's index costs a few times its size in memory while four tables are read at once.
    Readers fold it (fold_index)."""
    change = [p for p in parts if p.num_rows]
    if not change:
        return []
    schema = index_schema(table)
    rows = pa.concat_tables([p.cast(schema) for p in change])
    return lake.write_table(RAW, index_folder(table), batch_id, rows, column_encoding=index_encoding(table))


def _batch_of(path: str) -> str:
    """The batch an index file was written by (its ``batch=`` folder)."""
    return next((part for part in path.split("/") if part.startswith("batch=")), path)


@dataclass(frozen=True)
class MissedChanges:
    """Rows whose content differs from what the lake last observed, read again: the conformed rows,
    those that could not be read exactly, and the content index's new entries (theirs, and a null
    hash for keys the index holds that the source has no stamped row for any more)."""

    rows: pa.Table
    rejected: pa.Table | None
    index: list[pa.Table]
    ranges_differing: int
    # A keyed index (a table with PII columns) is compared row by row, not per range.
    compared_by_row: bool = False


def read_missed_changes(
    connection: Connection,
    table: Table,
    index: pl.DataFrame,
    *,
    children: list[int],
    width: int | None,
    by_row: bool = False,
) -> MissedChanges:
    """Read ``children`` by key and, with a range ``width`` (the deep pass), every key range whose
    content summary differs from the index's; keep the rows whose hash the index does not hold
    (memory: the rows kept, not the rows read). ``by_row``: the index is keyed (a table with PII
    columns), which the source cannot summarise: the deep pass reads and compares every row."""
    (key,) = table.key
    kept: list[SourceRows] = []

    def keep_changed(reads: Iterator[SourceRows]) -> list[pa.ChunkedArray]:
        """Keep the rows whose hash differs; return the keys of every row read."""
        seen = []
        for read in reads:
            frame = pl.DataFrame(read.index)
            changed = frame.filter(changed_rows(frame, index, key))[key].to_arrow()
            if len(changed):
                kept.append(read.only(changed, key))
            seen.append(read.index.column(key))
        return seen

    keep_changed(read_rows_by_key(connection, table, children))
    stale: list[pl.Series] = []
    ranges: list[int] = []
    if width and by_row:
        seen = keep_changed(read for read, _ in stream_every_row(connection, table))
        in_source = pl.Series(key, pa.chunked_array(seen, pa.int32()), pl.Int32)
        stale.append(index[key].filter(~index[key].is_in(in_source.implode())))
    elif width:
        source = read_content_buckets(connection, table, width)
        ranges = differing_buckets(source, content_buckets(index, key, width), CONTENT_SUMMARY)
        for bucket in ranges:
            low, high = bucket * width, (bucket + 1) * width
            seen = keep_changed(read_rows_in_range(connection, table, low, high))
            held = index.filter((pl.col(key) >= low) & (pl.col(key) < high))[key]
            in_source = pl.Series(key, pa.chunked_array(seen, pa.int32()), pl.Int32)
            stale.append(held.filter(~held.is_in(in_source.implode())))
    # A key read twice (a child in a differing range) is carried once, as read last.
    rows = pl.DataFrame(pa.Table.from_batches([part.rows for part in kept], table.schema))
    rejected = [part.rejected for part in kept if part.rejected is not None and part.rejected.num_rows]
    gone = pl.concat(stale) if stale else pl.Series(key, [], pl.Int32)
    return MissedChanges(
        rows=rows.unique(subset=[key], keep="last", maintain_order=True).to_arrow().cast(table.schema),
        rejected=pa.concat_tables(rejected) if rejected else None,
        index=([tombstones(gone, table)] if gone.len() else []) + [part.index for part in kept],
        ranges_differing=len(ranges),
        compared_by_row=bool(width and by_row),
    )


@dataclass(frozen=True)
class RewrittenIndex:
    """A table's content index written afresh (``files``, holding ``keys`` keys) and the rows whose
    content is not what the lake last observed (``missed``: carried as the deep pass's are)."""

    files: list[str]
    keys: int
    missed: MissedChanges


def rewrite_index(
    connection: Connection,
    lake: Lake,
    table: Table,
    batch_id: str,
    index: pl.DataFrame,
    *,
    leave_out: frozenset[int],
) -> RewrittenIndex:
    """Write ``table``'s content index afresh, one folded file of this batch, from every row the
    source holds, hashed as its ``PiiPolicy.content_scheme`` now says; keep the rows the lake has
    not observed as they are.

    ``index`` is the index as the lake holds it: under the old scheme for the keys this batch did
    not read, under the new one for those it did. A row is unchanged if either of its hashes (the
    server's of the row as it is, the new one) is the index's: an index of the server's hashes (a
    lake written before PII tables had keyed hashes) loses no change made without a stamp. A
    keyed index of another policy or key matches neither, so every row is kept: the table is read
    again under the new policy. ``leave_out``: keys set aside as conflicting (``conflicts.py``),
    neither kept nor indexed, as a key read twice here is."""
    (key,) = table.key
    kept: list[SourceRows] = []
    parts: list[pa.Table] = []
    for read, as_is in stream_every_row(connection, table):
        new, old = pl.DataFrame(read.index), pl.DataFrame(as_is)
        changed = changed_rows(new, index, key) & changed_rows(old, index, key)
        keys = new.filter(changed)[key].to_arrow()
        if len(keys):
            kept.append(read.only(keys, key))
        parts.append(read.index)
    read_all = pl.DataFrame(pa.concat_tables(parts).cast(index_schema(table))) if parts else None
    if read_all is not None:
        twice = read_all.filter(read_all[key].is_duplicated())[key].unique().to_list()
        leave_out = leave_out | frozenset(twice)
    skip = pa.array(sorted(leave_out), pa.int32())
    rows = [pa.Table.from_batches([part.rows], table.schema) for part in kept]
    rejected = [part.rejected for part in kept if part.rejected is not None and part.rejected.num_rows]
    missed = MissedChanges(
        rows=_without(pa.concat_tables(rows) if rows else table.schema.empty_table(), key, skip),
        rejected=_without(pa.concat_tables(rejected), key, skip) if rejected else None,
        index=[],
        ranges_differing=0,
    )
    fresh = fold_index([_without(part, key, skip) for part in parts], table).to_arrow().cast(index_schema(table))
    files = lake.write_table(RAW, index_folder(table), batch_id, fresh, column_encoding=index_encoding(table))
    return RewrittenIndex(files=files, keys=fresh.num_rows, missed=missed)


def _without(rows: pa.Table, key: str, keys: pa.Array) -> pa.Table:
    if not len(keys):
        return rows
    column = rows.column(key)
    return rows.filter(pc.invert(pc.fill_null(pc.is_in(column, keys.cast(column.type)), False)))


def remove_superseded_index(lake: Lake, table: Table, keep: list[str]) -> int:
    """Delete every file of ``table``'s content index folder that ``keep`` (the newest manifest's
    index) does not name; return how many. Only the newest manifest's index is ever read."""
    return lake.remove_all_but(f"{RAW}/{index_folder(table)}", keep)
