"""The current version of a row is the content the lake observed last, whatever its stamp and whether
that content was seen before: a row restored to an earlier version, or reverted in place to old
content with its old stamp, is current again with that content — after the run that reads it, after
a backfill and after a rebuild from the lake alone.

(On the code before, the older version kept its old batch id when it was observed again, so the
newer version — deleted, or replaced in the source — stayed "latest" in ``current_fact_*``.)"""

from __future__ import annotations

from flows.etl import rebuild_warehouse, totesys_etl
from tests.integration.conftest import execute, rows_as_text, scalar

ORDER = 7
COLUMNS = "units_sold, unit_price, design_id, last_updated_date, last_updated_time"


def current(url: str) -> set[str]:
    return set(rows_as_text(url, f"select {COLUMNS} from current_fact_sales_order where sales_order_id = {ORDER}"))


def saved_version(url: str) -> set[str]:
    """Order 7 as the source holds it, in the warehouse's columns."""
    query = (
        "select units_sold, unit_price, design_id, last_updated::date, "
        f"last_updated::time from sales_order where sales_order_id = {ORDER}"
    )
    return set(rows_as_text(url, query))


def test_a_row_restored_to_an_earlier_version_is_current_again(pipeline, monkeypatch):
    monkeypatch.setenv("TOTES_DELETE_CHECK_BUCKET_KEYS", "50")
    pipeline.seed(scale=0.02)
    source, url = pipeline.source_url, pipeline.warehouse_url
    execute(source, f"create table saved_order as select * from sales_order where sales_order_id = {ORDER}")
    first = saved_version(source)
    pipeline.run()
    assert current(url) == first

    execute(
        source,
        "update sales_order set units_sold = units_sold + 1000, last_updated = (now() at time zone 'UTC') "
        f"where sales_order_id = {ORDER}",
    )
    pipeline.run()
    assert current(url) != first

    execute(source, f"delete from sales_order where sales_order_id = {ORDER}")
    pipeline.run()
    assert current(url) == set()

    execute(source, "insert into sales_order select * from saved_order")
    pipeline.run()
    assert current(url) == first, "the restored row is the last observed: current again"
    assert scalar(url, f"select count(*) from fact_sales_order where sales_order_id = {ORDER}") == 2

    totesys_etl(backfill=["sales_order"])
    assert current(url) == first
    rebuild_warehouse()
    assert current(url) == first
    pipeline.checkpoint()
    pipeline.assert_warehouse_matches_source()


def test_a_row_reverted_in_place_with_its_old_stamp_is_current_after_the_deep_pass(pipeline):
    pipeline.seed(scale=0.02)
    source, url = pipeline.source_url, pipeline.warehouse_url
    execute(source, f"create table saved_order as select * from sales_order where sales_order_id = {ORDER}")
    first = saved_version(source)
    pipeline.run()
    execute(
        source,
        "update sales_order set units_sold = units_sold + 1000, last_updated = (now() at time zone 'UTC') "
        f"where sales_order_id = {ORDER}",
    )
    pipeline.run()
    newer = current(url)
    assert newer != first

    # Reverted in place: the old content and the old stamp (no delta can see it).
    execute(
        source,
        "update sales_order as o set units_sold = s.units_sold, last_updated = s.last_updated "
        f"from saved_order as s where o.sales_order_id = {ORDER}",
    )
    pipeline.run()
    assert current(url) == newer, "a plain run cannot see a change behind the watermark"
    totesys_etl(reconcile=True)
    assert current(url) == first, "the deep pass observed the old content again: it is current"

    rebuild_warehouse()
    assert current(url) == first
    totesys_etl(backfill=["sales_order"])
    assert current(url) == first
