"""The transform stage's Prefect tasks: a raw batch of the lake -> its star batch, in batch order.

``transform_batch`` reads (the raw manifest, the previous star batch's carried state), builds with
the pure :func:`~tasks.transform.batch.build_batch`, and writes the star files and, last, the star
manifest.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import polars as pl
import pyarrow as pa
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.core.asset_keys import AssetKeys
from tasks.core.assets import announce_rows_quarantined
from tasks.core.handoff import StarHandoff
from tasks.core.lake import RAW, STAR, Lake, batch_sequence
from tasks.core.locks import verify_cycle_locks
from tasks.core.manifests import FileSet, RawManifest, StarManifest
from tasks.core.reports import RunSummary
from tasks.core.retries import RETRY_POLICY
from tasks.schema import (
    SOURCE_TABLES,
    STAR_TABLES,
    deleted_marks_schema,
    unreadable_rows_schema,
)
from tasks.settings import load_settings
from tasks.transform.batch import (
    JOIN_STATE_TABLES,
    BatchFrames,
    BatchPart,
    CarriedState,
    StarRows,
    build_batch,
    drain,
)
from tasks.transform.builders import ROW_WISE_BUILDERS


def pending_transform_batches(lake: Lake) -> list[str]:
    """Raw batches without a star batch, oldest first: those after the newest star batch (batches
    are transformed in order, each after the one before, so the star zone is a prefix of the raw)."""
    return lake.list_batches(RAW, after=lake.newest_batch(STAR, repair=True))


def _previous_star_manifest(lake: Lake, batch_id: str) -> StarManifest | None:
    newest = lake.newest_batch(STAR)
    if newest is None or batch_sequence(newest) >= batch_sequence(batch_id):
        earlier = [b for b in lake.list_batches(STAR) if batch_sequence(b) < batch_sequence(batch_id)]
        newest = earlier[-1] if earlier else None
    return lake.read_star_manifest(newest) if newest else None


def read_batch_frames(lake: Lake, raw: RawManifest) -> BatchFrames:
    """The raw batch as frames: the big (row-wise) tables as lazy chunks, one raw file per step."""

    def chunks(source: str) -> Iterator[pl.DataFrame]:
        for raw_file in raw.files(source):
            yield pl.DataFrame(lake.read_table([raw_file], SOURCE_TABLES[source].schema))

    tables: dict[str, list[pl.DataFrame] | Iterator[pl.DataFrame]] = {}
    for source, spec in SOURCE_TABLES.items():
        if source in ROW_WISE_BUILDERS:
            tables[source] = chunks(source)
        elif raw.files(source):
            tables[source] = [pl.DataFrame(lake.read_table(raw.files(source), spec.schema))]
    unreadable, deleted = {}, {}
    for source, entry in raw.tables.items():
        spec = SOURCE_TABLES[source]
        if entry.rejected:
            unreadable[source] = pl.DataFrame(lake.read_table(entry.rejected.files, unreadable_rows_schema(spec)))
        if entry.deleted:
            deleted[source] = pl.DataFrame(lake.read_table(entry.deleted.files, deleted_marks_schema(spec.key[0])))
    return BatchFrames(tables=tables, unreadable=unreadable, deleted=deleted)


def read_carried_state(lake: Lake, previous: StarManifest | None) -> CarriedState:
    """The join state and dim_date range the previous star batch left (nothing before the first)."""
    if previous is None:
        return CarriedState()
    join_state = {
        name: pl.DataFrame(lake.read_table(previous.state.get(name, []), SOURCE_TABLES[name].schema))
        for name in JOIN_STATE_TABLES
    }
    return CarriedState(join_state=join_state, date_range=previous.date_range)


@dataclass
class _StarWriter:
    """Writes the parts of one star batch as they are built, keeping the files and rows per table."""

    lake: Lake
    batch_id: str
    handoff: StarHandoff | None = None
    tables: dict[str, FileSet] = field(default_factory=lambda: {name: FileSet() for name in STAR_TABLES})
    quarantined: dict[str, FileSet] = field(default_factory=dict)

    def take(self, part: BatchPart) -> None:
        if isinstance(part, StarRows):
            rows = part.frame.to_arrow().cast(STAR_TABLES[part.table].schema)
            written = self.lake.write_table(STAR, part.table, self.batch_id, rows)
            self.tables[part.table] += FileSet(written, part.frame.height)
            if self.handoff is not None:
                self.handoff.put(part.table, rows)
        else:
            written = self.lake.write_table(STAR, f"_quarantine_{part.source}", self.batch_id, part.frame.to_arrow())
            self.quarantined[part.source] = self.quarantined.get(part.source, FileSet()) + FileSet(
                written, part.frame.height
            )

    def table(self, name: str, table: pa.Table) -> list[str]:
        return self.lake.write_table(STAR, name, self.batch_id, table)


@task(name="transform-batch", task_run_name="transform-{batch_id}", cache_policy=NO_CACHE, **RETRY_POLICY)
def transform_batch(batch_id: str, handoff: StarHandoff | None = None) -> RunSummary:
    """Build and write the star tables of one raw batch; return the rows built per star table and
    the batch's data-quality warnings. With ``handoff``, each star part is also handed to a load
    running beside it, which commits after the star manifest is written (or rolls back if this
    fails)."""
    try:
        return _transform_batch(batch_id, handoff)
    except BaseException as failure:
        if handoff is not None:
            handoff.fail(f"{type(failure).__name__}: {failure}")
        raise


def _transform_batch(batch_id: str, handoff: StarHandoff | None) -> RunSummary:
    logger = get_run_logger()
    lake = Lake.from_url(load_settings().lake_url)
    previous = _previous_star_manifest(lake, batch_id)
    builder = build_batch(read_batch_frames(lake, lake.read_raw_manifest(batch_id)), read_carried_state(lake, previous))
    writer = _StarWriter(lake, batch_id, handoff)
    built = drain(builder, writer.take)
    for warning in built.warnings:
        logger.warning("Data quality, batch %s: %s", batch_id, warning)

    state = {}
    for name, rows in built.join_state.items():
        if rows is None and previous is not None:
            state[name] = previous.state.get(name, [])
        elif rows is not None and rows.height:
            state[name] = writer.table(f"_state_{name}", rows.to_arrow().cast(SOURCE_TABLES[name].schema))
        else:
            state[name] = []
    deleted = {
        name: FileSet(
            writer.table(f"_deleted_{name}", marks.to_arrow().cast(deleted_marks_schema(STAR_TABLES[name].key[0]))),
            marks.height,
        )
        for name, marks in built.deleted.items()
    }
    manifest = StarManifest(
        batch_id=batch_id,
        tables=writer.tables,
        state=state,
        date_range=built.date_range,
        quarantined=writer.quarantined,
        deleted=deleted,
        warnings=built.warnings,
    )
    verify_cycle_locks()  # still held, or taken again: a second writer of this batch is refused (create-only)
    lake.write_star_manifest(manifest)
    if handoff is not None:
        handoff.finish(manifest)
    _announce_set_aside(lake, manifest)
    counts = {name: entry.rows for name, entry in writer.tables.items()}
    logger.info(
        "Batch %s transformed: %s",
        batch_id,
        ", ".join(f"{name} {rows}" for name, rows in counts.items() if rows) or "no star rows",
    )
    return RunSummary(transformed=counts, warnings=built.warnings, new_warnings=built.warnings)


def _announce_set_aside(lake: Lake, manifest: StarManifest) -> None:
    """One ``totes.rows.quarantined`` event per source table with rows the batch set aside."""
    keys = AssetKeys.from_settings(load_settings())
    for table, set_aside in manifest.quarantined.items():
        if set_aside.rows:
            reasons = lake.set_aside_reasons(set_aside)
            announce_rows_quarantined(manifest.batch_id, table, dict(reasons.most_common()), asset=keys.raw(table))


@task(name="list-pending-transforms", cache_policy=NO_CACHE, **RETRY_POLICY)
def list_pending_transforms() -> list[str]:
    """Raw batches that have no star batch yet, oldest first."""
    lake = Lake.from_url(load_settings().lake_url)
    lake.require_bucket()
    return pending_transform_batches(lake)
