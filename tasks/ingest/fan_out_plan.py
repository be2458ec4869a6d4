"""Which tables are worth a fan-out child: a child run costs its start-up (~5 s on a local process
pool, tens of seconds for an ECS task) before it reads a row, so only a table this run will read
many rows of gets one; the rest are read in the cycle's own process. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tasks.core.manifests import Horizon, RawTableEntry
from tasks.ingest.watermark import is_unchanged


@dataclass(frozen=True)
class FanOutPlan:
    """Per source table, the rows this run is estimated to read, and which tables get a child."""

    estimated_rows: dict[str, int]
    children: frozenset[str]

    def here(self) -> list[str]:
        """The tables read in the cycle's own process, in the plan's order."""
        return [name for name in self.estimated_rows if name not in self.children]

    def describe(self) -> str:
        """One line for the log: the children with their estimates, and how many tables stay here."""
        children = ", ".join(f"{name} (~{self.estimated_rows[name]:,} rows)" for name in sorted(self.children))
        nothing = sum(1 for name in self.here() if self.estimated_rows[name] == 0)
        return (
            f"{len(self.children)} table(s) on the work pool{': ' + children if children else ''}; "
            f"{len(self.here())} read here ({nothing} with no write since their last read)"
        )


def _writes(signature: str | None) -> tuple[int, str] | None:
    """Inserted + updated rows counted in an activity signature, and what they count from (the
    table's file and the statistics' reset); None if there is none to compare."""
    if not signature:
        return None
    parts = signature.split(":")
    if len(parts) < 3 or not (parts[0].isdigit() and parts[1].isdigit()):
        return None
    return int(parts[0]) + int(parts[1]), ":".join(parts[3:])


def estimated_rows_to_read(
    previous: RawTableEntry | None, activity: str | None, table_rows: int, now: datetime, recheck_seconds: float
) -> int:
    """The rows this run will read of one table: none if nobody wrote it since its last read; the rows
    written since then when the server's counts say so (inserted + updated); otherwise (a first read,
    a new file, reset statistics, counters not to be trusted now) all of them."""
    if previous is None:
        return table_rows
    if is_unchanged(previous, activity, now, recheck_seconds):
        return 0
    now_writes, before = _writes(activity), _writes(previous.activity)
    if now_writes is None or before is None or now_writes[1] != before[1] or now_writes[0] < before[0]:
        return table_rows
    return now_writes[0] - before[0]


def plan_fan_out(
    previous: dict[str, RawTableEntry], horizon: Horizon, tables: list[str], *, min_rows: int, recheck_seconds: float
) -> FanOutPlan:
    """Which of ``tables`` get a child run: those this run will read at least ``min_rows`` rows of
    (every one with ``min_rows`` 0)."""
    estimated = {
        name: estimated_rows_to_read(
            previous.get(name),
            horizon.activity.get(name),
            horizon.table_rows.get(name, 0),
            horizon.clock_at,
            recheck_seconds,
        )
        for name in tables
    }
    children = frozenset(name for name, rows in estimated.items() if min_rows == 0 or rows >= min_rows)
    return FanOutPlan(estimated, children)
