"""Progress of long streams (tasks/core/progress.py): rows so far and rows per second. No I/O."""

from __future__ import annotations

import logging

import pyarrow as pa

from tasks.core.progress import with_progress


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_a_long_stream_logs_rows_so_far_and_rows_per_second():
    batches = [pa.record_batch({"x": list(range(1000))}) for _ in range(3)]
    logger, seen = logging.getLogger("totes.locks"), Lines()  # outside a run: the module's logger
    logger.addHandler(seen)
    level, logger.level = logger.level, logging.INFO
    try:
        passed = list(with_progress(iter(batches), "sales_order: read", every=0))
    finally:
        logger.removeHandler(seen)
        logger.setLevel(level)
    assert passed == batches  # unchanged
    lines = seen.lines
    assert lines[0].startswith("sales_order: read: 1,000 rows so far (") and lines[0].endswith(" rows/s)")
    assert lines[-1].startswith("sales_order: read: 3,000 rows so far")
