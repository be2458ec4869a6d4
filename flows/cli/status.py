"""``totes status``: where the pipeline stands, from the lake, the warehouse and the Prefect API
alone (no source connection): per source table its watermark and latest rows; the batches waiting
for the transform and the load; the warehouse's freshness; rows marked deleted and inferred members
per star table; rows set aside per table and feed files quarantined, with their reasons; and the
database connection slots in use."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from flows.cli.lake_status import LakeStatus, read_lake_status
from tasks.core.concurrency import SlotsInUse, prefect_slots_in_use
from tasks.core.lake import STAR, Lake
from tasks.core.lake_binding import WarehouseLake, read_warehouse_lake
from tasks.core.locks import slots_held_on
from tasks.core.manifests import QuarantineRecord
from tasks.core.postgres import connect
from tasks.feeds.declarations import load_feeds
from tasks.feeds.store import FeedStore
from tasks.load.status import WarehouseStatus, read_warehouse_status
from tasks.settings import TotesSettings, redact_url

# The per-table history (last change, deletes, rows set aside) looks at this many latest batches:
# a day of 15-minute cycles. A lake keeps every batch, and reading all their manifests grows with it.
RECENT_BATCHES = 96


@dataclass(frozen=True)
class TotesStatus:
    lake_url: str
    lake: LakeStatus
    warehouse: WarehouseStatus
    lake_id: str | None
    warehouse_lake: WarehouseLake
    pending_load: list[str]
    quarantined_files: dict[str, list[QuarantineRecord]]
    prefect_slots: list[SlotsInUse] | None
    warehouse_slots_held: int
    read_at: datetime


def read_status(settings: TotesSettings, *, recent_batches: int = RECENT_BATCHES) -> TotesStatus:
    """Read the whole status (the warehouse's star tables are counted: a few seconds on big ones)."""
    lake = Lake.from_url(settings.lake_url)
    lake.require_bucket()
    lake_status = read_lake_status(lake, recent_batches=recent_batches)
    identity = lake.read_identity()
    with connect(settings.require_warehouse_url(), purpose="warehouse database") as connection:
        warehouse = read_warehouse_status(connection)
        warehouse_lake = read_warehouse_lake(connection)
        held = slots_held_on(connection)
    store = FeedStore(settings.feed_files_url)
    return TotesStatus(
        lake_url=redact_url(settings.lake_url),
        lake=lake_status,
        warehouse=warehouse,
        lake_id=identity.lake_id if identity else None,
        warehouse_lake=warehouse_lake,
        pending_load=lake.batches_missing_from(STAR, warehouse.loaded_batches),
        quarantined_files={
            feed: sorted(records.values(), key=lambda r: (r.file, r.quarantined_at))
            for feed in load_feeds(settings.feeds_file)
            if (records := store.quarantined(feed))
        },
        prefect_slots=prefect_slots_in_use(),
        warehouse_slots_held=held,
        read_at=datetime.now(UTC),
    )


def status_json(status: TotesStatus) -> dict[str, Any]:
    """The status as JSON-ready data (``totes status --json``)."""
    lake, warehouse = status.lake, status.warehouse
    return {
        "read_at": status.read_at.isoformat(),
        "lake": {
            "url": status.lake_url,
            "id": status.lake_id,
            "raw_batches": lake.raw_count,
            "star_batches": lake.star_count,
            "last_batch": lake.last_batch,
            "source_clock_at": _iso(lake.source_clock_at),
            "recent_batches": lake.recent_batches,
        },
        "pending": {"transform": lake.pending_transform, "load": status.pending_load},
        "source_tables": [asdict(table) | {"watermark": _iso(table.watermark)} for table in lake.tables],
        "warehouse": {
            "created": warehouse.created,
            "lake_id": status.warehouse_lake.lake_id,
            "lake_url": status.warehouse_lake.lake_url,
            "batches_loaded": len(warehouse.loaded_batches),
            "last_loaded_batch": warehouse.last_loaded_batch,
            "last_loaded_at": _iso(warehouse.last_loaded_at),
            "data_as_of": _iso(lake.source_clock_at) if warehouse.last_loaded_batch == lake.last_batch else None,
            "star_tables": [asdict(table) for table in warehouse.tables],
        },
        "quarantined_files": {
            feed: [asdict(record) for record in records] for feed, records in status.quarantined_files.items()
        },
        "slots": {
            "prefect_limits": None if status.prefect_slots is None else [asdict(s) for s in status.prefect_slots],
            "warehouse_advisory_locks": status.warehouse_slots_held,
        },
    }


def status_text(status: TotesStatus) -> str:
    """The status for a person: a few lines, then one table per zone."""
    lake, warehouse = status.lake, status.warehouse
    lines = [
        f"Lake {status.lake_url}{f' (lake {status.lake_id})' if status.lake_id else ''}: "
        f"{lake.raw_count} raw batch(es), {lake.star_count} star batch(es); "
        f"last {lake.last_batch or 'none'}"
        + (f", the source as of {_when(lake.source_clock_at)}" if lake.source_clock_at else ""),
        f"Pending: transform {_batches(lake.pending_transform)}; load {_batches(status.pending_load)}",
    ]
    if not warehouse.created:
        lines.append("Warehouse: no star schema yet (no load has run)")
    else:
        lines.append(
            f"Warehouse: {len(warehouse.loaded_batches)} batch(es) loaded; last {warehouse.last_loaded_batch or 'none'}"
            + (
                f" at {_when(warehouse.last_loaded_at)} ({_ago(warehouse.last_loaded_at, status.read_at)})"
                if warehouse.last_loaded_at
                else ""
            )
        )
    bound = status.warehouse_lake
    if bound.lake_id is not None and bound.lake_id != status.lake_id:
        lines.append(
            f"The warehouse is loaded from lake {bound.lake_id} at {bound.lake_url}, not this one: "
            "run, backfill and rebuild refuse this lake"
        )
    recent = f"last {lake.recent_batches} batches"
    lines += [
        "",
        f"{'source table':<16}{'watermark':<28}{'last batch':>11}  {'last changed (rows)':<36}{'deleted*':>9}{'set aside*':>11}",
    ]
    for table in lake.tables:
        changed = f"{table.last_changed_batch} ({table.rows_when_last_changed})" if table.last_changed_batch else "-"
        lines.append(
            f"{table.table:<16}{_when(table.watermark) if table.watermark else 'never read':<28}"
            f"{table.rows_in_last_batch:>11}  {changed:<36}{table.deleted_in_recent_batches:>9}{table.quarantined_rows:>11}"
        )
    lines.append(f"* in the {recent}")
    if warehouse.tables:
        lines += ["", f"{'star table':<20}{'rows':>12}{'deleted':>10}{'inferred':>10}"]
        lines += [f"{t.table:<20}{t.rows:>12}{t.deleted:>10}{t.inferred:>10}" for t in warehouse.tables]
    reasons = [(t.table, reason, n) for t in lake.tables for reason, n in t.quarantine_reasons.items()]
    if reasons:
        lines += ["", f"Rows set aside, by reason ({recent}):"]
        lines += [f"  {table}: {n} × {reason}" for table, reason, n in reasons]
    if status.quarantined_files:
        lines += ["", "Feed files quarantined:"]
        for feed, records in status.quarantined_files.items():
            lines += [f"  {feed}: {r.file} (version {r.version[:12]}, {r.stage}): {r.problem}" for r in records]
    lines += ["", _slots_text(status)]
    return "\n".join(lines)


def _slots_text(status: TotesStatus) -> str:
    if status.prefect_slots is None:
        return (
            f"Connection slots: {status.warehouse_slots_held} of the warehouse's held (advisory locks: the local API)"
        )
    if not status.prefect_slots:
        return "Connection slots: no totes-db-… limit yet (the first run creates them)"
    return "Connection slots: " + "; ".join(f"{s.name} {s.active} of {s.limit} in use" for s in status.prefect_slots)


def _batches(batches: list[str]) -> str:
    if not batches:
        return "none"
    return f"{len(batches)} ({', '.join(batches[:3])}{', …' if len(batches) > 3 else ''})"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _ago(value: datetime, now: datetime) -> str:
    seconds = (now - (value if value.tzinfo else value.replace(tzinfo=UTC))).total_seconds()
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def behind(status: TotesStatus, *, stale_minutes: float | None, pending: bool) -> list[str]:
    """Why the warehouse counts as behind for a monitor (``totes status --fail-if-…``): its last load
    is older than ``stale_minutes`` (or there is none), or, with ``pending``, batches wait."""
    problems = []
    last = status.warehouse.last_loaded_at
    if stale_minutes is not None:
        if last is None:
            problems.append("the warehouse has loaded nothing yet")
        else:
            age = (status.read_at - (last if last.tzinfo else last.replace(tzinfo=UTC))).total_seconds() / 60
            if age > stale_minutes:
                problems.append(f"the last load was {age:.0f} min ago (more than {stale_minutes:g})")
    if pending and (status.lake.pending_transform or status.pending_load):
        problems.append(
            f"{len(status.lake.pending_transform)} batch(es) wait for the transform, {len(status.pending_load)} for the load"
        )
    return problems
