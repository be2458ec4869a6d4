"""What a run changed, told to Prefect: asset materializations and totes's own events.

Each table a stage changed is materialized by a task run of its own (``@materialize``), whose
upstream assets are the tables it was built from: Prefect emits one
``prefect.asset.materialization.succeeded`` event per changed table (with the metadata: batch, rows,
deletes) and draws the lineage source -> raw -> star -> warehouse. Tables a run did not change get
no task run and no event. The work itself stays in the stages' tasks: these runs only record it,
after the stage has committed what they name.

The custom events (``totes.*``) are for operators' automations: a downstream deployment waits for
``totes.batch.loaded``, an alert for ``totes.file.quarantined``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from prefect.assets import Asset, AssetProperties, add_asset_metadata, materialize
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prefect.futures import wait

from tasks.core.manifests import QuarantineRecord


@dataclass(frozen=True)
class Materialization:
    """One asset a stage changed: its key and name, the assets it was built from, what changed."""

    key: str
    name: str
    description: str
    upstream: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)


def _record(key: str, metadata: dict[str, Any]) -> None:
    """The materializing task's body: the stage did the work; this attaches what it did."""
    add_asset_metadata(key, metadata)


def publish_materializations(stage: str, materializations: list[Materialization]) -> None:
    """One materializing task run per changed asset, at once (inside the calling flow run)."""
    futures = []
    for materialization in materializations:
        asset = Asset(
            key=materialization.key,
            properties=AssetProperties(name=materialization.name, description=materialization.description),
        )
        recorder = materialize(
            asset,
            by="totes",
            asset_deps=list(materialization.upstream),
            name=f"{stage}-materialized",
            task_run_name=f"materialized-{materialization.name}",
            cache_policy=NO_CACHE,
            persist_result=False,
        )(_record)
        futures.append(recorder.submit(materialization.key, materialization.metadata))
    wait(futures)
    for future in futures:
        future.result()  # a failed record fails the stage's flow, like any task


def emit_totes_event(
    event: str,
    *,
    resource_id: str,
    resource_name: str,
    payload: dict[str, Any],
    assets: tuple[str, ...] = (),
) -> None:
    """A ``totes.*`` event about ``resource_id`` (the flow run, flow and deployment are added to its
    related resources by Prefect; ``assets`` are added with the role ``asset``)."""
    emit_event(
        event=event,
        resource={"prefect.resource.id": resource_id, "prefect.resource.name": resource_name},
        related=[{"prefect.resource.id": key, "prefect.resource.role": "asset"} for key in assets],
        payload=payload,
    )


# --- totes's own events: their names, resources and payloads, in one place ----------------------
# docs/operations/alerts.md "Assets and events" lists them; deployments/automations.yaml reacts to one.
BATCH_LOADED = "totes.batch.loaded"
ROWS_QUARANTINED = "totes.rows.quarantined"
FILE_QUARANTINED = "totes.file.quarantined"
SCHEMA_DRIFT = "totes.source.schema_drift"


def announce_batch_loaded(
    batch_id: str, *, changed: dict[str, int], deleted: dict[str, int], warehouse_tables: dict[str, str]
) -> None:
    """A batch is committed in the warehouse: rows changed and marked deleted per star table
    (``warehouse_tables``: table -> asset key, for the tables it changed)."""
    touched = {table: rows for table, rows in changed.items() if rows}
    emit_totes_event(
        BATCH_LOADED,
        resource_id=f"totes.batch.{batch_id}",
        resource_name=batch_id,
        payload={
            "batch_id": batch_id,
            "tables": touched,
            "rows": sum(touched.values()),
            "deleted": {table: rows for table, rows in deleted.items() if rows},
        },
        assets=tuple(warehouse_tables[table] for table in touched if table in warehouse_tables),
    )


def announce_rows_quarantined(batch_id: str, table: str, reasons: dict[str, int], *, asset: str) -> None:
    """Rows of a source table were set aside by a batch's transform (``reasons``: rows per reason)."""
    emit_totes_event(
        ROWS_QUARANTINED,
        resource_id=f"totes.table.{table}",
        resource_name=table,
        payload={"batch_id": batch_id, "table": table, "rows": sum(reasons.values()), "reasons": reasons},
        assets=(asset,),
    )


def announce_file_quarantined(record: QuarantineRecord) -> None:
    """A feed file's version is quarantined (first time only: it is not announced again)."""
    emit_totes_event(
        FILE_QUARANTINED,
        resource_id=f"totes.feed.{record.feed}.file.{record.file}",
        resource_name=record.file,
        payload=asdict(record),
    )


def announce_schema_drift(source: str, *, problems: list[str], stopped: bool) -> None:
    """The source differs from the model: ``stopped`` (a missing table, column or a changed type:
    nothing read) or not (new columns, each announced once)."""
    emit_totes_event(
        SCHEMA_DRIFT,
        resource_id=f"totes.source.{source}",
        resource_name=source,
        payload={"problems": problems, "stopped": stopped},
    )
