"""What `totes` prints by default: progress of long streams, and the filter that keeps the stages,
progress, warnings and errors and drops Prefect's per-run chatter. No I/O."""

from __future__ import annotations

import logging

import pyarrow as pa
import pytest

from flows.logs import ReadableRunLogs
from tasks.core.progress import with_progress

pytestmark = pytest.mark.unit


def record(name: str, level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, (), None)


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


def test_the_default_output_keeps_stages_progress_and_warnings_and_drops_run_chatter():
    keep = ReadableRunLogs().filter
    assert keep(record("prefect.flow_runs", logging.INFO, "Ingest: done in 2.1 s"))
    assert keep(record("prefect.task_runs", logging.INFO, "payment: read: 200,000 rows so far (90,000 rows/s)"))
    assert keep(record("prefect.task_runs", logging.WARNING, "Data quality, batch 1: staff: 1 row(s) rejected"))
    assert not keep(record("prefect.task_runs", logging.INFO, "Finished in state Completed()"))
    assert not keep(record("prefect.flow_runs", logging.INFO, "Beginning flow run 'x' for flow 'totesys-etl'"))
    assert not keep(record("prefect.task_runs", logging.INFO, "Batch 1 loaded: fact_payment 10"))  # in the report
    alert = record("totes.alerts", logging.WARNING, "totes: totesys-etl loaded with 1 warning\n\nthe details")
    assert keep(alert) and alert.getMessage() == "totes: totesys-etl loaded with 1 warning"
