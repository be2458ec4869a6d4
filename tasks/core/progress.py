"""Progress of a long stream in the run's log: rows so far and rows per second, every few seconds,
so a full load that takes minutes says how it is doing (a short one says nothing extra)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Protocol, TypeVar

from tasks.core.locks import run_logger

# How often a stream says how far it has got (seconds).
PROGRESS_EVERY_SECONDS = 5.0


class _HasRows(Protocol):
    @property
    def num_rows(self) -> int: ...


Rows = TypeVar("Rows", bound=_HasRows)


def with_progress(batches: Iterable[Rows], what: str, *, every: float = PROGRESS_EVERY_SECONDS) -> Iterator[Rows]:
    """The record batches unchanged, logging "<what>: 1,200,000 rows so far (240,000 rows/s)"
    every ``every`` seconds while they flow (``what`` e.g. "sales_order: read")."""
    started = last = time.monotonic()
    rows = 0
    for batch in batches:
        yield batch
        rows += batch.num_rows
        now = time.monotonic()
        if now - last >= every:
            last = now
            run_logger().info("%s: %s rows so far (%s rows/s)", what, f"{rows:,}", f"{rows / (now - started):,.0f}")
