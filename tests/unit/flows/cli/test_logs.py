"""What `totes` prints by default (flows/cli/logs.py): the filter that keeps the stages, progress,
warnings and errors and drops Prefect's per-run chatter. No I/O."""

from __future__ import annotations

import logging

import pytest

from flows.cli.logs import ReadableRunLogs


def record(name: str, level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, (), None)


@pytest.mark.parametrize(
    ("logger", "level", "message", "kept"),
    [
        ("prefect.flow_runs", logging.INFO, "Ingest: done in 2.1 s", True),
        ("prefect.task_runs", logging.INFO, "payment: read: 200,000 rows so far (90,000 rows/s)", True),
        ("prefect.task_runs", logging.WARNING, "Data quality, batch 1: staff: 1 row(s) rejected", True),
        ("prefect.task_runs", logging.INFO, "Finished in state Completed()", False),
        ("prefect.flow_runs", logging.INFO, "Beginning flow run 'x' for flow 'totesys-etl'", False),
        ("prefect.task_runs", logging.INFO, "Batch 1 loaded: fact_payment 10", False),  # in the report
    ],
    ids=["stage", "progress", "warning", "task state", "flow run start", "loaded counts"],
)
def test_the_default_output_keeps_stages_progress_and_warnings_and_drops_run_chatter(logger, level, message, kept):
    assert bool(ReadableRunLogs().filter(record(logger, level, message))) is kept


def test_an_alert_is_kept_as_its_first_line():
    alert = record("totes.alerts", logging.WARNING, "totes: totesys-etl loaded with 1 warning\n\nthe details")
    assert ReadableRunLogs().filter(alert) and alert.getMessage() == "totes: totesys-etl loaded with 1 warning"
