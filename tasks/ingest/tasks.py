"""The ingest stage's Prefect tasks: ToteSys -> raw zone of the lake, one batch per run.

A run plans its batch from the newest raw manifest, reads the source's horizon and checks its schema,
streams each table's changes into Parquet (and checks for hard deletes), then records the manifest
last: from that moment the batch exists and its watermarks count.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.core.asset_keys import database_key
from tasks.core.assets import announce_schema_drift
from tasks.core.lake import RAW, Lake, batch_sequence, new_batch_id
from tasks.core.locks import CycleLockLost, verify_cycle_locks
from tasks.core.manifests import FileSet, Horizon, RawManifest, RawTableEntry
from tasks.core.postgres import Connection, DatabaseError, connect, database_error_reason
from tasks.core.progress import with_progress
from tasks.core.reports import RunSummary
from tasks.core.retries import RETRY_POLICY
from tasks.ingest.conflicts import SettledConflicts, settle_conflicts, without_keys
from tasks.ingest.content import CONTENT_HASH, children_of
from tasks.ingest.delta import (
    drop_known_versions,
    raw_quarantine_name,
    repeated_keys,
    set_aside_unstamped,
    versions_since,
)
from tasks.ingest.drift import SchemaDrift, SourceInLocalTime, local_time_stamps, schema_drift
from tasks.ingest.known_keys import check_deletes
from tasks.ingest.reconcile import (
    MissedChanges,
    read_index,
    read_missed_changes,
    remove_superseded_index,
    rewrite_index,
    write_index,
)
from tasks.ingest.replica import read_horizon_of_source
from tasks.ingest.source import (
    SourceReadFailed,
    SourceRows,
    check_source_grants,
    connect_source,
    read_default_time_zone,
    read_source_activity,
    read_source_columns,
    read_unstamped_rows,
    source_pii_policy,
    stream_delta,
)
from tasks.ingest.watermark import complete_before, is_unchanged, next_watermark
from tasks.schema import SOURCE_TABLES, Reference, Table, deleted_marks_schema, references_of, unreadable_rows_schema
from tasks.settings import load_settings, redact_url


@dataclass(frozen=True)
class IngestPlan:
    """The batch an ingest run will write, and each table's entry in the newest batch before it."""

    batch_id: str
    previous: dict[str, RawTableEntry] = field(default_factory=dict)
    previous_batch_id: str | None = None


@dataclass(frozen=True)
class SchemaCheck:
    """Schema-drift warnings of this run, and those no earlier run reported (a new column warns every
    run, but alerts once)."""

    warnings: list[str]
    new_warnings: list[str]


@task(name="plan-ingest-batch", cache_policy=NO_CACHE, **RETRY_POLICY)
def plan_ingest_batch() -> IngestPlan:
    """Read the newest ingest manifest: its watermarks are where this run's reads start."""
    lake = Lake.from_url(load_settings().lake_url)
    lake.require_bucket()
    newest_id = lake.newest_batch(RAW, repair=True)
    if newest_id is None:
        return IngestPlan(batch_id=new_batch_id(1))
    newest = lake.read_raw_manifest(newest_id)
    return IngestPlan(
        batch_id=new_batch_id(batch_sequence(newest.batch_id) + 1),
        previous=newest.tables,
        previous_batch_id=newest.batch_id,
    )


@task(name="read-previous-entry", cache_policy=NO_CACHE, **RETRY_POLICY)
def read_previous_entry(previous_batch_id: str | None, table_name: str) -> RawTableEntry | None:
    """A table's entry in the batch before the one being extracted (None before the first batch)."""
    if previous_batch_id is None:
        return None
    return Lake.from_url(load_settings().lake_url).read_raw_manifest(previous_batch_id).tables.get(table_name)


@task(name="hand-over-extract", task_run_name="hand-over-{table_name}", cache_policy=NO_CACHE, **RETRY_POLICY)
def hand_over_extract(batch_id: str, table_name: str, entry: RawTableEntry) -> None:
    """Leave a fan-out child's manifest entry where the cycle that records the batch reads it."""
    Lake.from_url(load_settings().lake_url).write_extracted_table(batch_id, table_name, entry)


@task(name="read-handed-over-extracts", cache_policy=NO_CACHE, **RETRY_POLICY)
def read_handed_over_extracts(batch_id: str, tables: list[str]) -> dict[str, RawTableEntry]:
    """The entries of ``tables`` for the batch, as their fan-out child runs left them."""
    lake = Lake.from_url(load_settings().lake_url)
    return {name: lake.read_extracted_table(batch_id, name) for name in tables}


@task(name="read-source-horizon", cache_policy=NO_CACHE, **RETRY_POLICY)
def read_horizon(*, trust_counters: bool = True) -> Horizon:
    """Read the source's in-flight horizon, before any data is read: on its primary when the source is a
    standby, a logical-replication subscriber or a declared copy (``replica.py``). With
    ``trust_counters``, also what the server counts of each table's writes, so that tables nobody
    wrote since their last read are not read (off for reconciliation, which reads every table)."""
    settings = load_settings()
    logger = get_run_logger()
    primary_url = settings.source_primary_url.get_secret_value() if settings.source_primary_url else None
    with connect(settings.require_source_url(), purpose="source database") as connection:
        found = read_horizon_of_source(
            connection,
            primary_url=primary_url,
            is_copy=settings.source_is_copy,
            wait_seconds=settings.replica_wait_seconds,
        )
        # After the horizon: a write counted after it is read by this run or, at the latest, the next.
        activity = read_source_activity(connection)
    trusted = trust_counters and settings.unchanged_table_recheck_seconds > 0
    horizon = replace(
        found.reading.horizon,
        activity=activity.signatures if trusted else {},
        table_rows=activity.estimated_rows,
    )
    if found.has_hidden_sessions:
        logger.warning(
            "The source role cannot see other sessions in pg_stat_activity; watermarks lag %.0f s "
            "behind the clock instead of tracking open transactions (grant it pg_read_all_stats).",
            settings.fallback_lag_seconds,
        )
    for note in found.notes:
        logger.info(note)
    logger.info(
        "Source horizon: clock %s, oldest open transaction %s",
        horizon.clock_at,
        horizon.oldest_open_transaction_at or "none",
    )
    return horizon


@task(name="check-source-schema", cache_policy=NO_CACHE, **RETRY_POLICY)
def check_source_schema() -> SchemaCheck:
    """Compare the source's tables with the model before reading: fail on a missing table, column or
    incompatible type (nothing is read, no watermark moves); warn about new columns.

    The lake keeps the last set of warnings in ``raw/_schema_drift.json``, so that a new column
    alerts once, not every run.

    It also refuses a source whose writers would store local wall times that totes reads as UTC
    (``timestamp`` audit columns, a default TimeZone that is not UTC: see ``local_time_stamps``),
    unless ``TOTES_SOURCE_STAMPS_ARE_UTC``. When the source copies a primary, its writers are the
    primary's: that database's TimeZone counts too."""
    settings = load_settings()
    with connect(settings.require_source_url(), purpose="source database") as connection:
        check_source_grants(connection)
        found = read_source_columns(connection)
        time_zones = [("source database", read_default_time_zone(connection))]
    if settings.source_primary_url is not None and not settings.source_stamps_are_utc:
        with connect(settings.source_primary_url.get_secret_value(), purpose="source's primary database") as primary:
            time_zones.append(("source's primary database", read_default_time_zone(primary)))
    errors, warnings = schema_drift(found, frozen=settings.frozen_tables())
    logger = get_run_logger()
    for warning in warnings:
        logger.warning(warning)
    source = database_key(settings.require_source_url())
    if errors:
        announce_schema_drift(source, problems=errors, stopped=True)
        raise SchemaDrift("schema drift: " + "; ".join(errors))
    for where, zone in time_zones:
        problem = local_time_stamps(
            found, time_zone=zone.time_zone, is_utc=zone.is_utc, database=zone.database_name, where=where
        )
        if problem is not None and not settings.source_stamps_are_utc:
            raise SourceInLocalTime(problem)
    lake = Lake.from_url(settings.lake_url)
    reported_path = f"{RAW}/_schema_drift.json"
    reported = (
        json.loads(lake.fs.cat_file(lake.full(reported_path))) if lake.fs.exists(lake.full(reported_path)) else []
    )
    if sorted(warnings) != sorted(reported):
        lake.put_whole(reported_path, json.dumps(sorted(warnings)).encode())
    new_warnings = [w for w in warnings if w not in reported]
    if new_warnings:
        announce_schema_drift(source, problems=new_warnings, stopped=False)
    return SchemaCheck(warnings=warnings, new_warnings=new_warnings)


class _DeltaStream:
    """The fresh versions of one table's delta, noting on the way what the manifest needs: rows
    read, versions at or after the next watermark, unreadable rows, and every key seen. Rows of
    keys set aside before as conflicting are left out: they are read again by key (conflicts.py)."""

    def __init__(self, previous: RawTableEntry, next_mark: datetime, key: str):
        self.previous, self.next_mark, self.key = previous, next_mark, key
        self.read = 0
        self.overlap: set[tuple[int | None, datetime, str]] = set()
        self.unfit: list[pa.Table] = []
        self.seen_keys: list[np.ndarray] = []
        # The content index rows of every row read (see content.py).
        self.index: list[pa.Table] = []
        self.settling = pa.array(sorted(previous.conflicting_keys), pa.int32())

    def fresh(self, stream: Iterator[SourceRows], table_name: str) -> Iterator[pa.RecordBatch]:
        table = SOURCE_TABLES[table_name]
        for read in stream:
            if len(self.settling):
                read = read.without(self.settling, self.key)
            batch, rejected = read.rows, read.rejected
            self.index.append(read.index)
            self.read += batch.num_rows
            self.overlap.update(versions_since(batch, table, self.next_mark))
            if rejected is not None:
                self.read += rejected.num_rows
                self.overlap.update(versions_since(rejected, table, self.next_mark))
                self.unfit.append(drop_known_versions(rejected, table, self.previous.overlap_keys))
            # A copy: the driver's batch is one allocation, and a column kept by reference would
            # keep every column of every batch alive (the whole table, in memory, on a full load).
            self.seen_keys.append(np.array(batch.column(self.key).to_numpy(zero_copy_only=False), copy=True))
            yield from drop_known_versions(batch, table, self.previous.overlap_keys).to_batches()

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


@task(
    name="extract-table-delta",
    task_run_name="extract-{table_name}",
    cache_policy=NO_CACHE,
    **RETRY_POLICY,
)
def extract_table_delta(
    table_name: str, batch_id: str, previous: RawTableEntry | None, horizon: Horizon
) -> RawTableEntry:
    """Stream one table's new versions into the raw zone; return its manifest entry (files, next
    watermark, known keys, deletes found, unreadable rows)."""
    settings = load_settings()
    lake = Lake.from_url(settings.lake_url)
    table = SOURCE_TABLES[table_name]
    state = previous or RawTableEntry()
    next_mark = next_watermark(
        state.watermark,
        horizon,
        safety_seconds=settings.watermark_safety_seconds,
        fallback_lag_seconds=settings.fallback_lag_seconds,
    )
    if is_unchanged(
        state, horizon.activity.get(table_name), horizon.clock_at, settings.unchanged_table_recheck_seconds
    ):
        get_run_logger().info(
            "%s: no write counted since it was last read (%s): not read; its watermark stays at %s",
            table_name,
            state.read_at,
            state.watermark,
        )
        return replace(state, data=FileSet(), deleted=None, rejected=None)
    (key,) = table.key
    delta = _DeltaStream(state, next_mark, key)
    settled: SettledConflicts | None = None
    settling: frozenset[int] = frozenset()
    logger = get_run_logger()
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
                checked_at=horizon.clock_at,
                width=settings.delete_check_bucket_keys,
            )
            unstamped, unstamped_keys = set_aside_unstamped(
                read_unstamped_rows(connection, table), table, state.unstamped_keys
            )
            # A key the source holds twice is settled when this run reads it (a copy made long ago, read
            # by no run, stays as the lake has it).
            read_now = set(delta.seen().to_list())
            if deletes.arrived is not None:
                read_now.update(deletes.arrived.column(key).to_pylist())
            conflicting = delta.repeated() | state.conflicting_keys | (deletes.duplicated & read_now)
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
        _report_conflicts(table_name, key, settled, before=state.conflicting_keys)
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
        "%s: read %d row(s) since %s, %d new version(s) in %d file(s); next watermark %s",
        table_name,
        delta.read,
        state.watermark,
        rows,
        len(files),
        next_mark,
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
    )
    if not entry.has_changes(previous):
        return entry
    # Kept only when the batch is recorded: the rows a run reads and drops as known are in the index.
    # The keys settled here are indexed as they were settled (none while they stay conflicting).
    index = [*without_keys(delta.index, key, settling), *_without_arrivals(deletes.index, key, settling)]
    if settled is not None and settled.index is not None:
        index.append(settled.index)
    content = write_index(lake, table, batch_id, state.content, index)
    return replace(entry, content=content)


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


def _report_conflicts(table_name: str, key: str, settled: SettledConflicts, *, before: frozenset[int]) -> None:
    logger = get_run_logger()
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


@task(
    name="read-missed-changes",
    task_run_name="read-missed-changes-{table_name}",
    cache_policy=NO_CACHE,
    **RETRY_POLICY,
)
def read_missed_changes_task(
    table_name: str, batch_id: str, entry: RawTableEntry, parents_deleted: dict[str, FileSet], *, deep: bool
) -> RawTableEntry:
    """Read again the rows of one table that changed without a new ``last_updated``, and add them to
    its entry in this batch: the children the lake last saw referencing a parent key found deleted
    in this batch (``parents_deleted``: per foreign-key column, the parent's delete marks), and with
    ``deep``, every row whose content differs from what the lake last observed."""
    settings = load_settings()
    lake = Lake.from_url(settings.lake_url)
    table = SOURCE_TABLES[table_name]
    (key,) = table.key
    gone = {
        column: pl.Series(
            lake.read_table(marks.files, deleted_marks_schema(_reference(table_name, column).parent_key)).column(0)
        )
        for column, marks in parents_deleted.items()
    }
    index = read_index(lake, table, entry.content, referencing=None if deep else gone)
    children = children_of(index, key, gone)
    width = (settings.delete_check_bucket_keys or DEEP_PASS_BUCKET_KEYS) if deep else None
    source_url = settings.require_source_url()
    with connect_source(source_url) as connection:
        try:
            missed = read_missed_changes(
                connection, table, index, children=children, width=width, by_row=entry.content_scheme != "source"
            )
            missed, entry = _settle_missed_conflicts(
                connection, lake, table, batch_id, entry, missed, rows_per_file=settings.parquet_rows_per_file
            )
        except DatabaseError as error:
            msg = (
                f"reading source table {table_name} again from the source database {redact_url(source_url)}: "
                f"{database_error_reason(error)}"
            )
            raise SourceReadFailed(msg) from error
    changed = missed.rows.num_rows + (missed.rejected.num_rows if missed.rejected is not None else 0)
    logger = get_run_logger()
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
    return _carry(lake, table, batch_id, entry, missed, rows_per_file=settings.parquet_rows_per_file)


def _settle_missed_conflicts(
    connection: Connection,
    lake: Lake,
    table: Table,
    batch_id: str,
    entry: RawTableEntry,
    missed: MissedChanges,
    *,
    rows_per_file: int,
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
    _report_conflicts(table.name, key, settled, before=entry.conflicting_keys)
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


# The key range width of the deep pass when the delete check is off (its width is used otherwise).
DEEP_PASS_BUCKET_KEYS = 10_000


def _reference(table_name: str, column: str) -> Reference:
    (reference,) = [r for r in references_of(table_name) if r.column == column]
    return reference


def _carry(
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
    files, rows = list(entry.data.files), entry.data.rows
    if files and len(changed_keys):
        written = lake.read_table(files, pa.schema([table.schema.field(key)])).column(key)
        if pc.any(pc.is_in(written, changed_keys)).as_py():
            files, rows = lake.write_batches(
                RAW,
                table.name,
                batch_id,
                table.schema,
                (
                    b.filter(pc.invert(pc.is_in(b.column(key), changed_keys)))
                    for b in lake.iter_batches(files, table.schema)
                ),
                rows_per_file=rows_per_file,
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


@task(name="index-content-under-policy", cache_policy=NO_CACHE, **RETRY_POLICY)
def index_content_under_policy(plan: IngestPlan, tables: dict[str, RawTableEntry]) -> dict[str, RawTableEntry]:
    """Every table's entry with its content index hashed as the PII policy says (``content_scheme``:
    keyed for a table with PII columns, see ``content.py``), after the extracts.

    An index the batch before holds under another scheme (a lake written before tables with PII
    columns had keyed hashes, or a table's PII policy or the hash key changed since) is rewritten
    once, from the source's rows; rows whose content the lake did not hold join the batch as the
    deep pass's do. Its old files are deleted once the batch is recorded
    (:func:`remove_superseded_indexes`). Reads nothing when every index is as the policy says."""
    pii = source_pii_policy()
    indexed = dict(tables)
    for name, entry in tables.items():
        scheme = pii.content_scheme(name)
        before = plan.previous.get(name)
        if entry.content is None:
            continue  # no index yet: nothing to say how it is hashed
        if before is None or before.content is None or before.content_scheme == scheme:
            # Every file of the index was written under ``scheme``: the batch before's, and this one's.
            indexed[name] = replace(entry, content_scheme=scheme)
        else:
            indexed[name] = _rewrite_index(SOURCE_TABLES[name], plan.batch_id, entry, scheme)
    return indexed


def _rewrite_index(table: Table, batch_id: str, entry: RawTableEntry, scheme: str) -> RawTableEntry:
    """``entry`` with its content index written afresh under ``scheme`` (see :func:`rewrite_index`)."""
    settings = load_settings()
    lake = Lake.from_url(settings.lake_url)
    index = read_index(lake, table, entry.content)
    source_url = settings.require_source_url()
    with connect_source(source_url) as connection:
        try:
            rewritten = rewrite_index(connection, lake, table, batch_id, index, leave_out=entry.conflicting_keys)
        except DatabaseError as error:
            msg = (
                f"reading source table {table.name} again from the source database {redact_url(source_url)}: "
                f"{database_error_reason(error)}"
            )
            raise SourceReadFailed(msg) from error
    missed = rewritten.missed
    changed = missed.rows.num_rows + (missed.rejected.num_rows if missed.rejected is not None else 0)
    get_run_logger().info(
        "%s: content index rewritten for its PII policy (%s): %d row(s) hashed, %d of them not as the lake held "
        "them, read again",
        table.name,
        scheme,
        rewritten.keys,
        changed,
    )
    if changed:
        entry = _carry(lake, table, batch_id, entry, missed, rows_per_file=settings.parquet_rows_per_file)
    return replace(entry, content=rewritten.files, content_scheme=scheme)


@task(name="remove-superseded-content-indexes", cache_policy=NO_CACHE, **RETRY_POLICY)
def remove_superseded_indexes() -> None:
    """After the batch is recorded: delete, for each table with PII columns, the content index files
    the newest manifest does not name. An index rewritten under the PII policy leaves files behind
    whose hashes let a reader test guesses (the server's, of rows as they are); nothing reads them
    again. Every run checks (one listing per such table), so a run stopped between recording its
    batch and deleting them is made good by the next."""
    pii = source_pii_policy()
    masked = [name for name in SOURCE_TABLES if pii.masks(name)]
    if not masked:
        return
    lake = Lake.from_url(load_settings().lake_url)
    newest_id = lake.newest_batch(RAW)
    newest = lake.read_raw_manifest(newest_id).tables if newest_id else {}
    for name in masked:
        entry = newest.get(name)
        if entry is not None and entry.content is not None and entry.content_scheme != pii.content_scheme(name):
            continue  # not rewritten yet (the next run compares with it)
        removed = remove_superseded_index(lake, SOURCE_TABLES[name], (entry.content if entry else None) or [])
        if removed:
            get_run_logger().info("%s: deleted %d content index file(s) the newest batch does not name", name, removed)


@task(name="record-ingest-batch", cache_policy=NO_CACHE, **RETRY_POLICY)
def record_ingest_batch(
    plan: IngestPlan, tables: dict[str, RawTableEntry], horizon: Horizon, schema_check: SchemaCheck
) -> RunSummary:
    """Write the batch's manifest: from this moment its data is durable and its watermarks count.
    Returns the ingest's part of the run report.

    Writes nothing when no table has a new version, an unreadable row, a deleted row or another set
    of rows without ``last_updated``, so a run with nothing to do leaves the lake exactly as it was.
    """
    logger = get_run_logger()
    settings = load_settings()
    if any(entry.has_changes(plan.previous.get(name)) for name, entry in tables.items()):
        lake = Lake.from_url(settings.lake_url)
        lake.ensure_identity()  # the lake's first batch gives it its identity (tasks/core/lake_binding.py)
        if verify_cycle_locks():
            # The lock was lost and taken again: record only if no other run recorded a batch meanwhile.
            newest = lake.newest_batch(RAW)
            if newest != plan.previous_batch_id:
                msg = (
                    f"while this run's cycle lock was lost, another run recorded batch {newest}: this run recorded "
                    f"nothing (its batch {plan.batch_id} would fork the lake); the next run starts after {newest}"
                )
                raise CycleLockLost(msg)
        lake.write_raw_manifest(RawManifest(batch_id=plan.batch_id, tables=tables, horizon=horizon))
        logger.info("Recorded ingest batch %s", plan.batch_id)
    else:
        logger.info("No new versions in any source table: nothing to record.")
    return RunSummary(
        ingested={name: entry.data.rows for name, entry in tables.items()},
        source_horizon=complete_before(horizon, fallback_lag_seconds=settings.fallback_lag_seconds),
        warnings=schema_check.warnings,
        new_warnings=schema_check.new_warnings,
    )
