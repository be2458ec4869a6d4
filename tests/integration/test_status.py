"""``totes status``: where the pipeline stands, read from the lake, the warehouse and the Prefect API
only (the source's URL is not even set), as text and as JSON."""

from __future__ import annotations

import json

from tests.integration.conftest import execute, null_units_sold


def test_status_shows_watermarks_pending_batches_freshness_set_aside_and_deleted_rows(pipeline, prefect_api):
    from flows.etl import ingest, totesys_etl

    pipeline.seed(scale=0.02)
    pipeline.run()
    execute(pipeline.source_url, *null_units_sold(3))
    pipeline.churn(orders=10)  # ... which cancels one unpaid order: its rows are deleted in the source
    totesys_etl()
    pipeline.churn(orders=5)
    ingest()  # a batch read but neither transformed nor loaded

    child = pipeline.run_cli("status", "--json", env={"PREFECT_API_URL": prefect_api, "TOTES_SOURCE_URL": None})
    out, err = child.communicate(timeout=300)
    assert child.returncode == 0, err
    status = json.loads(out)

    assert status["lake"]["raw_batches"] == 3 and status["lake"]["star_batches"] == 2
    (pending,) = status["pending"]["transform"]
    assert pending == status["lake"]["last_batch"]
    assert status["pending"]["load"] == []
    tables = {table["table"]: table for table in status["source_tables"]}
    assert tables["sales_order"]["watermark"] is not None
    assert tables["sales_order"]["rows_in_last_batch"] >= 5
    assert tables["sales_order"]["last_changed_batch"] == pending
    assert tables["sales_order"]["quarantined_rows"] == 1
    (reason,) = tables["sales_order"]["quarantine_reasons"]
    print(f"the reason given: {reason}")
    assert tables["sales_order"]["deleted_in_recent_batches"] >= 1
    warehouse = status["warehouse"]
    assert warehouse["created"] and warehouse["batches_loaded"] == 2
    assert warehouse["data_as_of"] is None  # the warehouse lags the lake by the pending batch
    star = {table["table"]: table for table in warehouse["star_tables"]}
    assert star["fact_sales_order"]["deleted"] >= 1
    assert star["fact_sales_order"]["rows"] > 0
    assert isinstance(status["slots"]["prefect_limits"], list)

    pipeline.run()
    child = pipeline.run_cli("status", env={"PREFECT_API_URL": prefect_api, "TOTES_SOURCE_URL": None})
    out, err = child.communicate(timeout=300)
    assert child.returncode == 0, err
    assert "Pending: transform none; load none" in out
    assert "Warehouse: " in out and "batch(es) loaded" in out
    assert "sales_order: 1 × " in out
