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

from tasks.extract import unreadable_schema
from tasks.faults import RETRY_POLICY
from tasks.lake import RAW, STAR, Lake, batch_sequence
from tasks.model import (
    ROW_WISE_BUILDERS,
    build_dim_date_extension,
    build_joined_dimensions,
    build_row_wise,
    describe_rejections,
    latest_versions,
    referenced_date_range,
    split_invalid_rows,
    split_orphans,
    widen_date_range,
)
from tasks.schema import DELETES_MARK, SOURCE_TABLES, STAR_TABLES, deleted_marks_schema
from tasks.settings import load_settings

# Source tables other dimensions join to; their latest rows travel from batch to batch.
JOIN_STATE_TABLES = ("address", "counterparty", "department", "staff")
# Those among them that are rebuilt when their parent changes (their hard-deleted rows leave the state).
CHILD_STATE_TABLES = ("counterparty", "staff")


def _state_name(table: str) -> str:
    return f"_state_{table}"


def _quarantine_name(table: str) -> str:
    return f"_quarantine_{table}"


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
    the batch's data-quality warnings.

    Facts and dim_transaction are built one raw file at a time (memory bounded by the file size,
    not the batch); the other dimensions come from small tables and are built whole.
    """
    logger = get_run_logger()
    lake = Lake.from_url(load_settings().lake_url)
    raw = lake.read_manifest(RAW, batch_id)

    def raw_files(name: str) -> list[str]:
        return raw["tables"].get(name, {}).get("files", [])

    files: dict[str, list[str]] = {name: [] for name in STAR_TABLES}
    counts: dict[str, int] = dict.fromkeys(STAR_TABLES, 0)
    quarantined: dict[str, dict] = {}
    warnings: list[str] = []

    def quarantine(source: str, rejected: pl.DataFrame) -> None:
        if rejected.height == 0:
            return
        entry = quarantined.setdefault(source, {"files": [], "rows": 0})
        entry["files"] += lake.write_table(STAR, _quarantine_name(source), batch_id, rejected.to_arrow())
        entry["rows"] += rejected.height
        warnings.append(describe_rejections(source, rejected))

    deleted_keys: dict[str, pl.Series] = {}
    deletions: dict[str, dict] = {}
    for source, entry in raw["tables"].items():
        if entry.get("rejected"):
            unreadable = lake.read_table(entry["rejected"]["files"], unreadable_schema(SOURCE_TABLES[source]))
            quarantine(source, pl.from_arrow(unreadable))
        if entry.get("deleted"):
            key = SOURCE_TABLES[source].key[0]
            marks = lake.read_table(entry["deleted"]["files"], deleted_marks_schema(key))
            deleted_keys[source] = pl.from_arrow(marks)[key]
            if star_name := DELETES_MARK.get(source):
                star_key = STAR_TABLES[star_name].key[0]
                deletions[star_name] = {
                    "files": lake.write_table(STAR, f"_deleted_{star_name}", batch_id, marks.rename_columns([star_key, "_deleted_at"])),
                    "rows": marks.num_rows,
                }

    referenced = None
    for source, (star_name, _) in ROW_WISE_BUILDERS.items():
        for raw_file in raw_files(source):
            frame = pl.from_arrow(lake.read_table([raw_file], SOURCE_TABLES[source].schema))
            frame, rejected = split_invalid_rows(frame, source)
            quarantine(source, rejected)
            _, rows = build_row_wise(source, frame)
            del frame
            if rows.height:
                files[star_name] += lake.write_table(STAR, star_name, batch_id, _to_star_arrow(rows, star_name))
                counts[star_name] += rows.height
            if star_name.startswith("fact_"):
                referenced = widen_date_range(referenced, referenced_date_range({star_name: rows}))

    small = {}
    for name, spec in SOURCE_TABLES.items():
        if name not in ROW_WISE_BUILDERS:
            small[name], rejected = split_invalid_rows(pl.from_arrow(lake.read_table(raw_files(name), spec.schema)), name)
            quarantine(name, rejected)
    previous = _previous_star_manifest(lake, batch_id)
    history = {}
    for name in JOIN_STATE_TABLES:
        carried = pl.from_arrow(lake.read_table(previous["state"][name] if previous else [], SOURCE_TABLES[name].schema))
        history[name] = latest_versions(pl.concat([carried, small[name]]), SOURCE_TABLES[name].key[0])
        if name in CHILD_STATE_TABLES and name in deleted_keys:
            # A deleted row must not come back when its parent changes; parents stay for lookups.
            history[name] = history[name].filter(~pl.col(SOURCE_TABLES[name].key[0]).is_in(deleted_keys[name].implode()))
    covered = None
    if previous and previous.get("date_range"):
        covered = tuple(date.fromisoformat(d) for d in previous["date_range"])

    # Rows naming a parent that does not exist stay in the carried state (the parent may arrive
    # later, which rebuilds them) but are left out of this batch's dimensions, with a warning.
    buildable = dict(history)
    for child, parent, foreign_key, parent_key in (
        ("staff", "department", "department_id", "department_id"),
        ("counterparty", "address", "legal_address_id", "address_id"),
    ):
        buildable[child], orphans = split_orphans(
            history[child], history[parent], foreign_key=foreign_key, parent_key=parent_key, table=parent
        )
        touched = orphans.join(small[child].select(SOURCE_TABLES[child].key[0]), on=SOURCE_TABLES[child].key[0])
        if touched.height:
            warnings.append(
                describe_rejections(child, touched, outcome="left out of the warehouse until their parent row arrives")
            )
    dims, dim_warnings = build_joined_dimensions(small, buildable)
    warnings += dim_warnings
    dims["dim_date"], date_range = build_dim_date_extension(covered, referenced)
    for warning in warnings:
        logger.warning("Data quality, batch %s: %s", batch_id, warning)
    for name, frame in dims.items():
        if frame.height:
            files[name] = lake.write_table(STAR, name, batch_id, _to_star_arrow(frame, name))
            counts[name] = frame.height

    state = {}
    for name in JOIN_STATE_TABLES:
        if previous is not None and small[name].height == 0 and name not in deleted_keys:
            state[name] = previous["state"][name]
        elif history[name].height:
            state[name] = lake.write_table(
                STAR, _state_name(name), batch_id, history[name].to_arrow().cast(SOURCE_TABLES[name].schema)
            )
        else:
            state[name] = []
    lake.write_manifest(
        STAR,
        batch_id,
        {
            "batch_id": batch_id,
            "written_at": datetime.now(UTC).isoformat(),
            "tables": {name: {"files": files[name], "rows": counts[name]} for name in STAR_TABLES},
            "state": state,
            "date_range": [d.isoformat() for d in date_range] if date_range else None,
            "quarantined": quarantined,
            "deleted": deletions,
            "warnings": warnings,
        },
    )
    logger.info(
        "Batch %s transformed: %s",
        batch_id,
        ", ".join(f"{name} {rows}" for name, rows in counts.items() if rows) or "no star rows",
    )
    return counts, warnings


@task(name="list-pending-transforms", cache_policy=NO_CACHE, **RETRY_POLICY)
def list_pending_transforms() -> list[str]:
    """Raw batches that have no star batch yet, oldest first."""
    lake = Lake.from_url(load_settings().lake_url)
    lake.require_bucket()
    return pending_transform_batches(lake)
