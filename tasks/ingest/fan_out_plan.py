"""How many rows each table's read will take, and what follows from it: which tables are worth a
fan-out child (a child run costs its start-up, ~5 s on a local process pool, tens of seconds for an
ECS task, before it reads a row, so only a table this run will read many rows of gets one; the rest
are read in the cycle's own process), and in which order, how many at once, the cycle reads. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tasks.core.manifests import Horizon, RawTableEntry
from tasks.ingest.watermark import is_unchanged, writes_since


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
    written = writes_since(previous.activity, activity)
    if written is None:
        return table_rows
    return written.inserted + written.updated


def estimate_reads(
    previous: dict[str, RawTableEntry], horizon: Horizon, tables: list[str], *, recheck_seconds: float
) -> dict[str, int]:
    """Per table of ``tables``, the rows this run is estimated to read (:func:`estimated_rows_to_read`)."""
    return {
        name: estimated_rows_to_read(
            previous.get(name),
            horizon.activity.get(name),
            horizon.table_rows.get(name, 0),
            horizon.clock_at,
            recheck_seconds,
        )
        for name in tables
    }


def plan_fan_out(
    previous: dict[str, RawTableEntry], horizon: Horizon, tables: list[str], *, min_rows: int, recheck_seconds: float
) -> FanOutPlan:
    """Which of ``tables`` get a child run: those this run will read at least ``min_rows`` rows of
    (every one with ``min_rows`` 0)."""
    estimated = estimate_reads(previous, horizon, tables, recheck_seconds=recheck_seconds)
    children = frozenset(name for name, rows in estimated.items() if min_rows == 0 or rows >= min_rows)
    return FanOutPlan(estimated, children)


# A table read of at least this many rows holds a few hundred MiB while it runs (its content index,
# its keys, the driver's and Parquet's buffers): two of them at once, not four, keep a full load's
# peak memory flat, and cost no time on two cores (measured at scale 300: 695 MiB and 37.4 s with
# two reads at once, 992 MiB and 35.3 s with four).
BIG_READ_ROWS = 1_000_000


def reads_biggest_first(estimated_rows: dict[str, int], *, big_weight: int = 2) -> list[tuple[str, int]]:
    """The tables in the order to read them — the longest reads first, so that the small ones fill
    in beside them — each with its weight against the reads at once: ``big_weight`` for a big read
    (2 of 4 slots: two at once; 3: one at a time, small ones beside it), 1 otherwise."""
    order = sorted(estimated_rows, key=lambda name: -estimated_rows[name])
    return [(name, big_weight if estimated_rows[name] >= BIG_READ_ROWS else 1) for name in order]
