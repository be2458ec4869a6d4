"""The delete check's I/O: the known key set kept in the raw zone, compared with the source's.

The pure arithmetic (per-range summaries, which ranges differ) is in ``deletes.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import polars as pl
import pyarrow as pa

from tasks.core.lake import RAW, Lake
from tasks.core.manifests import FileSet, RawTableEntry
from tasks.core.postgres import Connection
from tasks.ingest.content import tombstones
from tasks.ingest.deletes import (
    KEY_COUNTS,
    absent_from_sorted,
    bucket_schema,
    combine_buckets,
    differing_buckets,
    key_buckets,
    keys_in_range,
)
from tasks.ingest.source import read_rows_in_range, read_source_buckets, read_source_keys
from tasks.ingest.watermark import CountedWrites, KeyScan, key_scan_for
from tasks.schema import TIMESTAMP, Table, deleted_marks_schema


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
    def before(cls, lake: Lake, table: Table, previous: RawTableEntry | None, width: int) -> KnownKeys:
        """The state the previous batch left. A lake written before totes detected deletes (or
        with another range width) has no summary: it is rebuilt once, from every raw batch's
        files if there are no key files either."""
        if previous and previous.key_summary is not None and previous.key_width == width:
            summary = pl.DataFrame(lake.read_table(previous.key_summary, bucket_schema()))
            return cls(lake, table, previous.keys, summary)
        files: list[str]
        if previous is None:
            files = []
        elif previous.keys is not None:
            files = previous.keys
        else:
            files = [f for b in lake.list_batches(RAW) for f in lake.read_raw_manifest(b).files(table.name)]
        keys = _read_keys(lake, table, files).unique().sort()
        return cls(lake, table, None, key_buckets(keys, width), keys)

    def keys(self) -> pl.Series:
        """The known keys, ascending (as written; sorted here if a file was not)."""
        if self._keys is None:
            keys = _read_keys(self.lake, self.table, self.files or [])
            self._keys = keys.set_sorted() if keys.is_sorted() else keys.sort()
        return self._keys


def _read_keys(lake: Lake, table: Table, files: list[str]) -> pl.Series:
    """The key column of ``table`` in these lake files."""
    (key,) = table.key
    return pl.DataFrame(lake.read_table(files, pa.schema([table.schema.field(key)])))[key]


@dataclass(frozen=True)
class DeleteCheck:
    """The known key set after a check (its files, summary files and range width), and the keys
    found deleted (None if none). All None when delete detection is off."""

    keys: list[str] | None = None
    key_summary: list[str] | None = None
    key_width: int | None = None
    deleted: FileSet | None = None
    # Rows of keys the source holds and the lake did not know, read by range (None if none), and
    # those of them that could not be read exactly.
    arrived: pa.Table | None = None
    arrived_unfit: pa.Table | None = None
    # Content index rows: the keys found deleted (null hash), and the rows that arrived.
    index: list[pa.Table] = field(default_factory=list)
    # Keys the source holds more than once in the ranges read (a source without a primary key).
    duplicated: frozenset[int] = frozenset()
    # What was read of the source's key ranges (watermark.key_scan_for): "none" when its counters
    # vouched for the key set, "counts" when they left only deletes to find, "hashes" otherwise.
    scan: KeyScan = "hashes"


def check_deletes(
    connection: Connection,
    lake: Lake,
    table: Table,
    *,
    batch_id: str,
    previous: RawTableEntry | None,
    seen: pl.Series,
    checked_at: datetime,
    width: int,
    counted: CountedWrites | None = None,
    fresh_versions: int = 0,
) -> DeleteCheck:
    """Find the keys hard-deleted in the source since the last check and keep the known key set up
    to date (the deleted keys are written to the raw zone with ``_deleted_at``).

    The source's per-range summary is compared with the known one; only the ranges that differ
    are read key by key. A known key the source no longer holds is deleted; a source key totes
    does not know yet is a new row, which a delta reads (ignored here). Width 0 turns detection
    off: no key set is kept (turning it on later rebuilds it once).

    ``counted``: the writes the server counted since the table's last read, when they can stand in
    for a scan (``writes_since_keys_checked``); ``fresh_versions``: the versions the delta read that no run had read. From
    them, :func:`tasks.ingest.watermark.key_scan_for` decides what is read of the source: nothing
    when every write is accounted for (the scan reads every key of the table: most of an
    incremental run), each range's count and sum of keys when only deletes are left to find, and
    each range's hash of every key otherwise.
    """
    if width == 0:
        return DeleteCheck()
    (key,) = table.key
    known = KnownKeys.before(lake, table, previous, width)
    new = absent_from_sorted(seen.unique().sort(), known.keys())
    summary = combine_buckets(known.summary, key_buckets(new, width), sign=1)
    gone = []
    index: list[pa.Table] = []
    arrived: list[pa.Table] = []
    unfit: list[pa.Table] = []
    duplicated: set[int] = set()
    scan = key_scan_for(counted, new_keys=new.len(), fresh_versions=fresh_versions)
    if scan == "none":
        ranges = []
    elif scan == "counts":
        ranges = differing_buckets(read_source_buckets(connection, table, width, hashed=False), summary, KEY_COUNTS)
    else:
        ranges = differing_buckets(read_source_buckets(connection, table, width), summary)
    for bucket in ranges:
        low, high = bucket * width, (bucket + 1) * width
        # Both sorted: sliced per range, never concatenated whole (tens of millions of keys at
        # scale 1000, copied for every range that differed).
        candidates = pl.concat([keys_in_range(known.keys(), low, high), keys_in_range(new, low, high)]).cast(pl.Int64)
        # A key beyond integer (a bigint column) is set aside when read, never known: not looked for.
        in_source = read_source_keys(connection, table, low, high)
        in_source = in_source.filter((in_source >= -(2**31)) & (in_source <= 2**31 - 1))
        duplicated.update(int(k) for k in in_source.filter(in_source.is_duplicated()).unique())
        gone.append(candidates.filter(~candidates.is_in(in_source.implode())))
        unknown = in_source.filter(~in_source.is_in(candidates.implode())).cast(pl.Int32).to_arrow()
        if len(unknown):
            for read in read_rows_in_range(connection, table, low, high):
                came_in = read.only(unknown, key)
                arrived.append(pa.Table.from_batches([came_in.rows]))
                index.append(came_in.index)
                if came_in.rejected is not None:
                    unfit.append(came_in.rejected)
    arrived_rows = pa.concat_tables(arrived) if arrived else None
    unfit_rows = pa.concat_tables(unfit) if unfit else None
    # Unfit rows' keys count as known too, as the delta's do: they are reported once, not every run.
    came_tables = [t for t in (arrived_rows, unfit_rows) if t is not None and t.num_rows]
    if came_tables:
        came = pl.Series(key, np.concatenate([t.column(key).to_numpy() for t in came_tables]), pl.Int32)
        summary = combine_buckets(summary, key_buckets(came, width), sign=1)
        new = pl.concat([new, came])
    deleted = pl.concat(gone).cast(pl.Int32).sort() if gone else pl.Series(key, [], pl.Int32)
    key_files = known.files
    summary_files = previous.key_summary if previous else None
    deleted_files = None
    if deleted.len():
        index.insert(0, tombstones(deleted, table))
        marks = pa.table(
            {key: deleted.to_arrow(), "_deleted_at": pa.array([checked_at] * deleted.len(), TIMESTAMP)},
            schema=deleted_marks_schema(key),
        )
        deleted_files = FileSet(lake.write_table(RAW, f"_deleted_{table.name}", batch_id, marks), deleted.len())
        summary = combine_buckets(summary, key_buckets(deleted, width), sign=-1)
    if new.len() or deleted.len() or known.files is None:
        keys = pl.concat([known.keys(), new])
        keys = keys.filter(~keys.is_in(deleted.implode())).sort()
        key_files = lake.write_table(
            RAW,
            f"_keys_{table.name}",
            batch_id,
            pa.table({key: keys.to_arrow()}),
            column_encoding={key: "DELTA_BINARY_PACKED"},
        )
        summary_table = summary.to_arrow().cast(bucket_schema())
        summary_files = lake.write_table(RAW, f"_key_summary_{table.name}", batch_id, summary_table)
    return DeleteCheck(
        keys=key_files,
        key_summary=summary_files,
        key_width=width,
        deleted=deleted_files,
        arrived=arrived_rows if arrived_rows is not None and arrived_rows.num_rows else None,
        arrived_unfit=unfit_rows if unfit_rows is not None and unfit_rows.num_rows else None,
        index=index,
        duplicated=frozenset(duplicated),
        scan=scan,
    )
