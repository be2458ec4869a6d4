"""Changes no delta can see, found by content: children that PostgreSQL rewrote when their parent key
was deleted or changed (every run), and any row whose content is not what the lake last observed
(the deep pass, ``totes reconcile``). The arithmetic is in ``content.py``; this is its I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
import pyarrow as pa

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


def read_index(lake: Lake, table: Table, files: list[str] | None) -> pl.DataFrame:
    """The content index as the lake holds it: the latest entry of each key not found deleted."""
    return fold_index([lake.read_table(files or [], index_schema(table))], table)


def write_index(lake: Lake, table: Table, batch_id: str, before: list[str] | None, parts: list[pa.Table]) -> list[str]:
    """The content index after this batch: the files before it and one more with ``parts``, folded
    into one file once they are many (reading them all costs more than writing one)."""
    files = list(before or [])
    change = [p for p in parts if p.num_rows]
    if not change:
        return files
    files += lake.write_table(
        RAW, f"_content_{table.name}", batch_id, pa.concat_tables(change).cast(index_schema(table))
    )
    if len(files) > INDEX_FILES_BEFORE_FOLDING:
        folded = read_index(lake, table, files).to_arrow().cast(index_schema(table))
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
    children_read: int
    ranges_differing: int


def read_missed_changes(
    connection: Connection, table: Table, index: pl.DataFrame, *, children: list[int], width: int | None
) -> MissedChanges:
    """Read ``children`` by key and, with a range ``width`` (the deep pass), every key range whose
    content summary differs from the index's; keep the rows whose hash the index does not hold."""
    (key,) = table.key
    reads: list[SourceRows] = list(read_rows_by_key(connection, table, children))
    stale: list[pl.Series] = []
    ranges = []
    if width:
        source = read_content_buckets(connection, table, width)
        ranges = differing_buckets(source, content_buckets(index, key, width), CONTENT_SUMMARY)
        for bucket in ranges:
            low, high = bucket * width, (bucket + 1) * width
            in_range = list(read_rows_in_range(connection, table, low, high))
            reads += in_range
            seen = pl.concat([pl.Series(key, r.index.column(key), pl.Int32) for r in in_range]) if in_range else None
            held = index.filter((pl.col(key) >= low) & (pl.col(key) < high))[key]
            stale.append(held if seen is None else held.filter(~held.is_in(seen.implode())))
    read_index_rows = pa.concat_tables([r.index for r in reads]) if reads else index_schema(table).empty_table()
    read_frame = pl.DataFrame(read_index_rows).unique(subset=[key], keep="last", maintain_order=True)
    changed = read_frame.filter(changed_rows(read_frame, index, key))[key].to_arrow()
    kept = [r.only(changed, key) for r in reads]
    # A key read twice (a child in a differing range) is carried once.
    rows = pl.DataFrame(pa.Table.from_batches([r.rows for r in kept], table.schema))
    rows_table = rows.unique(subset=[key], keep="last", maintain_order=True).to_arrow().cast(table.schema)
    rejected = [r.rejected for r in kept if r.rejected is not None and r.rejected.num_rows]
    index_change = [tombstones(pl.concat(stale), table)] if stale and sum(s.len() for s in stale) else []
    index_change += [pl.DataFrame(read_index_rows).filter(pl.col(key).is_in(pl.Series(changed).implode())).to_arrow()]
    return MissedChanges(
        rows=rows_table,
        rejected=pa.concat_tables(rejected) if rejected else None,
        index=index_change,
        children_read=len(children),
        ranges_differing=len(ranges),
    )
