"""Changes that never touch ``last_updated``, which no delta can see: rows PostgreSQL rewrites for a
foreign key's ON DELETE SET NULL or ON UPDATE CASCADE (read again in the very run that finds the
parent deleted or changed), and manual fixes that forgot the stamp (found by the deep pass, ``totes
reconcile``, which compares every row's content hash with the one the lake last observed)."""

from __future__ import annotations

import polars as pl

from flows.etl import totesys_etl
from tasks.core.lake import RAW, Lake
from tasks.ingest.content import content_buckets, index_schema
from tasks.ingest.reconcile import read_index
from tasks.ingest.source import connect_source, read_content_buckets
from tasks.schema import SOURCE_TABLES
from tests.integration.conftest import EXPECTED, execute, rows_as_text, scalar

CURRENT_ORDER_ADDRESS = "select agreed_delivery_location_id from current_fact_sales_order where sales_order_id = $1"


def assert_dimensions_match_source(pipeline, *tables: str) -> None:
    for table in tables:
        expected = rows_as_text(pipeline.source_url, (EXPECTED / f"{table}.sql").read_text())
        actual = pipeline.warehouse_rows(table)
        assert actual == expected, f"{table}: missing {sorted((expected - actual).elements())[:2]}"


def assert_source_and_lake_summarise_contents_identically(pipeline) -> None:
    """The deep pass's premise: for unchanged tables, the server's per-range sums of the row hashes
    equal those the lake computes from the hashes it kept at extract (NULLs, text money, enums and
    booleans among the columns)."""
    lake = Lake.from_url(pipeline.lake_url)
    entries = lake.read_raw_manifest(lake.list_batches(RAW)[-1]).tables
    with connect_source(pipeline.source_url) as connection:
        for name, table in SOURCE_TABLES.items():
            index = read_index(lake, table, entries[name].content)
            source = read_content_buckets(connection, table, 100).sort("bucket")
            lake_side = content_buckets(index, table.key[0], 100).sort("bucket").select(source.columns)
            assert source.height >= 1, name
            assert source.equals(lake_side.cast(pl.Int64)), name


def test_rows_rewritten_by_foreign_key_actions_arrive_in_the_run_that_finds_the_parent_change(pipeline):
    """Deleting a sales order sets its transaction's sales_order_id to NULL (ON DELETE SET NULL), and
    changing an address's key moves every order and counterparty that uses it (ON UPDATE CASCADE):
    neither touches the children's last_updated. Before, dim_transaction kept the deleted order's id
    and the orders kept the old address for good."""
    pipeline.seed(scale=0.02)
    pipeline.run()
    source = pipeline.source_url
    order = scalar(source, "select min(sales_order_id) from transaction where sales_order_id is not null")
    transaction = scalar(source, "select transaction_id from transaction where sales_order_id = $1", order)
    address = scalar(
        source,
        "select agreed_delivery_location_id from sales_order where sales_order_id <> $1 "
        "group by 1 order by count(*) desc limit 1",
        order,
    )
    moved_order = scalar(
        source, "select min(sales_order_id) from sales_order where agreed_delivery_location_id = $1", address
    )
    new_address = int(scalar(source, "select max(address_id) + 100 from address"))
    versions = "select count(*) from fact_sales_order where sales_order_id = $1"
    versions_before = scalar(pipeline.warehouse_url, versions, moved_order)
    execute(
        source,
        f"delete from sales_order where sales_order_id = {order}",
        f"update address set address_id = {new_address} where address_id = {address}",
    )
    assert scalar(source, "select sales_order_id from transaction where transaction_id = $1", transaction) is None

    pipeline.run()

    url = pipeline.warehouse_url
    assert scalar(url, "select sales_order_id from dim_transaction where transaction_id = $1", transaction) is None
    assert scalar(url, CURRENT_ORDER_ADDRESS, moved_order) == new_address
    assert (
        scalar(url, "select count(*) from current_fact_sales_order where agreed_delivery_location_id = $1", address)
        == 0
    )
    assert_dimensions_match_source(pipeline, "dim_transaction", "dim_counterparty", "dim_location")
    # The rewrite replaced the order version's row (same sales_order_id and last_updated); it added none.
    assert scalar(url, versions, moved_order) == versions_before


def test_the_deep_pass_finds_manual_fixes_that_forgot_last_updated_and_nothing_when_in_step(pipeline, monkeypatch):
    """A payment amount and a staff name corrected by hand without a new last_updated, and a design
    renamed the same way: every run's delta misses them, ``totes reconcile`` finds them by content
    and carries them as new observations; a second deep pass finds nothing."""
    monkeypatch.setenv("TOTES_DELETE_CHECK_BUCKET_KEYS", "50")  # many ranges, most of them equal
    pipeline.seed(scale=0.02)
    pipeline.run()
    assert_source_and_lake_summarise_contents_identically(pipeline)
    source, url = pipeline.source_url, pipeline.warehouse_url
    payment = scalar(source, "select min(payment_id) from payment")
    staff = scalar(source, "select min(staff_id) from staff")
    execute(
        source,
        f"update payment set payment_amount = payment_amount + 0.01 where payment_id = {payment}",
        f"update staff set first_name = 'Corrected' where staff_id = {staff}",
        "update design set design_name = design_name || ' (fixed)' where design_id = (select max(design_id) from design)",
    )
    current_amount = "select payment_amount::text from current_fact_payment where payment_id = $1"
    amount_in_source = scalar(source, "select payment_amount::text from payment where payment_id = $1", payment)

    pipeline.run()  # the delta cannot see them
    assert scalar(url, current_amount, payment) != amount_in_source

    summary = totesys_etl(reconcile=True)

    assert {name: rows for name, rows in summary.ingested.items() if rows} == {"payment": 1, "staff": 1, "design": 1}
    assert scalar(url, current_amount, payment) == amount_in_source
    assert scalar(url, "select first_name from dim_staff where staff_id = $1", staff) == "Corrected"
    assert_dimensions_match_source(pipeline, "dim_staff", "dim_design")
    assert scalar(url, "select count(*) from fact_payment where payment_id = $1", payment) == 1

    lake = Lake.from_url(pipeline.lake_url)
    batches = len(lake.list_batches(RAW))
    again = totesys_etl(reconcile=True)
    assert not any(again.ingested.values()), again.ingested
    assert len(lake.list_batches(RAW)) == batches, "a deep pass that found nothing recorded a batch"


def test_a_content_index_written_to_the_lake_as_it_is_read_adds_up_to_the_index_held_whole(pipeline, monkeypatch):
    """A big table's content index goes to the lake in bounded parts while the table is read (held
    whole, two reads of 15.6 M rows took 1 GiB at scale 1000). Here every record batch is such a
    part, and a key the source holds two different rows under, set aside after the read, must not
    be indexed while it stays so: the parts already written are rewritten without it."""
    monkeypatch.setattr("tasks.ingest.extract.INDEX_ROWS_HELD", 1)
    pipeline.seed(scale=0.02)
    source = pipeline.source_url
    execute(
        source,
        "alter table design drop constraint design_pkey cascade",
        "insert into design select * from design where design_id = 3",
        "update design set design_name = 'Other' where ctid = (select max(ctid) from design where design_id = 3)",
    )
    pipeline.run()
    lake = Lake.from_url(pipeline.lake_url)
    design = SOURCE_TABLES["design"]
    written = lake.read_raw_manifest(lake.list_batches(RAW)[-1]).tables["design"].content
    assert 3 not in lake.read_table(written, index_schema(design)).column("design_id").to_pylist()

    execute(source, "delete from design where ctid = (select max(ctid) from design where design_id = 3)")
    order = scalar(source, "select min(sales_order_id) from transaction where sales_order_id is not null")
    transaction = scalar(source, "select transaction_id from transaction where sales_order_id = $1", order)
    execute(source, f"delete from sales_order where sales_order_id = {order}")
    pipeline.run()

    url = pipeline.warehouse_url
    assert scalar(url, "select sales_order_id from dim_transaction where transaction_id = $1", transaction) is None
    assert_dimensions_match_source(pipeline, "dim_design", "dim_transaction")
    assert_source_and_lake_summarise_contents_identically(pipeline)
    again = totesys_etl(reconcile=True)
    assert not any(again.ingested.values()), again.ingested
