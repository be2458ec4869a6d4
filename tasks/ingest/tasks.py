"""The ingest stage's Prefect tasks: ToteSys -> raw zone of the lake, one batch per run.

A run plans its batch from the newest raw manifest, reads the source's horizon and checks its schema,
streams each table's changes into Parquet (and checks for hard deletes), then records the manifest
last: from that moment the batch exists and its watermarks count.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.core.asset_keys import database_key
from tasks.core.assets import announce_schema_drift
from tasks.core.lake import RAW, Lake, batch_sequence, new_batch_id
from tasks.core.locks import CycleLockLost, verify_cycle_locks
from tasks.core.manifests import FileSet, Horizon, RawManifest, RawTableEntry
from tasks.core.postgres import DatabaseError, connect, database_error_reason
from tasks.core.reports import RunSummary
from tasks.core.retries import RETRY_POLICY
from tasks.ingest.drift import SchemaDrift, SourceInLocalTime, local_time_stamps, schema_drift
from tasks.ingest.extract import carry, extract_delta, read_again
from tasks.ingest.reconcile import (
    read_index,
    remove_superseded_index,
    rewrite_index,
)
from tasks.ingest.replica import read_horizon_of_source
from tasks.ingest.source import (
    SourceReadFailed,
    check_source_grants,
    connect_source,
    read_default_time_zone,
    read_source_activity,
    read_source_columns,
    source_pii_policy,
)
from tasks.ingest.watermark import complete_before, is_unchanged, kept_unread, next_watermark
from tasks.schema import SOURCE_TABLES, Table
from tasks.settings import TotesSettings, load_settings, redact_url


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
    if trusted and activity.untrusted_because:
        logger.info(
            "Every table is read this run: the source's write counts cannot be trusted now (%s)",
            activity.untrusted_because,
        )
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
        return kept_unread(state)
    return extract_delta(
        lake, table, batch_id, previous, horizon, next_mark, settings=settings, logger=get_run_logger()
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
    return read_again(
        lake, table, batch_id, entry, parents_deleted, deep=deep, settings=settings, logger=get_run_logger()
    )


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
    settings = load_settings()
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
            indexed[name] = _rewrite_index(settings, SOURCE_TABLES[name], plan.batch_id, entry, scheme)
    return indexed


def _rewrite_index(
    settings: TotesSettings, table: Table, batch_id: str, entry: RawTableEntry, scheme: str
) -> RawTableEntry:
    """``entry`` with its content index written afresh under ``scheme`` (see :func:`rewrite_index`)."""
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
        entry = carry(lake, table, batch_id, entry, missed, rows_per_file=settings.parquet_rows_per_file)
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
