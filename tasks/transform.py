"""Transform stage: read a raw batch from the lake, build its star tables, write them back.

Star batches are built strictly in batch order: each one starts from the previous one's *join
state* (the latest address, counterparty, department and staff rows, kept in the star zone) and
dim_date range, so rebuilding the warehouse from the lake alone gives the same rows.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import polars as pl
import pyarrow as pa
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.faults import RETRY_POLICY
from tasks.lake import RAW, STAR, Lake, batch_sequence
from tasks.model import build_star, latest_versions
from tasks.schema import SOURCE_TABLES, STAR_TABLES
from tasks.settings import load_settings

# Source tables other dimensions join to; their latest rows travel from batch to batch.
JOIN_STATE_TABLES = ("address", "counterparty", "department", "staff")


def _state_name(table: str) -> str:
    return f"_state_{table}"


def pending_transform_batches(lake: Lake) -> list[str]:
    """Raw batches without a star batch, oldest first."""
    done = set(lake.list_batches(STAR))
    return [batch for batch in lake.list_batches(RAW) if batch not in done]


def _previous_star_manifest(lake: Lake, batch_id: str) -> dict | None:
    earlier = [b for b in lake.list_batches(STAR) if batch_sequence(b) < batch_sequence(batch_id)]
    return lake.read_manifest(STAR, earlier[-1]) if earlier else None


def _to_star_arrow(frame: pl.DataFrame, table: str) -> pa.Table:
    return frame.to_arrow().cast(STAR_TABLES[table].schema)


@task(name="transform-batch", task_run_name="transform-{batch_id}", cache_policy=NO_CACHE, **RETRY_POLICY)
def transform_batch(batch_id: str) -> tuple[dict[str, int], list[str]]:
    """Build and write the star tables of one raw batch; return the rows built per star table and
    the batch's data-quality warnings."""
    logger = get_run_logger()
    lake = Lake.from_url(load_settings().lake_url)
    raw = lake.read_manifest(RAW, batch_id)
    delta = {
        name: pl.from_arrow(lake.read_table(raw["tables"].get(name, {}).get("files", []), spec.schema))
        for name, spec in SOURCE_TABLES.items()
    }
    previous = _previous_star_manifest(lake, batch_id)
    history = {}
    for name in JOIN_STATE_TABLES:
        files = previous["state"][name] if previous else []
        carried = pl.from_arrow(lake.read_table(files, SOURCE_TABLES[name].schema))
        history[name] = latest_versions(pl.concat([carried, delta[name]]), SOURCE_TABLES[name].key[0])
    covered = None
    if previous and previous.get("date_range"):
        covered = tuple(date.fromisoformat(d) for d in previous["date_range"])

    star = build_star(delta, history, covered_dates=covered)
    for warning in star.warnings:
        logger.warning("Data quality, batch %s: %s", batch_id, warning)

    tables, counts = {}, {}
    for name, frame in star.tables.items():
        files = lake.write_table(STAR, name, batch_id, _to_star_arrow(frame, name)) if frame.height else []
        tables[name] = {"files": files, "rows": frame.height}
        counts[name] = frame.height
    state = {}
    for name in JOIN_STATE_TABLES:
        changed = delta[name].height > 0 or previous is None
        state[name] = (
            lake.write_table(STAR, _state_name(name), batch_id, history[name].to_arrow().cast(SOURCE_TABLES[name].schema))
            if changed and history[name].height
            else (previous["state"][name] if previous else [])
        )
    lake.write_manifest(
        STAR,
        batch_id,
        {
            "batch_id": batch_id,
            "written_at": datetime.now(UTC).isoformat(),
            "tables": tables,
            "state": state,
            "date_range": [d.isoformat() for d in star.date_range] if star.date_range else None,
            "warnings": star.warnings,
        },
    )
    logger.info(
        "Batch %s transformed: %s",
        batch_id,
        ", ".join(f"{name} {rows}" for name, rows in counts.items() if rows) or "no star rows",
    )
    return counts, star.warnings


@task(name="list-pending-transforms", cache_policy=NO_CACHE, **RETRY_POLICY)
def list_pending_transforms() -> list[str]:
    """Raw batches that have no star batch yet, oldest first."""
    return pending_transform_batches(Lake.from_url(load_settings().lake_url))
