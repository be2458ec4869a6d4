"""The load stage's Prefect tasks: star batches of the lake -> the warehouse, one transaction per
batch, in batch order (see ``merge.py``); and the rebuild of the whole warehouse from the lake (see
``shadow.py``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from functools import partial

import pyarrow as pa
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.core.asset_keys import AssetKeys
from tasks.core.assets import announce_batch_loaded
from tasks.core.handoff import StarHandoff
from tasks.core.lake import STAR, Lake
from tasks.core.manifests import StarManifest
from tasks.core.postgres import Connection, Cursor, connect, explaining_resource_errors, roll_back
from tasks.core.progress import PROGRESS_EVERY_SECONDS
from tasks.core.reports import RunSummary, add_counts
from tasks.core.retries import RETRY_POLICY
from tasks.core.warehouse import WAREHOUSE_SCHEMA, migrate_warehouse_schema, take_load_lock, use_schema
from tasks.load.history import (
    apply_staged_versions,
    close_deleted_versions,
    create_history_tables,
    history_batches,
    record_history_batch,
)
from tasks.load.merge import BatchLoad, BatchStream, in_merge_order, ingest_temporary, load_batch, loaded_batches
from tasks.load.shadow import SHADOW_SCHEMA, create_shadow, swap_history_into_warehouse, swap_into_warehouse
from tasks.load.statements import HISTORY_DIMENSIONS, LOAD_SQL
from tasks.schema import STAR_TABLES, deleted_marks_schema
from tasks.settings import load_settings


@task(name="migrate-warehouse", cache_policy=NO_CACHE, **RETRY_POLICY)
def migrate_warehouse() -> None:
    """Create or migrate the warehouse's star schema (idempotent); in history mode, create the
    history tables and, if they are empty, build them from the batches already loaded."""
    settings = load_settings()
    with (
        connect(settings.require_warehouse_url(), purpose="warehouse database") as connection,
        explaining_resource_errors("warehouse database"),
    ):
        migrate_warehouse_schema(connection)
        if settings.dimension_history:
            _build_history(connection, Lake.from_url(settings.lake_url))


def _build_history(connection: Connection, lake: Lake) -> None:
    """Create the history tables; if they lack a batch the warehouse holds (history mode switched on
    for a warehouse already loaded, or off for a while), build them again: the dimension rows and
    deletes of every star batch the warehouse holds, in batch order, in a shadow beside the
    warehouse (one transaction per batch: the locks held do not grow with a year of batches), then
    swapped in in one transaction (``shadow.py``)."""
    try:
        take_load_lock(connection)
        with connection.cursor() as cursor:
            use_schema(cursor, WAREHOUSE_SCHEMA)
            create_history_tables(cursor)
            # Read in this transaction (loaded_batches() reads in one of its own, rolled back after).
            cursor.execute(LOAD_SQL.read("select_loaded_batches"))
            loaded = {row[0] for row in cursor.fetchall()}
            missing = loaded - history_batches(cursor)
        connection.commit()
    except BaseException:
        roll_back(connection)
        raise
    if not missing:
        return
    batches = [batch for batch in lake.list_batches(STAR) if batch in loaded]
    create_shadow(connection, history=True)
    opened = 0
    for batch in batches:
        try:
            with connection.cursor() as cursor:
                use_schema(cursor, SHADOW_SCHEMA)
                opened += _replay_history(cursor, lake, lake.read_star_manifest(batch))
            connection.commit()
        except BaseException:
            roll_back(connection)
            raise
    swap_history_into_warehouse(connection)
    get_run_logger().info(
        "History mode: %d version(s) built from the %d batch(es) already loaded", opened, len(batches)
    )


def _replay_history(cursor: Cursor, lake: Lake, manifest: StarManifest) -> int:
    """One star batch's dimension rows and deletes, applied to the history tables from the lake."""
    opened = 0
    for table in HISTORY_DIMENSIONS:
        entry = manifest.tables.get(table)
        if entry is not None and entry.files:
            ingest_temporary(cursor, "_totes_history_source", lake.read_table(entry.files, STAR_TABLES[table].schema))
            opened += apply_staged_versions(cursor, table, manifest.batch_id)
    for table, marks in sorted(star_batch_deletions(lake, manifest).items()):
        ingest_temporary(cursor, "_totes_deleted", marks)
        close_deleted_versions(cursor, table)
    record_history_batch(cursor, manifest.batch_id)
    return opened


@task(name="list-unloaded-batches", cache_policy=NO_CACHE, **RETRY_POLICY)
def list_unloaded_batches() -> list[str]:
    """The star batches the lake has and the warehouse lacks, oldest first."""
    settings = load_settings()
    lake = Lake.from_url(settings.lake_url)
    lake.require_bucket()
    with connect(settings.require_warehouse_url(), purpose="warehouse database") as connection:
        loaded = loaded_batches(connection)
    return lake.batches_missing_from(STAR, loaded)


@task(name="load-star-batch", task_run_name="load-{batch_id}", cache_policy=NO_CACHE, **RETRY_POLICY)
def load_star_batch(batch_id: str) -> RunSummary:
    """COPY one star batch into staging tables and merge it, all in one transaction; return the
    load's part of the run report for it."""
    settings = load_settings()
    lake = Lake.from_url(settings.lake_url)
    with (
        connect(settings.require_warehouse_url(), purpose="warehouse database") as connection,
        explaining_resource_errors("warehouse database"),
    ):
        loaded = _load_from_lake(connection, lake, batch_id, history=settings.dimension_history)
    return _report(batch_id, loaded)


def _load_from_lake(
    connection: Connection, lake: Lake, batch_id: str, *, history: bool, into: str = WAREHOUSE_SCHEMA
) -> BatchLoad | None:
    """One star batch from its files in the lake, merged into the star tables of ``into``."""
    manifest = lake.read_star_manifest(batch_id)
    return load_batch(
        connection,
        batch_id,
        star_batch_streams(lake, manifest),
        deletions=partial(star_batch_deletions, lake, manifest),
        history=history,
        into=into,
    )


@task(name="load-star-batch-as-built", task_run_name="load-{batch_id}-as-built", cache_policy=NO_CACHE)
def load_star_batch_as_built(batch_id: str, handoff: StarHandoff) -> RunSummary:
    """Load one star batch from the transform running beside it (``handoff``), in one transaction
    that commits after the transform has written the star manifest. No retries: a failed attempt
    leaves the batch unloaded, and the caller loads it from the lake (``load_star_batch``)."""
    settings = load_settings()
    lake = Lake.from_url(settings.lake_url)
    try:
        with (
            connect(settings.require_warehouse_url(), purpose="warehouse database") as connection,
            explaining_resource_errors("warehouse database"),
        ):
            loaded = load_batch(
                connection,
                batch_id,
                _streams_as_built(handoff),
                deletions=lambda: star_batch_deletions(lake, handoff.manifest()),
                history=settings.dimension_history,
            )
    finally:
        # Whatever happened (or if the batch turned out loaded already), the transform goes on alone.
        handoff.abandon()
    return _report(batch_id, loaded)


def _streams_as_built(handoff: StarHandoff) -> Iterator[tuple[str, BatchStream]]:
    for table, rows in handoff.tables():
        yield table, (STAR_TABLES[table].schema, partial(_once, rows))


def _once(rows: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """A table's stream from the handoff, which can be read once (the merge reads it once)."""
    return rows


def _report(batch_id: str, loaded: BatchLoad | None) -> RunSummary:
    """Log what loading a batch did; the load's part of the run report."""
    logger = get_run_logger()
    if loaded is None:
        logger.info("Batch %s was already loaded: skipped", batch_id)
        return RunSummary(batches_loaded=[batch_id])
    logger.info(
        "Batch %s loaded: %s",
        batch_id,
        ", ".join(f"{name} {rows}" for name, rows in loaded.changed.items() if rows) or "no changes",
    )
    for table, rows in loaded.deleted.items():
        logger.info("Batch %s: %d row(s) of %s marked deleted", batch_id, rows, table)
    for warning in loaded.warnings:
        logger.warning("Data quality, batch %s: %s", batch_id, warning)
    keys = AssetKeys.from_settings(load_settings())
    announce_batch_loaded(
        batch_id,
        changed=loaded.changed,
        deleted=loaded.deleted,
        warehouse_tables={table: keys.warehouse_table(table) for table in loaded.changed},
    )
    return _summary(batch_id, loaded)


def _summary(batch_id: str, loaded: BatchLoad) -> RunSummary:
    return RunSummary(
        loaded=loaded.changed,
        deleted=loaded.deleted,
        batches_loaded=[batch_id],
        warnings=loaded.warnings,
        new_warnings=loaded.warnings,
    )


def star_batch_streams(lake: Lake, manifest: StarManifest) -> list[tuple[str, BatchStream]]:
    """Each star table of a batch with (schema, a function streaming its record batches file by
    file from the lake), in merge order."""
    return in_merge_order(
        {
            name: (STAR_TABLES[name].schema, partial(lake.iter_batches, entry.files, STAR_TABLES[name].schema))
            for name, entry in manifest.tables.items()
            if entry.files
        }
    )


def star_batch_deletions(lake: Lake, manifest: StarManifest) -> dict[str, pa.Table]:
    """Per star table, the keys the batch records as hard-deleted in the source (small: read whole)."""
    return {
        name: lake.read_table(entry.files, deleted_marks_schema(STAR_TABLES[name].key[0]))
        for name, entry in manifest.deleted.items()
    }


@task(name="rebuild-warehouse", cache_policy=NO_CACHE, **RETRY_POLICY)
def rebuild_warehouse_from_lake() -> RunSummary:
    """Rebuild the star tables from every star batch of the lake: load the batches, one transaction
    each, into a shadow copy of the star schema that only this session sees, while the warehouse and
    its readers carry on untouched; then swap the shadow's rows into the warehouse in one transaction
    (``shadow.py``). A failure before the swap commits leaves the warehouse as it was."""
    settings = load_settings()
    lake = Lake.from_url(settings.lake_url)
    batches = lake.list_batches(STAR)
    logger = get_run_logger()
    changed: dict[str, int] = {}
    with (
        connect(settings.require_warehouse_url(), purpose="warehouse database") as connection,
        explaining_resource_errors("warehouse database"),
    ):
        migrate_warehouse_schema(connection)
        create_shadow(connection, history=settings.dimension_history)
        started = reported = time.monotonic()
        for position, batch_id in enumerate(batches, start=1):
            loaded = _load_from_lake(connection, lake, batch_id, history=settings.dimension_history, into=SHADOW_SCHEMA)
            changed = add_counts(changed, loaded.changed if loaded else {})
            if time.monotonic() - reported >= PROGRESS_EVERY_SECONDS:
                reported = time.monotonic()
                logger.info(
                    "Rebuild: %d of %d batch(es) loaded beside the warehouse (last %s)",
                    position,
                    len(batches),
                    batch_id,
                )
        logger.info(
            "Rebuild: %d batch(es) loaded beside the warehouse in %.1f s; swapping them in (readers wait for this step only)",
            len(batches),
            time.monotonic() - started,
        )
        swapping = time.monotonic()
        swap_into_warehouse(connection, history=settings.dimension_history)
    logger.info(
        "Warehouse rebuilt from %d lake batch(es); the swap took %.1f s", len(batches), time.monotonic() - swapping
    )
    return RunSummary(loaded=changed, batches_loaded=batches)
