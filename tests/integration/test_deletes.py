"""Hard deletes in the source, found without CDC by comparing key sets range by range: dimension
rows and the latest fact version are marked ``_deleted_at``, nothing is removed, the current_*
views give the undeleted state, and a key that comes back is current again."""

from __future__ import annotations

from tasks.core.lake import RAW, Lake
from tests.integration.conftest import execute, rows_as_text, scalar

LATEST_VERSION_IS_MARKED = """
select _deleted_at is not null from fact_sales_order where sales_order_id = $1
order by last_updated_date desc, last_updated_time desc limit 1
"""


def keys(url: str, query: str) -> set[int]:
    return {int(row.strip("()")) for row in rows_as_text(url, query)}


def test_hard_deletes_are_marked_never_removed_and_a_key_that_returns_is_current(pipeline, monkeypatch):
    # Narrow ranges so that the source spans many of them and most compare equal.
    monkeypatch.setenv("TOTES_DELETE_CHECK_BUCKET_KEYS", "50")
    pipeline.seed(scale=0.02)
    pipeline.run()
    pipeline.churn(orders=10)  # amends orders: some have two versions now (and cancels one)
    pipeline.run()
    amended = scalar(
        pipeline.warehouse_url,
        "select sales_order_id from fact_sales_order group by 1 having count(*) > 1 order by 1 limit 1",
    )
    facts_before = scalar(pipeline.warehouse_url, "select count(*) from fact_sales_order")
    design = scalar(pipeline.source_url, "select max(design_id) from design")
    unpaid = scalar(  # a payment of another order than the amended one: four distinct deletes
        pipeline.source_url,
        "select t.transaction_id from payment p join transaction t using (transaction_id) "
        "where t.sales_order_id is not null and t.sales_order_id <> $1 order by 1 limit 1",
        amended,
    )
    order_of_unpaid = scalar(
        pipeline.source_url, "select sales_order_id from transaction where transaction_id = $1", unpaid
    )
    # The source's foreign keys would refuse some of these deletes; a real ToteSys has none.
    execute(
        pipeline.source_url,
        "set session_replication_role = replica",
        f"delete from sales_order where sales_order_id = {amended}",
        f"delete from payment where transaction_id = {unpaid}",
        f"delete from transaction where transaction_id = {unpaid}",
        f"delete from sales_order where sales_order_id = {order_of_unpaid}",
        f"delete from design where design_id = {design}",
    )

    summary = pipeline.run()

    url = pipeline.warehouse_url
    assert summary.deleted == {
        "fact_sales_order": 2,
        "fact_payment": 1,
        "dim_transaction": 1,
        "dim_design": 1,
    }, summary.deleted
    assert "deleted in the source, marked _deleted_at" in summary.as_text()
    # Nothing removed: every fact version is still there; only the latest of a deleted key is marked.
    assert scalar(url, "select count(*) from fact_sales_order") == facts_before
    assert scalar(url, LATEST_VERSION_IS_MARKED, amended) is True
    assert scalar(url, "select count(*) from fact_sales_order where sales_order_id = $1", amended) >= 2
    assert (
        scalar(
            url, f"select count(*) from fact_sales_order where sales_order_id = {amended} and _deleted_at is not null"
        )
        == 1
    )
    # The current state is the source's.
    for fact, key, source in (
        ("fact_sales_order", "sales_order_id", "sales_order"),
        ("fact_payment", "payment_id", "payment"),
    ):
        assert keys(url, f"select {key} from current_{fact}") == keys(
            pipeline.source_url, f"select {key} from {source}"
        )
    assert keys(url, "select design_id from current_dim_design") == keys(
        pipeline.source_url, "select design_id from design"
    )
    assert scalar(url, f"select _deleted_at is not null from dim_design where design_id = {design}") is True
    pipeline.assert_warehouse_matches_source()

    # A run with nothing deleted or changed: nothing more marked, no new batch in the lake.
    lake = Lake.from_url(pipeline.lake_url)
    batches = lake.list_batches(RAW)
    marked = scalar(url, "select count(*) from fact_sales_order where _deleted_at is not null")
    assert pipeline.run().deleted == {}
    lake.fs.invalidate_cache()
    assert lake.list_batches(RAW) == batches
    assert scalar(url, "select count(*) from fact_sales_order where _deleted_at is not null") == marked

    # The deleted design comes back (re-inserted with its old id): current again.
    execute(
        pipeline.source_url,
        "insert into design (design_id, design_name, file_location, file_name, created_at, last_updated) "
        f"values ({design}, 'Back again', '/designs', 'back.jpg', now(), now())",
    )
    pipeline.run()
    assert (
        scalar(
            url, f"select _deleted_at is null and design_name = 'Back again' from dim_design where design_id = {design}"
        )
        is True
    )
    pipeline.assert_warehouse_matches_source()

    # The lake alone rebuilds the same marks, after they were damaged.
    from flows.etl import rebuild_warehouse

    before = pipeline.snapshot()
    execute(url, "update fact_sales_order set _deleted_at = null", "update dim_design set _deleted_at = now()")
    rebuild_warehouse()
    assert pipeline.snapshot() == before


def test_rows_arriving_with_old_stamps_are_read_and_a_deleted_row_inserted_again_is_current(pipeline, monkeypatch):
    """Rows no delta can read, because they are stamped before the watermark: a historical import (a
    design and an order with 2022 stamps), and a cancelled order inserted again with its original
    stamps (a restore). The key-range check finds keys the source holds and the lake does not, and
    reads them; the order inserted again is current, no longer marked deleted."""
    monkeypatch.setenv("TOTES_DELETE_CHECK_BUCKET_KEYS", "50")
    pipeline.seed(scale=0.02)
    pipeline.run()
    url = pipeline.warehouse_url
    order = scalar(pipeline.source_url, "select min(sales_order_id) from sales_order")
    execute(
        pipeline.source_url,
        "set session_replication_role = replica",  # a real ToteSys has no foreign keys
        f"create table saved_order as select * from sales_order where sales_order_id = {order}",
        f"delete from sales_order where sales_order_id = {order}",
    )
    pipeline.run()
    assert scalar(url, LATEST_VERSION_IS_MARKED, order) is True

    execute(
        pipeline.source_url,
        "set session_replication_role = replica",
        "insert into sales_order select * from saved_order",
        "drop table saved_order",
        "insert into design (design_id, design_name, file_location, file_name, created_at, last_updated) "
        "values (9001, 'Imported', '/designs', 'imported.jpg', '2022-01-01 10:00', '2022-01-01 10:00')",
        "insert into sales_order (sales_order_id, design_id, staff_id, counterparty_id, units_sold, unit_price, "
        "currency_id, agreed_delivery_date, agreed_payment_date, agreed_delivery_location_id, created_at, last_updated) "
        "select 9001, 9001, staff_id, counterparty_id, 12, 3.50, currency_id, agreed_delivery_date, "
        "agreed_payment_date, agreed_delivery_location_id, '2022-01-01 10:00', '2022-01-01 10:00' "
        f"from sales_order where sales_order_id = {order}",
    )
    summary = pipeline.run()
    assert summary.ingested.get("sales_order") == 2 and summary.ingested.get("design") == 1, summary.ingested
    assert scalar(url, LATEST_VERSION_IS_MARKED, order) is False, "the order inserted again is still marked deleted"
    assert scalar(url, "select design_name from dim_design where design_id = 9001") == "Imported"
    assert scalar(url, "select count(*) from current_fact_sales_order where sales_order_id in ($1, 9001)", order) == 2
    pipeline.assert_warehouse_matches_source()


def test_the_source_and_the_lake_summarise_equal_key_sets_identically(databases):
    """select_key_buckets.sql and key_buckets agree on every range of a real table (otherwise every
    run would read every key: correct, but not cheap)."""
    import polars as pl

    from tasks.core.postgres import connect
    from tasks.ingest.deletes import differing_buckets, key_buckets
    from tasks.ingest.delta import INGEST_SQL
    from tasks.sandbox.totesys import seed_generated
    from tasks.schema import SOURCE_TABLES, quote_ident

    with connect(databases.source_url) as connection:
        seed_generated(connection, 0.02)
        execute(
            databases.source_url,
            "insert into design (design_id, design_name, file_location, file_name, created_at, last_updated) "
            "values (-7, 'negative', '/', 'n.jpg', now(), now()), (2147483646, 'huge', '/', 'h.jpg', now(), now())",
        )
        for name in ("sales_order", "design"):
            fields = {"table": quote_ident(name), "key": quote_ident(SOURCE_TABLES[name].key[0]), "width": 64}
            with connection.cursor() as cursor:
                cursor.execute(INGEST_SQL.read("select_key_buckets").format(**fields))
                source = pl.from_arrow(cursor.fetch_arrow_table()).cast(pl.Int64)
                cursor.execute(f"select {fields['key']} from {fields['table']}")
                keys = pl.from_arrow(cursor.fetch_arrow_table()).to_series()
            connection.rollback()
            assert source.height >= 3
            assert differing_buckets(source, key_buckets(keys, 64)) == []
            assert differing_buckets(source, key_buckets(keys.head(-1), 64)) != []


def _scans(connection, table: str) -> tuple[int, int]:
    """The index and sequential scans the server has counted on ``table``, this session's included."""
    from tasks.core.postgres import fetch_rows

    fetch_rows(connection, "select pg_stat_force_next_flush()")
    fetch_rows(connection, "select pg_stat_clear_snapshot()")
    ((index, sequential),) = fetch_rows(
        connection, "select coalesce(idx_scan, 0), seq_scan from pg_stat_user_tables where relname = $1", (table,)
    )
    return int(index), int(sequential)


def test_the_source_counts_each_key_range_through_the_key_s_index_or_in_one_scan_alike(databases):
    """The delete check's count per key range (read_source_buckets without hashes) is the lake's
    (key_buckets), whichever way the source counts: range by range through the index its key leads
    (select_key_counts_by_range.sql, a probe per range), or grouped from one scan of every key when
    no index leads with the key, or when the keys are spread so thinly that most ranges would be empty."""
    import polars as pl

    from tasks.core.postgres import connect, fetch_arrow
    from tasks.ingest.deletes import KEY_COUNTS, differing_buckets, key_buckets
    from tasks.ingest.source import read_source_buckets
    from tasks.sandbox.totesys import seed_generated
    from tasks.schema import SOURCE_TABLES

    def counts_match(connection, name: str) -> tuple[int, int]:
        """Compare the source's counts with the lake's; the index and sequential scans they took."""
        (key,) = SOURCE_TABLES[name].key
        before = _scans(connection, name)
        source = read_source_buckets(connection, SOURCE_TABLES[name], 64, hashed=False)
        after = _scans(connection, name)
        keys = pl.from_arrow(fetch_arrow(connection, f"select {key} from {name}")).to_series()  # noqa: S608
        assert source.height >= 1
        assert differing_buckets(source, key_buckets(keys, 64), KEY_COUNTS) == []
        assert differing_buckets(source, key_buckets(keys.head(-1), 64), KEY_COUNTS) != []
        return after[0] - before[0], after[1] - before[1]

    with connect(databases.source_url) as connection:
        seed_generated(connection, 0.02)
        # Big enough for the index to pay (COUNTED_BY_RANGE_FROM_ROWS), as the server estimates it.
        execute(
            databases.source_url,
            "insert into sales_order (sales_order_id, created_at, last_updated, design_id, staff_id, "
            "counterparty_id, units_sold, unit_price, currency_id, agreed_delivery_date, agreed_payment_date, "
            "agreed_delivery_location_id) select last.sales_order_id + n, created_at, last_updated, design_id, "
            "staff_id, counterparty_id, units_sold, unit_price, currency_id, agreed_delivery_date, "
            "agreed_payment_date, agreed_delivery_location_id "
            "from (select * from sales_order order by sales_order_id desc limit 1) as last, "
            "generate_series(1, 120000) as n",
            "analyze sales_order",
        )
        index_scans, scans = counts_match(connection, "sales_order")
        assert index_scans >= 2 and scans == 0, "a probe of the primary key per range, no scan of the table"

        execute(databases.source_url, "alter table sales_order drop constraint sales_order_pkey cascade")
        assert counts_match(connection, "sales_order") == (0, 1), "no index on the key: one scan"
        assert counts_match(connection, "design") == (0, 1), "a small table: one scan"

        execute(
            databases.source_url,
            "insert into design (design_id, design_name, file_location, file_name, created_at, last_updated) "
            "values (-7, 'negative', '/', 'n.jpg', now(), now()), (2147483646, 'huge', '/', 'h.jpg', now(), now())",
            "insert into design (design_id, design_name, file_location, file_name, created_at, last_updated) "
            "select 3000000 + n, 'many', '/', 'm.jpg', now(), now() from generate_series(1, 120000) as n",
            "analyze design",
        )
        # Its lowest and highest keys from the index, then one scan rather than 33 M probes.
        assert counts_match(connection, "design") == (2, 1), "keys spread over 2^31: one scan"
