"""The ETL cycle: ingest (ToteSys -> raw lake), transform (raw -> star lake), load (star -> warehouse)."""

from __future__ import annotations

from prefect import flow, serve
from prefect.futures import PrefectFuture, as_completed, wait
from prefect.task_runners import ThreadPoolTaskRunner

from tasks.alerts import alert_on_failure, alert_on_warnings
from tasks.extract import (
    check_source_schema,
    database_slots,
    extract_table_delta,
    plan_ingest_batch,
    read_horizon,
    record_ingest_batch,
)
from tasks.report import RunSummary, add_counts, publish_run_report
from tasks.schema import SOURCE_TABLES
from tasks.settings import load_settings
from tasks.transform import list_pending_transforms, transform_batch
from tasks.warehouse import load_star_batch, migrate_warehouse, rebuild_warehouse_from_lake


# Source tables read at once, at most (and never more than the database's concurrency limit allows).
EXTRACT_THREADS = 4


@flow(name="ingest", on_failure=[alert_on_failure], task_runner=ThreadPoolTaskRunner(max_workers=EXTRACT_THREADS))
def ingest() -> RunSummary:
    """Pull every source table's new versions into the raw zone and record them as one batch.
    Returns the ingest's part of the run report: rows per table, the source horizon, schema-drift
    warnings (and which of them are new)."""
    settings = load_settings()
    plan = plan_ingest_batch()
    source_url = settings.require_source_url()
    with database_slots(source_url, wanted=EXTRACT_THREADS, default_slots=settings.database_concurrency) as slots:
        horizon = read_horizon()
        drift, new_drift = check_source_schema()
        futures: dict[str, PrefectFuture] = {}
        in_flight: list[PrefectFuture] = []
        for name in SOURCE_TABLES:
            if len(in_flight) >= slots:
                in_flight.remove(next(as_completed(in_flight)))
            futures[name] = extract_table_delta.submit(name, plan.batch_id, plan.previous.get(name), horizon)
            in_flight.append(futures[name])
        wait(list(futures.values()))
    results = {name: future.result() for name, future in futures.items()}
    record_ingest_batch(plan, results, horizon)
    return RunSummary(
        ingested={name: result["rows"] for name, result in results.items()},
        source_horizon=horizon.complete_before,
        warnings=drift,
        new_warnings=new_drift,
    )


@flow(name="transform", on_failure=[alert_on_failure])
def transform() -> tuple[dict[str, int], list[str]]:
    """Build the star tables of every raw batch not yet transformed, in batch order."""
    built: dict[str, int] = {}
    warnings: list[str] = []
    for batch_id in list_pending_transforms():
        counts, batch_warnings = transform_batch(batch_id)
        built = add_counts(built, counts)
        warnings += batch_warnings
    return built, warnings


@flow(name="load", on_failure=[alert_on_failure])
def load() -> RunSummary:
    """Merge every star batch the warehouse lacks, one transaction per batch, in batch order.
    Returns the load's part of the run report: rows changed and marked deleted per table, the
    batches loaded, and data-quality warnings."""
    settings = load_settings()
    summary = RunSummary()
    warehouse_url = settings.require_warehouse_url()
    with database_slots(warehouse_url, wanted=1, default_slots=settings.database_concurrency):
        summary.batches_loaded = migrate_warehouse()
        for batch_id in summary.batches_loaded:
            loaded = load_star_batch(batch_id)
            summary.loaded = add_counts(summary.loaded, loaded.changed)
            summary.deleted = add_counts(summary.deleted, loaded.deleted)
            summary.warnings += loaded.warnings
    summary.new_warnings = summary.warnings
    return summary


# The cycle runs each stage's body inside its own flow run rather than as a subflow: a subflow costs
# up to a second of teardown each (Prefect joins its heartbeat thread, which sleeps in 1 s steps),
# and the fixed cost is paid on every schedule tick. The stages stay flows of their own for the
# one-stage deployments.
@flow(name="totesys-etl", on_failure=[alert_on_failure], task_runner=ThreadPoolTaskRunner(max_workers=4))
def totesys_etl() -> RunSummary:
    """One ETL cycle: ToteSys -> lake (raw) -> lake (star) -> warehouse."""
    ingested = ingest.fn()
    built, warnings = transform.fn()
    loaded = load.fn()
    summary = publish_run_report(
        RunSummary(
            ingested=ingested.ingested,
            transformed=built,
            loaded=loaded.loaded,
            deleted=loaded.deleted,
            batches_loaded=loaded.batches_loaded,
            warnings=ingested.warnings + warnings + loaded.warnings,
            new_warnings=ingested.new_warnings + warnings + loaded.warnings,
            source_horizon=ingested.source_horizon,
        )
    )
    alert_on_warnings("totesys-etl", summary.new_warnings)
    return summary


@flow(name="rebuild-warehouse", on_failure=[alert_on_failure])
def rebuild_warehouse() -> RunSummary:
    """Rebuild the whole warehouse from the lake alone: transform what is pending, then empty the
    star tables and merge every star batch again, in one transaction (readers see the old
    warehouse until it commits)."""
    built, warnings = transform.fn()
    loaded, batches = rebuild_warehouse_from_lake()
    return publish_run_report(
        RunSummary(transformed=built, loaded=loaded, batches_loaded=batches, warnings=warnings)
    )


def serve_deployments(*, interval_seconds: int) -> None:
    """Serve every totes deployment from this process (``totes serve``): the ETL cycle and the file
    feeds cycle on a schedule, never two of one at once, and each stage and the rebuild on demand."""
    from flows.files import totesys_files

    serve(
        totesys_etl.to_deployment(name="totesys-etl", interval=interval_seconds, concurrency_limit=1),
        ingest.to_deployment(name="totesys-ingest", concurrency_limit=1),
        transform.to_deployment(name="totesys-transform", concurrency_limit=1),
        load.to_deployment(name="totesys-load", concurrency_limit=1),
        rebuild_warehouse.to_deployment(name="totesys-rebuild", concurrency_limit=1),
        totesys_files.to_deployment(name="totesys-files", interval=interval_seconds, concurrency_limit=1),
    )
