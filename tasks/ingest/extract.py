"""One source table's extract, as the ingest tasks run it (I/O: the source and the lake).

``extract_delta`` streams a table's versions since its watermark into the raw zone and checks its
keys (deletes, rows stamped before the watermark), sets aside unstamped rows and keys held twice,
and returns the table's manifest entry. ``read_again`` adds rows that changed without a new
``last_updated`` (children of deleted parents; every differing row in the deep pass); ``carry``
writes such rows into the batch. The Prefect tasks around them are in tasks.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime
from logging import Logger, LoggerAdapter
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from tasks.core.lake import RAW, Lake
from tasks.core.manifests import FileSet, Horizon, RawTableEntry
from tasks.core.postgres import Connection, DatabaseError, database_error_reason
from tasks.core.progress import with_progress
from tasks.ingest.conflicts import (
    SettledConflicts,
    index_without_keys,
    rewrite_without_keys,
    settle_conflicts,
    without_keys,
)
from tasks.ingest.content import CONTENT_HASH, INDEX_ROWS_HELD, children_of, fold_index
from tasks.ingest.delta import (
    drop_known_versions,
    raw_quarantine_name,
    repeated_keys,
    set_aside_unstamped,
    versions_since,
)
from tasks.ingest.known_keys import DeleteCheck, check_deletes
from tasks.ingest.reconcile import MissedChanges, read_index, read_missed_changes, write_index, write_index_part
from tasks.ingest.source import SourceReadFailed, SourceRows, connect_source, read_unstamped_rows, stream_delta
from tasks.ingest.watermark import KeyScan, writes_since_keys_checked
from tasks.schema import SOURCE_TABLES, Reference, Table, deleted_marks_schema, references_of, unreadable_rows_schema
from tasks.settings import TotesSettings, redact_url

# What Prefect's get_run_logger returns: the run's logger, or an adapter of it.
RunLogger = Logger | LoggerAdapter[Any]

# The key range width of the deep pass when the delete check is off (its width is used otherwise).
DEEP_PASS_BUCKET_KEYS = 10_000
# The end of a table's read line: what its delete check read of the source's keys (see key_scan_for).
_KEY_SCAN_NOTES: dict[KeyScan, str] = {
    "none": "; keys not scanned for deletes (the server counted none)",
    "counts": "; keys counted per range for deletes, not hashed (the server counted only deletes to find)",
    "hashes": "",
}


class DeltaStream:
    """The fresh versions of one table's delta, noting on the way what the manifest needs: rows
    read, versions at or after the next watermark, unreadable rows, and every key seen. Rows of
    keys set aside before as conflicting are left out: they are read again by key (conflicts.py)."""

    def __init__(
        self,
        previous: RawTableEntry,
        next_mark: datetime,
        key: str,
        *,
        spill_index: Callable[[list[pa.Table]], list[str]],
    ):
        self.previous, self.next_mark, self.key = previous, next_mark, key
        self.read = 0
        # Versions not read before (the overlap with the last read dropped), unreadable ones too.
        self.fresh_versions = 0
        self.overlap: set[tuple[int | None, datetime, str]] = set()
        self.unfit: list[pa.Table] = []
        self.seen_keys: list[np.ndarray] = []
        # The content index rows of every row read (see content.py): the last ones held, the
        # earlier ones written to the lake (``spill_index``) a bounded part at a time, in order.
        self.index: list[pa.Table] = []
        self.index_files: list[str] = []
        self._index_rows_held = 0
        self._spill_index = spill_index
        self.settling = pa.array(sorted(previous.conflicting_keys), pa.int32())

    def fresh(self, stream: Iterator[SourceRows], table_name: str) -> Iterator[pa.RecordBatch]:
        table = SOURCE_TABLES[table_name]
        for read in stream:
            if len(self.settling):
                read = read.without(self.settling, self.key)
            batch, rejected = read.rows, read.rejected
            self._hold_index(read.index)
            self.read += batch.num_rows
            self.overlap.update(versions_since(batch, table, self.next_mark))
            if rejected is not None:
                self.read += rejected.num_rows
                self.overlap.update(versions_since(rejected, table, self.next_mark))
                self.unfit.append(drop_known_versions(rejected, table, self.previous.overlap_keys))
                self.fresh_versions += self.unfit[-1].num_rows
            # A copy: the driver's batch is one allocation, and a column kept by reference would
            # keep every column of every batch alive (the whole table, in memory, on a full load).
            self.seen_keys.append(np.array(batch.column(self.key).to_numpy(zero_copy_only=False), copy=True))
            fresh = drop_known_versions(batch, table, self.previous.overlap_keys)
            self.fresh_versions += fresh.num_rows
            yield from fresh.to_batches()

    def _hold_index(self, part: pa.Table) -> None:
        self.index.append(part)
        self._index_rows_held += part.num_rows
        if self._index_rows_held >= INDEX_ROWS_HELD:
            self.index_files += self._spill_index(self.index)
            self.index, self._index_rows_held = [], 0

    def seen(self) -> pl.Series:
        return pl.Series(self.key, np.concatenate(self.seen_keys) if self.seen_keys else [], pl.Int32)

    def rejected(self) -> pa.Table | None:
        rejected = pa.concat_tables(self.unfit) if self.unfit else None
        return rejected if rejected is not None and rejected.num_rows else None

    def repeated(self) -> frozenset[int]:
        """Keys read more than once (a source without a primary key; usually none)."""
        if not self.seen_keys:
            return frozenset()
        return frozenset(int(k) for k in repeated_keys(np.concatenate(self.seen_keys)))


def extract_delta(
    lake: Lake,
    table: Table,
    batch_id: str,
    previous: RawTableEntry | None,
    horizon: Horizon,
    next_mark: datetime,
    *,
    settings: TotesSettings,
    logger: RunLogger,
) -> RawTableEntry:
    """Stream one table's versions since its watermark into the raw zone, check its keys for deletes
    and rows stamped before the watermark, set aside unstamped rows and keys held twice; return its
    manifest entry (files, next watermark, known keys, deletes found, unreadable rows)."""
    table_name = table.name
    state = previous or RawTableEntry()
    (key,) = table.key
    delta = DeltaStream(state, next_mark, key, spill_index=lambda parts: write_index_part(lake, table, batch_id, parts))
    settled: SettledConflicts | None = None
    settling: frozenset[int] = frozenset()
    source_url = settings.require_source_url()
    with connect_source(source_url) as connection:
        try:
            files, rows = lake.write_batches(
                RAW,
                table_name,
                batch_id,
                table.schema,
                with_progress(
                    delta.fresh(stream_delta(connection, table, state.watermark), table_name), f"{table_name}: read"
                ),
                rows_per_file=settings.parquet_rows_per_file,
            )
            deletes = check_deletes(
                connection,
                lake,
                table,
                batch_id=batch_id,
                previous=previous,
                seen=delta.seen(),
                fresh_versions=delta.fresh_versions,
                checked_at=horizon.clock_at,
                width=settings.delete_check_bucket_keys,
                counted=writes_since_keys_checked(
                    previous, horizon, table_name, recheck_seconds=settings.unchanged_table_recheck_seconds
                ),
            )
            unstamped, unstamped_keys = set_aside_unstamped(
                read_unstamped_rows(connection, table), table, state.unstamped_keys
            )
            # A key the source holds twice is settled when this run reads it (a copy made long ago, read
            # by no run, stays as the lake has it).
            conflicting = delta.repeated() | state.conflicting_keys | _read_now(delta, deletes, key)
            if deletes.arrived is not None:
                conflicting |= frozenset(int(k) for k in repeated_keys(deletes.arrived.column(key).to_numpy()))
            if conflicting:
                settling = conflicting
                settled = settle_conflicts(
                    connection,
                    lake,
                    table,
                    batch_id=batch_id,
                    files=files,
                    rows=rows,
                    keys=conflicting,
                    reported=state.conflicting_keys,
                    known=state.overlap_keys,
                    rows_per_file=settings.parquet_rows_per_file,
                )
                files, rows = settled.files, settled.rows
        except DatabaseError as error:
            msg = (
                f"reading source table {table_name} from the source database {redact_url(source_url)}: "
                f"{database_error_reason(error)}"
            )
            raise SourceReadFailed(msg) from error
    if deletes.deleted:
        logger.info("%s: %d row(s) deleted in the source since the last check", table_name, deletes.deleted.rows)
    if settled is not None:
        _report_conflicts(logger, table_name, key, settled, before=state.conflicting_keys)
        delta.overlap.update(versions_since(settled.kept, table, next_mark))
    arrived = without_keys([deletes.arrived], key, settling)[0] if deletes.arrived is not None else None
    if arrived is not None and arrived.num_rows:
        # Rows no delta could read (stamped before the watermark): versions of this batch too.
        files += lake.write_table(RAW, table_name, batch_id, arrived)
        rows += arrived.num_rows
        delta.overlap.update(versions_since(arrived, table, next_mark))
        logger.warning(
            "%s: %d row(s) the source holds and the lake did not, stamped before the watermark (restored, "
            "imported or inserted again): read by key (%s %s)",
            table_name,
            arrived.num_rows,
            key,
            ", ".join(str(k) for k in arrived.column(key).to_pylist()[:5]),
        )
    if unstamped is not None:
        logger.warning(
            "%s: %d row(s) have no last_updated and are quarantined until the source stamps them (%s %s)",
            table_name,
            unstamped.num_rows,
            key,
            ", ".join(str(k) for k in unstamped.column(key).to_pylist()[:5]),
        )
    set_aside = settled.set_aside if settled else None
    rejected = _unreadable(
        [t for t in (delta.rejected(), unstamped, set_aside, deletes.arrived_unfit) if t is not None], table_name
    )
    unreadable = None
    if rejected is not None:
        # Kept in the raw zone beside the batch: the transform reports them with the other rejects.
        unreadable = FileSet(
            lake.write_table(RAW, raw_quarantine_name(table_name), batch_id, rejected), rejected.num_rows
        )
        logger.warning(
            "%s: %d row(s) cannot be read exactly and are quarantined (first: %s)",
            table_name,
            rejected.num_rows,
            rejected.column("_reason")[0],
        )
    logger.info(
        "%s: read %d row(s) since %s, %d new version(s) in %d file(s); next watermark %s%s",
        table_name,
        delta.read,
        state.watermark,
        rows,
        len(files),
        next_mark,
        _KEY_SCAN_NOTES[deletes.scan],
    )
    entry = RawTableEntry(
        data=FileSet(files, rows),
        watermark=next_mark,
        overlap_keys=frozenset(delta.overlap),
        keys=deletes.keys,
        key_summary=deletes.key_summary,
        key_width=deletes.key_width,
        deleted=deletes.deleted,
        rejected=unreadable,
        unstamped_keys=unstamped_keys,
        content=state.content,
        content_scheme=state.content_scheme,
        conflicting_keys=settled.conflicting if settled else frozenset(),
        activity=horizon.activity.get(table_name),
        read_at=horizon.clock_at,
        # Only a scan of every key's hash checks the counters themselves (see key_scan_for).
        keys_checked_at=horizon.clock_at if deletes.scan == "hashes" else state.keys_checked_at,
    )
    if not entry.has_changes(previous):
        return entry
    # Kept only when the batch is recorded: the rows a run reads and drops as known are in the index.
    # The keys settled here are indexed as they were settled (none while they stay conflicting).
    index = [*without_keys(delta.index, key, settling), *_without_arrivals(deletes.index, key, settling)]
    if settled is not None and settled.index is not None:
        index.append(settled.index)
    written = index_without_keys(lake, table, batch_id, delta.index_files, pa.array(sorted(settling), pa.int32()))
    content = write_index(lake, table, batch_id, state.content, index, written=written)
    return replace(entry, content=content)


def _read_now(delta: DeltaStream, deletes: DeleteCheck, key: str) -> frozenset[int]:
    """The keys the delete check found held twice that this run read (by delta or by key): tested
    against the duplicates, never by collecting every key read (a Python set of a full load's keys
    is hundreds of MiB)."""
    if not deletes.duplicated:
        return frozenset()
    wanted = pa.array(sorted(deletes.duplicated), pa.int32())
    read = [pa.array(delta.seen().to_numpy())]
    if deletes.arrived is not None:
        read.append(deletes.arrived.column(key).combine_chunks().cast(pa.int32()))
    return frozenset(
        int(k) for part in read for k in pc.filter(part, pc.is_in(part, wanted)).to_pylist() if k is not None
    )


def _without_arrivals(parts: list[pa.Table], key: str, keys: frozenset[int]) -> list[pa.Table]:
    """The delete check's index rows without the rows that arrived under ``keys`` (their
    tombstones stay: a key found deleted is deleted whatever it held)."""
    if not keys:
        return parts
    wanted = pa.array(sorted(keys), pa.int32())
    return [
        part.filter(pc.invert(pc.and_(pc.is_in(part.column(key), wanted), pc.is_valid(part.column(CONTENT_HASH)))))
        for part in parts
    ]


def _report_conflicts(
    logger: RunLogger, table_name: str, key: str, settled: SettledConflicts, *, before: frozenset[int]
) -> None:
    newly = sorted(settled.conflicting - before)
    if newly:
        logger.warning(
            "%s: %d key(s) hold several different rows in the source (it enforces no primary key): set aside, "
            "not named again, until one row remains under the key (%s %s)",
            table_name,
            len(newly),
            key,
            ", ".join(str(k) for k in newly[:5]),
        )
    if resolved := sorted(before - settled.conflicting):
        logger.info(
            "%s: %d key(s) set aside for holding several rows hold one now: it arrives (%s %s)",
            table_name,
            len(resolved),
            key,
            ", ".join(str(k) for k in resolved[:5]),
        )


def read_again(
    lake: Lake,
    table: Table,
    batch_id: str,
    entry: RawTableEntry,
    parents_deleted: dict[str, FileSet],
    *,
    deep: bool,
    settings: TotesSettings,
    logger: RunLogger,
) -> RawTableEntry:
    """Read again the rows of one table that changed without a new ``last_updated`` and add them to
    its entry in this batch: the children the lake last saw referencing a parent key found deleted
    (``parents_deleted``: per foreign-key column, the parent's delete marks) and, with ``deep``, every
    row whose content differs from what the lake last observed."""
    table_name = table.name
    (key,) = table.key
    gone = {
        column: pl.Series(
            lake.read_table(marks.files, deleted_marks_schema(_reference(table_name, column).parent_key)).column(0)
        )
        for column, marks in parents_deleted.items()
    }
    # The children from the entries that reference a deleted parent (streamed); the deep pass's
    # comparison from the keys and hashes alone: folding a whole index with its foreign keys took
    # 3.4 GiB at scale 1000, two big tables at once.
    referencing = read_index(lake, table, entry.content, referencing=gone) if gone else fold_index([], table)
    children = children_of(referencing, key, gone)
    index = read_index(lake, table, entry.content, content_only=True) if deep else referencing
    width = (settings.delete_check_bucket_keys or DEEP_PASS_BUCKET_KEYS) if deep else None
    source_url = settings.require_source_url()
    with connect_source(source_url) as connection:
        try:
            missed = read_missed_changes(
                connection, table, index, children=children, width=width, by_row=entry.content_scheme != "source"
            )
            missed, entry = _settle_missed_conflicts(
                connection,
                lake,
                table,
                batch_id,
                entry,
                missed,
                rows_per_file=settings.parquet_rows_per_file,
                logger=logger,
            )
        except DatabaseError as error:
            msg = (
                f"reading source table {table_name} again from the source database {redact_url(source_url)}: "
                f"{database_error_reason(error)}"
            )
            raise SourceReadFailed(msg) from error
    changed = missed.rows.num_rows + (missed.rejected.num_rows if missed.rejected is not None else 0)
    if deep and missed.compared_by_row:
        logger.info(
            "%s: deep pass compared every row's content one by one (its content index is keyed: PII columns), %d "
            "row(s) changed without a new last_updated",
            table_name,
            changed,
        )
    elif deep:
        logger.info(
            "%s: deep pass compared every row's content: %d key range(s) differed, %d row(s) changed without a new "
            "last_updated",
            table_name,
            missed.ranges_differing,
            changed,
        )
    if children:
        logger.info(
            "%s: %d row(s) referenced a parent key deleted or changed in the source; read again, %d of them changed",
            table_name,
            len(children),
            changed,
        )
    if not changed and not missed.index:
        return entry
    return carry(lake, table, batch_id, entry, missed, rows_per_file=settings.parquet_rows_per_file)


def _settle_missed_conflicts(
    connection: Connection,
    lake: Lake,
    table: Table,
    batch_id: str,
    entry: RawTableEntry,
    missed: MissedChanges,
    *,
    rows_per_file: int,
    logger: RunLogger,
) -> tuple[MissedChanges, RawTableEntry]:
    """Rows read again leave out keys set aside as conflicting (read by key every run, see
    conflicts.py); a key they meet more than once is settled there, not carried."""
    (key,) = table.key
    read = [part.filter(pc.is_valid(part.column(CONTENT_HASH))) for part in missed.index]
    twice = (
        frozenset(
            int(k)
            for k in repeated_keys(
                pa.concat_arrays(
                    [part.column(key).combine_chunks() for part in read] or [pa.array([], pa.int32())]
                ).to_numpy(zero_copy_only=False)
            )
        )
        - entry.conflicting_keys
    )
    leave_out = entry.conflicting_keys | twice
    if not leave_out:
        return missed, entry
    missed = replace(
        missed,
        rows=without_keys([missed.rows], key, leave_out)[0],
        rejected=without_keys([missed.rejected], key, leave_out)[0] if missed.rejected is not None else None,
        index=_without_arrivals(missed.index, key, leave_out),
    )
    if not twice:
        return missed, entry
    settled = settle_conflicts(
        connection,
        lake,
        table,
        batch_id=batch_id,
        files=entry.data.files,
        rows=entry.data.rows,
        keys=twice,
        reported=entry.conflicting_keys,
        known=entry.overlap_keys,
        rows_per_file=rows_per_file,
    )
    _report_conflicts(logger, table.name, key, settled, before=entry.conflicting_keys)
    rejected = entry.rejected
    unfit = _unreadable([settled.set_aside], table.name) if settled.set_aside is not None else None
    if unfit is not None:
        written = lake.write_table(RAW, raw_quarantine_name(table.name), batch_id, unfit)
        rejected = (rejected or FileSet()) + FileSet(written, unfit.num_rows)
    return missed, replace(
        entry,
        data=FileSet(settled.files, settled.rows),
        overlap_keys=entry.overlap_keys | frozenset(versions_since(settled.kept, table, entry.watermark)),
        rejected=rejected,
        conflicting_keys=entry.conflicting_keys | settled.conflicting,
        content=write_index(lake, table, batch_id, entry.content, [settled.index] if settled.index else []),
    )


def _reference(table_name: str, column: str) -> Reference:
    (reference,) = [r for r in references_of(table_name) if r.column == column]
    return reference


def carry(
    lake: Lake, table: Table, batch_id: str, entry: RawTableEntry, missed: MissedChanges, *, rows_per_file: int
) -> RawTableEntry:
    """``entry`` with the rows read again added as versions of this batch. They are the newer
    observation: this batch's delta rows of the same keys (read moments before) are left out, by
    rewriting its files, so that no batch holds two contents of one row."""
    (key,) = table.key
    changed_keys = pa.concat_arrays(
        [missed.rows.column(key).combine_chunks()]
        + ([missed.rejected.column(key).combine_chunks().cast(pa.int32())] if missed.rejected is not None else [])
    )
    files, rows = rewrite_without_keys(
        lake, table, batch_id, list(entry.data.files), entry.data.rows, changed_keys, rows_per_file=rows_per_file
    )
    if missed.rows.num_rows:
        carried, carried_rows = lake.write_batches(
            RAW, table.name, batch_id, table.schema, missed.rows.to_batches(), rows_per_file=rows_per_file
        )
        files, rows = files + carried, rows + carried_rows
    rejected = entry.rejected
    if missed.rejected is not None:
        unfit = _unreadable([missed.rejected], table.name)
        if unfit is not None:
            written_unfit = lake.write_table(RAW, raw_quarantine_name(table.name), batch_id, unfit)
            before = rejected or FileSet()
            rejected = FileSet(before.files + written_unfit, before.rows + unfit.num_rows)
    return replace(
        entry,
        data=FileSet(files, rows),
        overlap_keys=entry.overlap_keys | frozenset(versions_since(missed.rows, table, entry.watermark)),
        rejected=rejected,
        content=write_index(lake, table, batch_id, entry.content, missed.index),
    )


def _unreadable(tables: list[pa.Table], table_name: str) -> pa.Table | None:
    """The rows set aside at extract, in the raw zone's schema of unreadable rows (None if none)."""
    schema = unreadable_rows_schema(SOURCE_TABLES[table_name])
    return pa.concat_tables([t.select(schema.names).cast(schema) for t in tables]) if tables else None
