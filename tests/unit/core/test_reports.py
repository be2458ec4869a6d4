"""The run report (tasks/core/reports.py)."""

from __future__ import annotations

from datetime import datetime, timedelta

from tasks.core.reports import RunSummary

NOW = datetime(2024, 2, 23, 12, 0, 0)


def test_run_report_shows_counts_freshness_and_warnings():
    summary = RunSummary(
        ingested={"sales_order": 5},
        transformed={"fact_sales_order": 5},
        loaded={"fact_sales_order": 4},
        batches_loaded=["00000002-20240223T120000Z"],
        warnings=["currency code 'XYZ' is not ISO 4217: loaded as 'Unknown'"],
        source_horizon=NOW,
        finished_at=NOW + timedelta(seconds=42),
    )
    markdown = summary.as_markdown()
    assert "| sales_order | 5 |" in markdown
    assert "| fact_sales_order | 5 | 4 |" in markdown
    assert "42 s before this run ended" in markdown
    assert "- currency code 'XYZ'" in markdown
    assert summary.freshness_seconds == 42
    assert "42 s behind" in summary.as_text()
