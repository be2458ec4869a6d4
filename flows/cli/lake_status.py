"""Where the lake stands, for ``totes status``: per source table its watermark and latest rows, the
batches the transform has still to do, and the rows set aside with their reasons. Reads manifests
(the most recent ones: a lake keeps every batch for good) and the reason column of set-aside rows.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from tasks.core.lake import RAW, STAR, Lake, batch_sequence
from tasks.core.manifests import RawManifest, StarManifest
from tasks.schema import SOURCE_TABLES


@dataclass(frozen=True)
class SourceTableStatus:
    """One source table as the lake has it.

    Attributes:
        watermark: where its next delta read starts (None: never read).
        rows_in_last_batch: the versions the latest batch read.
        last_changed_batch: the latest of the recent batches that brought it versions.
        rows_when_last_changed: the versions that batch read.
        quarantined_rows: rows set aside (unreadable, invalid, conflicting) in the recent batches.
        quarantine_reasons: those rows per reason.
    """

    table: str
    watermark: datetime | None = None
    rows_in_last_batch: int = 0
    last_changed_batch: str | None = None
    rows_when_last_changed: int = 0
    deleted_in_recent_batches: int = 0
    quarantined_rows: int = 0
    quarantine_reasons: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class LakeStatus:
    """The lake's batches and tables. ``recent_batches``: how many of the latest batches the
    per-table history (last change, deletes, quarantine) looked at."""

    raw_count: int
    star_count: int
    raw_batches: list[str]  # the recent ones
    star_batches: list[str]  # the recent ones
    pending_transform: list[str]
    source_clock_at: datetime | None
    recent_batches: int
    tables: list[SourceTableStatus]

    @property
    def last_batch(self) -> str | None:
        return self.raw_batches[-1] if self.raw_batches else None


def read_lake_status(lake: Lake, *, recent_batches: int) -> LakeStatus:
    """The lake's state from its manifests: the latest raw manifest for the watermarks, the latest
    ``recent_batches`` raw and star manifests for each table's history."""
    # Batch sequence numbers run from 1 without gaps: the newest's is the count, and only the
    # recent batches are listed (a year of 15-minute batches is 35,000 manifests).
    newest_raw, newest_star = lake.newest_batch(RAW), lake.newest_batch(STAR)
    raw_batches = _recent(lake, RAW, newest_raw, recent_batches)
    star_batches = _recent(lake, STAR, newest_star, recent_batches)
    recent_raw = [lake.read_raw_manifest(batch) for batch in raw_batches]
    recent_star = [lake.read_star_manifest(batch) for batch in star_batches]
    latest = recent_raw[-1] if recent_raw else None
    return LakeStatus(
        raw_count=batch_sequence(newest_raw) if newest_raw else 0,
        star_count=batch_sequence(newest_star) if newest_star else 0,
        raw_batches=raw_batches,
        star_batches=star_batches,
        pending_transform=lake.list_batches(RAW, after=newest_star),
        source_clock_at=latest.horizon.clock_at if latest and latest.horizon else None,
        recent_batches=recent_batches,
        tables=[_table_status(lake, name, recent_raw, recent_star) for name in SOURCE_TABLES],
    )


def _recent(lake: Lake, zone: str, newest: str | None, count: int) -> list[str]:
    if newest is None or count <= 0:
        return []
    return lake.list_batches(zone, from_sequence=max(1, batch_sequence(newest) - count + 1))


def _table_status(lake: Lake, table: str, raw: list[RawManifest], star: list[StarManifest]) -> SourceTableStatus:
    latest = raw[-1].tables.get(table) if raw else None
    changed = next((manifest for manifest in reversed(raw) if _rows(manifest, table)), None)
    reasons: Counter[str] = Counter()
    for manifest in star:
        if quarantined := manifest.quarantined.get(table):
            reasons.update(lake.set_aside_reasons(quarantined))
    return SourceTableStatus(
        table=table,
        watermark=latest.watermark if latest else None,
        rows_in_last_batch=latest.data.rows if latest else 0,
        last_changed_batch=changed.batch_id if changed else None,
        rows_when_last_changed=_rows(changed, table) if changed else 0,
        deleted_in_recent_batches=sum(
            entry.deleted.rows for m in raw if (entry := m.tables.get(table)) and entry.deleted
        ),
        quarantined_rows=sum(reasons.values()),
        quarantine_reasons=dict(reasons.most_common()),
    )


def _rows(manifest: RawManifest, table: str) -> int:
    entry = manifest.tables.get(table)
    return entry.data.rows if entry else 0
