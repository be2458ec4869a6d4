"""Changes no delta can see, found by content: children that PostgreSQL rewrote when their parent key
was deleted or changed (every run), and any row whose content is not what the lake last observed
(the deep pass, ``totes reconcile``). The arithmetic is in ``content.py``; this is its I/O.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from tasks.core.lake import RAW, Lake
from tasks.core.postgres import Connection
from tasks.ingest.content import (
    CONTENT_SUMMARY,
    INDEX_FILES_BEFORE_FOLDING,
    changed_rows,
    content_buckets,
    fold_index,
    index_schema,
    tombstones,
)
from tasks.ingest.deletes import differing_buckets
from tasks.ingest.source import (
    SourceRows,
    read_content_buckets,
    read_rows_by_key,
    read_rows_in_range,
)
from tasks.schema import Table


def read_index(
    lake: Lake, table: Table, files: list[str] | None, *, referencing: dict[str, pl.Series] | None = None
) -> pl.DataFrame:
    """The content index as the lake holds it: the latest entry of each key not found deleted. With
    ``referencing`` (per foreign-key column, parent keys), only the keys any entry shows referencing
    one of them: what a run needs to find children, without folding the whole index."""
    (key,) = table.key
    whole = lake.read_table(files or [], index_schema(table))
    if referencing is not None:
        frame = pl.DataFrame(whole)
        hit = pl.any_horizontal(pl.col(c).is_in(keys.cast(pl.Int32).implode()) for c, keys in referencing.items())
        candidates = frame.filter(hit)[key].unique().to_arrow()
        whole = whole.filter(pc.is_in(whole.column(key), candidates))
    return fold_index([whole], table)


def write_index(lake: Lake, table: Table, batch_id: str, before: list[str] | None, parts: list[pa.Table]) -> list[str]:
    """The content index after this batch: the files before it and one more with ``parts``, folded
    into one file once they are many (reading them all costs more than writing one)."""
    schema = index_schema(table)
    files = list(before or [])
    change = [p for p in parts if p.num_rows]
    if not change:
        return files
    # Written as read, not folded: folding a full load's index costs a few times its size in memory
    # while four tables are read at once. Readers fold it (fold_index).
    rows = pa.concat_tables([p.cast(schema) for p in change])
    files += lake.write_table(RAW, f"_content_{table.name}", batch_id, rows)
    if len(files) > INDEX_FILES_BEFORE_FOLDING:
        folded = read_index(lake, table, files).to_arrow().cast(schema)
        files = lake.write_table(RAW, f"_content_{table.name}", batch_id, folded)
    return files


@dataclass(frozen=True)
class MissedChanges:
    """Rows whose content differs from what the lake last observed, read again: the conformed rows,
    those that could not be read exactly, and the content index's new entries (theirs, and a null
    hash for keys the index holds that the source has no stamped row for any more)."""

    rows: pa.Table
    rejected: pa.Table | None
    index: list[pa.Table]
    ranges_differing: int


def read_missed_changes(
    connection: Connection, table: Table, index: pl.DataFrame, *, children: list[int], width: int | None
) -> MissedChanges:
    """Read ``children`` by key and, with a range ``width`` (the deep pass), every key range whose
    content summary differs from the index's; keep the rows whose hash the index does not hold
    (memory: the rows kept, not the rows read)."""
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
    if width:
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
    )
