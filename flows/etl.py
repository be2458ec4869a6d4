"""The ETL cycle: ingest (ToteSys -> raw lake), transform (raw -> star lake), load (star -> warehouse)."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, cast

from prefect import get_run_logger
from prefect.futures import PrefectFuture, as_completed, wait
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from flows.announce import announce_ingested, announce_loaded, announce_transformed
from flows.fan_out import collect_extract_runs, submit_extract_runs
from flows.plain_flow import plain_flow
from tasks.core.alerts import alert_on_failure, alert_on_warnings
from tasks.core.asset_keys import AssetKeys
from tasks.core.concurrency import source_slots, warehouse_slot
from tasks.core.handoff import StarHandoff
from tasks.core.lake_binding import bind_warehouse_lake, check_warehouse_lake
from tasks.core.locks import cycle_lock
from tasks.core.manifests import Horizon, RawTableEntry
from tasks.core.memory import release_unused_memory
from tasks.core.reports import RunSummary, publish_run_report
from tasks.ingest.fan_out_plan import estimate_reads, plan_fan_out, reads_biggest_first
from tasks.ingest.tasks import (
    IngestPlan,
    check_source_schema,
    extract_table_delta,
    index_content_under_policy,
    plan_ingest_batch,
    read_horizon,
    read_missed_changes_task,
    record_ingest_batch,
    remove_superseded_indexes,
)
from tasks.ingest.watermark import kept_unread, read_whole, unchanged_tables
from tasks.load.tasks import (
    list_unloaded_batches,
    load_star_batch,
    load_star_batch_as_built,
    migrate_warehouse,
    rebuild_warehouse_from_lake,
)
from tasks.schema import SOURCE_TABLES, references_of
from tasks.settings import TotesSettings, load_settings
from tasks.transform.tasks import list_pending_transforms, transform_batch


def _threads(workers: int) -> TaskRunner[PrefectFuture[Any]]:
    """A thread pool for a flow's tasks (prefect 3.8 types TaskRunner invariantly in its future type,
    so its own thread pool does not match the flow decorator's parameter without a cast)."""
    return cast(TaskRunner[PrefectFuture[Any]], ThreadPoolTaskRunner(max_workers=workers))


def _one_cycle_at_a_time(settings: TotesSettings) -> AbstractContextManager[None]:
    """The warehouse's ETL cycle lock: two runs at once would plan batches with one sequence number.
    Every stage takes it (it is reentrant: the cycle's stages run inside the cycle's hold)."""
    return cycle_lock(settings.require_warehouse_url(), "etl", wait_seconds=settings.lock_wait_seconds)


def _check_lake(settings: TotesSettings, *, rebuild: bool = False, adopt: bool = False) -> None:
    """Refuse a lake that is not the warehouse's own (or an empty or missing one) before anything is
    written; bind the warehouse to its lake when it has none yet (tasks/core/lake_binding.py)."""
    check_warehouse_lake(settings.require_warehouse_url(), settings.lake_url, rebuild=rebuild, adopt=adopt)


# Source tables read at once, at most (and never more than the database's concurrency limit allows).
EXTRACT_THREADS = 4


@plain_flow(name="ingest", on_failure=[alert_on_failure], task_runner=_threads(EXTRACT_THREADS))
def ingest(reconcile: bool = False, fan_out: bool | None = None, backfill: list[str] | None = None) -> RunSummary:
    """Pull every source table's new versions into the raw zone and record them as one batch.
    With ``reconcile``, also compare every row's content with what the lake last observed and read
    the rows that differ (the deep pass). With ``fan_out`` (default: ``TOTES_FAN_OUT``), each
    table's extract is a flow run of its own on the work pool. ``backfill`` names source tables to
    read whole (every row again, e.g. after a repair in the source): the others read their delta,
    and the extracts run in this process. Returns the ingest's part of the run report: rows per
    table, the source horizon, schema-drift warnings (and which of them are new)."""
    return _ingest_stage(load_settings(), reconcile=reconcile, fan_out=fan_out, backfill=backfill)


def _ingest_stage(
    settings: TotesSettings, *, reconcile: bool, fan_out: bool | None, backfill: list[str] | None
) -> RunSummary:
    """The ingest flow's body, which the cycle runs in its own flow run (see ``totesys_etl``)."""
    whole = backfill_tables(backfill)
    if whole:
        get_run_logger().info("Backfill: %s read whole", ", ".join(sorted(whole)))
    started = time.perf_counter()
    with _one_cycle_at_a_time(settings):
        _check_lake(settings)
        fan_out = (settings.fan_out if fan_out is None else fan_out) and not whole
        summary = _ingest(settings, reconcile=reconcile, fan_out=fan_out, whole=whole)
    return _timed(summary, "ingest", started)


def backfill_tables(backfill: list[str] | None) -> frozenset[str]:
    """The source tables to read whole.

    Raises:
        ValueError: naming the tables that are not source tables, and the source tables.
    """
    unknown = sorted(set(backfill or []) - SOURCE_TABLES.keys())
    if unknown:
        msg = f"backfill: unknown source table(s) {', '.join(unknown)}; the source tables: {', '.join(SOURCE_TABLES)}"
        raise ValueError(msg)
    return frozenset(backfill or [])


def _timed(summary: RunSummary, stage: str, started: float) -> RunSummary:
    """The stage's summary with its wall seconds since ``started``, logged for the people watching."""
    seconds = time.perf_counter() - started
    get_run_logger().info("%s: done in %.1f s", stage.capitalize(), seconds)
    return summary.timed(stage, seconds)


def _ingest(settings: TotesSettings, *, reconcile: bool, fan_out: bool, whole: frozenset[str]) -> RunSummary:
    plan = plan_ingest_batch()
    get_run_logger().info(
        "Ingest: reading %d source tables' changes into batch %s%s",
        len(SOURCE_TABLES),
        plan.batch_id,
        " on the work pool" if fan_out else "",
    )
    with source_slots(settings, wanted=EXTRACT_THREADS) as slots:
        horizon = read_horizon(trust_counters=not reconcile)
        schema_check = check_source_schema()
        fan = plan_fan_out(
            plan.previous,
            horizon,
            list(SOURCE_TABLES),
            min_rows=settings.fan_out_min_rows,
            recheck_seconds=settings.unchanged_table_recheck_seconds,
        )
        if fan_out:
            get_run_logger().info("Fan-out: %s", fan.describe())
        if not (fan_out and fan.children):
            # Every table read here, under this one hold of the slots (a hold costs a request to
            # the Prefect API, and one right after another's release may be told to retry in 2 s).
            tables = _extract_here(settings, plan, horizon, slots=slots, whole=whole)
            tables = index_content_under_policy(plan, tables)
            tables = _read_missed_changes(plan.batch_id, tables, horizon, slots=slots, deep=reconcile)
    if fan_out and fan.children:
        runs = submit_extract_runs(plan, horizon, fan.children, settings)
        # The children take the source's slots, one each: the cycle takes what they leave for the
        # tables it reads itself (small ones), and none while it waits.
        with source_slots(settings, wanted=max(1, EXTRACT_THREADS - len(runs))) as slots:
            tables = _extract_here(settings, plan, horizon, slots=slots, whole=frozenset(), only=fan.here())
        tables |= collect_extract_runs(plan, horizon, runs, settings)
        with source_slots(settings, wanted=EXTRACT_THREADS) as slots:
            tables = index_content_under_policy(plan, tables)
            tables = _read_missed_changes(plan.batch_id, tables, horizon, slots=slots, deep=reconcile)
    summary = record_ingest_batch(plan, tables, horizon, schema_check)
    remove_superseded_indexes()
    announce_ingested(AssetKeys.from_settings(settings, with_source=True), plan.batch_id, tables)
    return summary


def _extract_here(
    settings: TotesSettings,
    plan: IngestPlan,
    horizon: Horizon,
    *,
    slots: int,
    whole: frozenset[str],
    only: list[str] | None = None,
) -> dict[str, RawTableEntry]:
    """Every source table's delta (or, for ``whole``, every row), ``slots`` reads' worth at once,
    the biggest first; with ``only``, those tables'."""
    names = list(SOURCE_TABLES) if only is None else only
    previous = {
        name: read_whole(plan.previous.get(name)) if name in whole else plan.previous.get(name) for name in names
    }
    known = {name: entry for name, entry in previous.items() if entry is not None}
    recheck_seconds = settings.unchanged_table_recheck_seconds
    # A table with no write counted since its last read gets no task run: its entry stays as it was.
    unchanged = unchanged_tables(previous, horizon, recheck_seconds=recheck_seconds)
    if unchanged:
        get_run_logger().info(
            "Not read, no write counted since their last read (their watermarks stay): %s", ", ".join(unchanged)
        )
    to_read = [name for name in names if name not in unchanged]
    estimated = estimate_reads(known, horizon, to_read, recheck_seconds=recheck_seconds)
    futures = _biggest_first(
        estimated, slots, lambda name: extract_table_delta.submit(name, plan.batch_id, previous[name], horizon)
    )
    return {name: kept_unread(known[name]) if name in unchanged else futures[name].result() for name in names}


def _read_missed_changes(
    batch_id: str, tables: dict[str, RawTableEntry], horizon: Horizon, *, slots: int, deep: bool
) -> dict[str, RawTableEntry]:
    """After every table's delta: read again the children of parent keys found deleted or changed in
    this batch (every run), and with ``deep`` every row whose content the lake does not hold (a
    table's whole content index: the biggest first, as the extracts)."""
    parents_deleted = {
        name: {
            reference.column: marks
            for reference in references_of(name)
            if (marks := tables[reference.parent].deleted) is not None
        }
        for name in SOURCE_TABLES
    }
    wanted = {name: horizon.table_rows.get(name, 0) for name in SOURCE_TABLES if parents_deleted[name] or deep}
    # The deep pass folds each table's index of keys and hashes: one big table at a time (two at
    # once peaked at 1.8 GiB at scale 1000), the small ones beside it.
    futures = _biggest_first(
        wanted,
        slots,
        lambda name: read_missed_changes_task.submit(name, batch_id, tables[name], parents_deleted[name], deep=deep),
        big_weight=3 if deep else 2,
    )
    return tables | {name: future.result() for name, future in futures.items()}


def _biggest_first(
    estimated_rows: dict[str, int], slots: int, submit: Callable[[str], PrefectFuture], *, big_weight: int = 2
) -> dict[str, PrefectFuture]:
    """Submit each table's read, the biggest first, ``slots`` reads' worth at once (a big read counts
    ``big_weight`` and runs alone if it must: fan_out_plan.py); return them once all have ended."""
    futures: dict[str, PrefectFuture] = {}
    in_flight: dict[PrefectFuture, int] = {}
    for name, weight in reads_biggest_first(estimated_rows, big_weight=big_weight):
        while in_flight and sum(in_flight.values()) + weight > slots:
            in_flight.pop(next(as_completed(list(in_flight))))
        futures[name] = submit(name)
        in_flight[futures[name]] = weight
    wait(list(futures.values()))
    return futures


@plain_flow(name="transform", on_failure=[alert_on_failure])
def transform() -> RunSummary:
    """Build the star tables of every raw batch not yet transformed, in batch order."""
    summary = RunSummary()
    started = time.perf_counter()
    settings = load_settings()
    with _one_cycle_at_a_time(settings):
        keys = AssetKeys.from_settings(settings)
        for batch_id in list_pending_transforms():
            transformed = transform_batch(batch_id)
            announce_transformed(keys, batch_id, transformed)
            summary = summary.then(transformed)
    return _timed(summary, "transform", started)


@plain_flow(name="load", on_failure=[alert_on_failure])
def load() -> RunSummary:
    """Merge every star batch the warehouse lacks, one transaction per batch, in batch order.
    Returns the load's part of the run report: rows changed and marked deleted per table, the
    batches loaded, and data-quality warnings."""
    settings = load_settings()
    summary = RunSummary()
    started = time.perf_counter()
    with _one_cycle_at_a_time(settings), warehouse_slot(settings):
        migrate_warehouse()
        _check_lake(settings)
        summary = _load_from_lake(AssetKeys.from_settings(settings))
    return _timed(summary, "load", started)


def _load_from_lake(keys: AssetKeys) -> RunSummary:
    """Every star batch the warehouse lacks, from the lake, one transaction each, in batch order."""
    summary = RunSummary()
    for batch_id in list_unloaded_batches():
        loaded = load_star_batch(batch_id)
        announce_loaded(keys, batch_id, loaded)
        summary = summary.then(loaded)
    return summary


# The cycle runs each stage's body inside its own flow run rather than as a subflow: a subflow costs
# up to a second of teardown each (Prefect joins its heartbeat thread, which sleeps in 1 s steps),
# and the fixed cost is paid on every schedule tick. The stages stay flows of their own for the
# one-stage deployments.
@plain_flow(name="totesys-etl", on_failure=[alert_on_failure], task_runner=_threads(4))
def totesys_etl(reconcile: bool = False, fan_out: bool | None = None, backfill: list[str] | None = None) -> RunSummary:
    """One ETL cycle: ToteSys -> lake (raw) -> lake (star) -> warehouse. With ``reconcile``, the
    ingest also compares every row's content with the lake's (``totes reconcile``, the
    ``totesys-reconcile`` deployment): changes that bypassed ``last_updated`` arrive too. With
    ``fan_out`` (default: ``TOTES_FAN_OUT``), each source table is extracted by a flow run of its
    own on the work pool (``extract-table``). ``backfill`` names source tables to read whole
    (``totes backfill``, the ``totesys-backfill`` deployment): their versions the warehouse holds
    stay once, the dimensions built from them are built again, deletes found are marked."""
    settings = load_settings()
    # The warehouse's slot is taken with the cycle, not after the ingest: a Prefect server on SQLite
    # answered the load's request "busy, retry in 2 s" in 3 runs of 4 when it came just as the
    # ingest's slots and task runs were being recorded.
    with _one_cycle_at_a_time(settings), warehouse_slot(settings):
        ingested = _ingest_stage(settings, reconcile=reconcile, fan_out=fan_out, backfill=backfill)
        release_unused_memory()  # the ingest's peak would stay resident under the transform's
        summary = publish_run_report(ingested.then(_transform_and_load(settings)))
    alert_on_warnings("totesys-etl", summary.new_warnings)
    return summary


def _transform_and_load(settings: TotesSettings) -> RunSummary:
    """The cycle's transform and load, overlapped: each new batch's load runs beside its transform,
    copying star parts into its transaction as they are built, and commits once the star manifest
    is written. (Apart, the stages take turns: at scale 100 the transform kept ~1.2 client cores
    busy for 13.8 s while the warehouse idled, then the load kept one server backend busy for
    25.1 s.) Star batches an earlier run built but did not load go first, from the lake.

    Runs inside the cycle's warehouse slot. The stage seconds reported: the transform's, then the
    load's after the transform ended."""
    started = time.perf_counter()
    keys = AssetKeys.from_settings(settings)
    # Listed before the warehouse is touched: what is left to transform is the lake's business alone.
    pending = list_pending_transforms()
    migrate_warehouse()
    _check_lake(settings)  # binds a new warehouse to the lake its first batch came from
    summary = _load_from_lake(keys)
    transform_seconds = 0.0
    if pending:
        get_run_logger().info("Transform and load: %s, the load beside the transform", ", ".join(pending))
    for batch_id in pending:
        transformed, seconds = _transform_and_load_batch(keys, batch_id)
        summary, transform_seconds = summary.then(transformed), transform_seconds + seconds
    load_seconds = time.perf_counter() - started - transform_seconds
    logger = get_run_logger()
    logger.info("Transform: done in %.1f s", transform_seconds)
    logger.info("Load: done in %.1f s after the transform", load_seconds)
    return summary.timed("transform", transform_seconds).timed("load", load_seconds)


def _transform_and_load_batch(keys: AssetKeys, batch_id: str) -> tuple[RunSummary, float]:
    """Transform one batch with its load beside it; the outcome and the transform's seconds. If the
    load beside it fails, the batch is loaded again from the lake (with the load's retries)."""
    handoff = StarHandoff(batch_id)
    loading = load_star_batch_as_built.submit(batch_id, handoff)
    started = time.perf_counter()
    try:
        transformed = transform_batch(batch_id, handoff)
    finally:
        # A failed transform makes the load roll back: wait for it before going on.
        seconds = time.perf_counter() - started
        wait([loading])
    try:
        loaded = loading.result()
    except Exception as failure:  # noqa: BLE001 - whatever stopped it, the lake's files are whole
        get_run_logger().warning(
            "Batch %s: the load beside the transform failed (%s: %s); loading it from the lake",
            batch_id,
            type(failure).__name__,
            failure,
        )
        loaded = load_star_batch(batch_id)
    announce_transformed(keys, batch_id, transformed)
    announce_loaded(keys, batch_id, loaded)
    return transformed.then(loaded), seconds


@plain_flow(name="rebuild-warehouse", on_failure=[alert_on_failure])
def rebuild_warehouse(adopt_lake: bool = False) -> RunSummary:
    """Rebuild the whole warehouse from the lake alone: transform what is pending, then merge every
    star batch again into a shadow copy of the star tables, a transaction per batch, and swap it
    into the warehouse in one transaction (readers see the old warehouse until it commits). The
    lake must be the warehouse's own, or ``adopt_lake`` given: then the warehouse is loaded from this
    lake from now on."""
    settings = load_settings()
    # The same lock as the cycle, taken before the batches are listed: a scheduled run cannot add a
    # batch the rebuild would miss, nor load one out of order while it rebuilds.
    with _one_cycle_at_a_time(settings):
        _check_lake(settings, rebuild=True, adopt=adopt_lake)
        transformed = transform.fn()
        started = time.perf_counter()
        with warehouse_slot(settings):
            rebuilt = _timed(rebuild_warehouse_from_lake(), "rebuild", started)
        bind_warehouse_lake(settings.require_warehouse_url(), settings.lake_url)
        if rebuilt.batches_loaded:
            announce_loaded(AssetKeys.from_settings(settings), rebuilt.batches_loaded[-1], rebuilt)
        return publish_run_report(transformed.then(rebuilt))


if __name__ == "__main__":
    # ``python flows/etl.py``: one ETL cycle, exactly as ``totes run`` runs it (the same settings, Prefect API, output and exit
    # status). Handed to the command line by name: no flow module depends on the CLI.
    import runpy
    import sys

    sys.argv = ["totes", "run"]
    runpy.run_module("flows.cli", run_name="__main__", alter_sys=True)
