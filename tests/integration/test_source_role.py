"""The pipeline needs nothing but SELECT on the source. Without pg_read_all_stats it cannot see other
sessions' transactions, so it falls back to a fixed watermark lag, says so, and still misses nothing."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlsplit, urlunsplit

import pytest

from tasks.core.lake import RAW, Lake
from tasks.core.postgres import connect
from tests.integration.conftest import Pipeline, execute


def as_user(url: str, user: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{user}@{parts.hostname or ''}"))


def select_only_role(source_url: str) -> str:
    """A role of the source that may log in and SELECT, nothing else (no pg_read_all_stats)."""
    role = f"reader_{urlsplit(source_url).path.strip('/')[-10:]}"
    execute(
        source_url,
        f'create role "{role}" login',
        f'grant usage on schema public to "{role}"',
        f'grant select on all tables in schema public to "{role}"',
    )
    return role


def test_select_only_role_runs_the_pipeline_with_the_fallback_lag(databases, s3_lake_url, prefect_api, monkeypatch):
    pipeline = Pipeline(databases.source_url, databases.warehouse_url, s3_lake_url, monkeypatch)
    pipeline.seed(scale=0.02)
    role = select_only_role(databases.source_url)
    reader_url = as_user(databases.source_url, role)
    with connect(reader_url) as reader, reader.cursor() as cursor, pytest.raises(Exception, match="permission denied"):
        cursor.execute("insert into currency (currency_code, last_updated) values ('XXX', now())")
    monkeypatch.setenv("TOTES_SOURCE_URL", reader_url)

    # Another user's open session that the reader cannot see into.
    other = connect(databases.source_url)
    try:
        with other.cursor() as cursor:
            cursor.execute("select 1")
            cursor.fetchall()
        pipeline.run()
        pipeline.churn(orders=10)
        pipeline.run()
    finally:
        other.close()

    lake = Lake.from_url(s3_lake_url)
    manifest = lake.read_manifest(RAW, lake.list_batches(RAW)[-1])
    clock = datetime.fromisoformat(manifest["horizon"]["clock_at"])
    watermark = datetime.fromisoformat(manifest["tables"]["sales_order"]["watermark"])
    assert (clock - watermark).total_seconds() >= 900  # the fixed fallback lag, not the clock
    pipeline.assert_warehouse_matches_source()


def test_a_fan_out_child_keeps_the_fallback_lag_of_a_role_that_cannot_see_other_sessions(
    databases, s3_lake_url, prefect_api, monkeypatch
):
    """A fan-out child gets the cycle's horizon as JSON. It used to lose ``has_hidden_sessions`` on
    the way, so a child read "since 06:08:34 ... next watermark 06:09:53" while the cycle warned of a
    900 s lag, and a transaction committed after the run was never read. The child here is the
    ``extract-table`` flow itself, run in this process with the parameters the cycle sends."""
    from flows.fan_out import extract_table
    from tasks.ingest.tasks import plan_ingest_batch, read_horizon

    pipeline = Pipeline(databases.source_url, databases.warehouse_url, s3_lake_url, monkeypatch)
    pipeline.seed(scale=0.02)
    role = select_only_role(databases.source_url)
    monkeypatch.setenv("TOTES_SOURCE_URL", as_user(databases.source_url, role))
    other = connect(databases.source_url)  # another user's session, which the reader cannot see into
    try:
        with other.cursor() as cursor:
            cursor.execute("select 1")
            cursor.fetchall()
        pipeline.run()
        pipeline.churn(orders=3)
        plan = plan_ingest_batch()
        horizon = read_horizon()
        assert horizon.has_hidden_sessions
        extract_table(
            table="sales_order",
            batch_id=plan.batch_id,
            previous_batch_id=plan.previous_batch_id,
            horizon=horizon.to_json(),
        )
    finally:
        other.close()
    lake = Lake.from_url(s3_lake_url)
    entry = lake.read_extracted_table(plan.batch_id, "sales_order")
    assert (horizon.clock_at - entry.watermark).total_seconds() >= 900, entry.watermark
