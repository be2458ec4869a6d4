"""A source whose audit columns are ``timestamp`` (a wall time, no zone) and whose database TimeZone
is not UTC: a writer's ``now()`` stores the local wall time, which totes would read as UTC, so west
of UTC every update falls behind the watermark and is missed until the deep pass (issue 21, item
10). totes checks the default TimeZone and the audit columns' types at the start of every run and
refuses the combination, naming the fix; ``TOTES_SOURCE_STAMPS_ARE_UTC`` declares writers that store
UTC whatever the TimeZone. (``timestamptz`` audit columns are safe in any TimeZone: see
``test_pipeline.py``.)
"""

from __future__ import annotations

from tasks.core.lake import RAW, Lake
from tests.integration.conftest import execute


def set_time_zone(url: str, zone: str) -> None:
    """The database's default TimeZone, as ALTER DATABASE sets it (new sessions get it)."""
    execute(
        url,
        f"do $$ begin execute format('alter database %I set timezone to %L', current_database(), '{zone}'); end $$",
    )


def test_timestamp_audit_columns_in_a_time_zone_west_of_utc_are_refused_unless_declared_utc(
    pipeline, prefect_api, monkeypatch
):
    pipeline.seed(scale=0.02)
    set_time_zone(pipeline.source_url, "America/New_York")

    child = pipeline.run_cli("run", env={"PREFECT_API_URL": prefect_api})
    _, err = child.communicate(timeout=300)

    assert child.returncode == 1, err

    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(
        "totes run: failed: SourceInLocalTime: the source database's default TimeZone is America/New_York and its "
        "audit columns (address.created_at, address.last_updated, counterparty.created_at and 19 more) are "
        "timestamp without time zone"
    ), last
    assert "SET timezone TO 'UTC'" in last and "TOTES_SOURCE_STAMPS_ARE_UTC=true" in last, last
    assert Lake.from_url(pipeline.lake_url).list_batches(RAW) == []

    # The development ToteSys's writers store UTC (now() at time zone 'UTC'): declared, runs go on.
    monkeypatch.setenv("TOTES_SOURCE_STAMPS_ARE_UTC", "true")
    pipeline.run()
    pipeline.churn(orders=5)
    pipeline.run()
    pipeline.assert_warehouse_matches_source()

    # The fix the refusal names works without the declaration.
    monkeypatch.delenv("TOTES_SOURCE_STAMPS_ARE_UTC")
    set_time_zone(pipeline.source_url, "UTC")
    pipeline.churn(orders=5)
    pipeline.run()
    pipeline.assert_warehouse_matches_source()
