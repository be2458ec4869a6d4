"""The ETL cycle end to end: real PostgreSQL, a real S3 API (moto server) and a real Prefect API."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter

import pytest

from tasks.core.lake import RAW, STAR, Lake
from tests.integration.conftest import execute, late_orders_loaded, late_writer, null_units_sold, rows_as_text, scalar


def lake_objects(pipeline) -> list[str]:
    lake = Lake.from_url(pipeline.lake_url)
    lake.fs.invalidate_cache()
    return sorted(lake.fs.find(lake.root))


def test_full_load_then_three_rounds_of_churn(pipeline):
    pipeline.seed(scale=0.05)
    summary = pipeline.run()
    assert summary.ingested["sales_order"] == 550
    assert summary.loaded["fact_sales_order"] == 550
    pipeline.assert_warehouse_matches_source()

    for _ in range(3):
        pipeline.churn(orders=20)
        summary = pipeline.run()
        assert summary.ingested["sales_order"] >= 20  # new orders plus amendments
        pipeline.assert_warehouse_matches_source()

    # Payments flipped to paid and amended orders keep their earlier versions.
    versions = scalar(
        pipeline.warehouse_url,
        "select count(*) - count(distinct sales_order_id) from fact_sales_order",
    )
    assert versions > 0
    lake = Lake.from_url(pipeline.lake_url)
    assert len(lake.list_batches(RAW)) == 4
    assert lake.list_batches(STAR) == lake.list_batches(RAW)


def test_rerun_with_no_change_changes_nothing(pipeline):
    pipeline.seed(scale=0.02)
    pipeline.run()
    before_rows, before_objects = pipeline.snapshot(), lake_objects(pipeline)

    summary = pipeline.run()

    assert sum(summary.ingested.values()) == 0
    assert summary.batches_loaded == []
    assert pipeline.snapshot() == before_rows
    assert lake_objects(pipeline) == before_objects
    pipeline.assert_warehouse_matches_source()


def test_rows_sharing_one_last_updated_all_arrive(pipeline):
    """Two orders stamped with the same last_updated, committed on either side of a run.

    A cursor that resumes from ``last_updated > max(seen)`` misses the one committed second.
    """
    from tasks.core.postgres import connect

    pipeline.seed(scale=0.02)
    pipeline.run()
    insert_order = (
        "insert into sales_order (design_id, staff_id, counterparty_id, units_sold, unit_price, "
        "currency_id, agreed_delivery_date, agreed_payment_date, agreed_delivery_location_id, "
        "created_at, last_updated) "
        "values (1, 1, 1, 100, 2.50, 1, '2024-03-01', '2024-03-02', 1, $1::timestamp, $1::timestamp)"
    )
    slow_writer = connect(pipeline.source_url)
    try:
        with slow_writer.cursor() as cursor:
            cursor.execute("select ((now() at time zone 'UTC')::timestamp(3))::text")
            (stamp,) = cursor.fetchone()
            cursor.execute(insert_order, parameters=(stamp,))
        with connect(pipeline.source_url) as fast_writer:
            with fast_writer.cursor() as cursor:
                cursor.execute(insert_order, parameters=(stamp,))
            fast_writer.commit()
        pipeline.run()
        assert scalar(pipeline.warehouse_url, "select count(*) from fact_sales_order where units_sold = 100") == 1
        slow_writer.commit()
    finally:
        slow_writer.close()
    pipeline.run()

    assert (
        scalar(
            pipeline.warehouse_url,
            "select count(*) from fact_sales_order where units_sold = 100 and last_updated_date + last_updated_time = $1::timestamp",
            stamp,
        )
        == 2
    )
    pipeline.assert_warehouse_matches_source()


def test_transaction_committing_after_a_run_with_an_older_stamp_arrives(pipeline):
    """A writer begins before a run and commits after it, stamping its row with its start time.

    Meanwhile newer rows commit and are ingested, so a watermark taken from max(last_updated) would
    already be past the late row when it becomes visible.
    """
    pipeline.seed(scale=0.02)
    pipeline.run()

    with late_writer(pipeline.source_url) as writer:
        pipeline.churn(orders=5)  # newer rows, committed while the late writer is still open
        pipeline.run()
        assert late_orders_loaded(pipeline.warehouse_url) == 0
        writer.commit()

    pipeline.run()

    assert late_orders_loaded(pipeline.warehouse_url) == 1
    pipeline.assert_warehouse_matches_source()


def test_timestamptz_audit_columns_and_a_non_utc_time_zone_miss_no_change(pipeline):
    """A source whose audit columns are ``timestamp with time zone`` and whose database TimeZone is
    not UTC: the watermark (UTC) must compare as the same instant, so every later change arrives."""
    from flows.etl import totesys_etl
    from tasks.core.lake import RAW, Lake
    from tasks.schema import SOURCE_TABLES

    pipeline.seed(scale=0.02)
    execute(
        pipeline.source_url,
        *(
            f"alter table {table} alter column {column} type timestamptz using {column} at time zone 'UTC'"
            for table in SOURCE_TABLES  # every one: a timestamp column in this TimeZone is refused
            for column in ("created_at", "last_updated")
        ),
        "do $$ begin execute format('alter database %I set timezone to %L', current_database(), 'America/New_York'); end $$",
    )
    first = totesys_etl()
    assert first.ingested["sales_order"] == scalar(pipeline.source_url, "select count(*) from sales_order")

    execute(
        pipeline.source_url,
        "update sales_order set units_sold = units_sold + 1, last_updated = now() where sales_order_id <= 5",
    )
    later = totesys_etl()

    assert later.ingested["sales_order"] == 5, later.ingested
    assert scalar(pipeline.warehouse_url, "select count(*) from fact_sales_order where sales_order_id <= 5") == 10
    newest = Lake.from_url(pipeline.lake_url).read_raw_manifest(Lake.from_url(pipeline.lake_url).list_batches(RAW)[-1])
    assert newest.tables["sales_order"].data.rows == 5


def test_stopping_between_stages_then_rerunning_converges(pipeline):
    from flows.etl import ingest, transform

    pipeline.seed(scale=0.02)
    pipeline.checkpoint()
    ingest()  # the process stops after ingest: raw batch recorded, nothing transformed
    pipeline.churn(orders=10)
    pipeline.checkpoint()
    ingest()
    transform()  # ... and after transform: star batches written, nothing loaded
    assert scalar(pipeline.warehouse_url, "select count(*) from pg_tables where tablename = 'fact_payment'") == 0

    summary = pipeline.run()

    assert len(summary.batches_loaded) == 2
    pipeline.assert_warehouse_matches_source()


def install_trigger(url: str, name: str, *, table: str, body: str, per: str) -> None:
    """A real fault inside the warehouse: a plpgsql trigger ``name`` before inserts into ``table``."""
    execute(
        url,
        f"create function {name}() returns trigger language plpgsql as $$ begin {body} end $$",
        f"create trigger {name} before insert on {table} for each {per} execute function {name}()",
    )


def test_failure_inside_the_load_rolls_the_batch_back_and_the_rerun_converges(pipeline):
    pipeline.seed(scale=0.02)
    pipeline.run()
    snapshot = pipeline.snapshot()
    # A real failure half-way through the load transaction: after the dimensions and two facts merge.
    install_trigger(
        pipeline.warehouse_url,
        "refuse",
        table="fact_sales_order",
        per="row",
        body="raise exception 'warehouse refused the insert';",
    )
    pipeline.churn(orders=10)

    with pytest.raises(Exception, match="warehouse refused the insert"):
        pipeline.run()
    assert pipeline.snapshot() == snapshot  # nothing of the failed batch is visible

    execute(pipeline.warehouse_url, "drop trigger refuse on fact_sales_order")
    pipeline.run()
    pipeline.assert_warehouse_matches_source()


def test_transform_failing_part_way_rolls_back_the_load_beside_it_and_the_rerun_converges(pipeline):
    """The cycle's load runs beside its transform, copying each star part into its transaction as
    it is built. A raw file of the batch is damaged in the lake (payment: the third fact table, so
    the load has copied fact_sales_order's rows when the transform fails): the load rolls back, the
    warehouse shows nothing of the batch, and once the file is whole again the rerun converges."""
    from flows.etl import ingest
    from tasks.core.lake import RAW, Lake

    pipeline.seed(scale=0.02)
    pipeline.run()
    snapshot = pipeline.snapshot()
    pipeline.churn(orders=10)
    pipeline.checkpoint()
    ingest()
    lake = Lake.from_url(pipeline.lake_url)
    batch = lake.read_raw_manifest(lake.list_batches(RAW)[-1])
    assert batch.files("sales_order"), "the churn brought no sales order for the load to copy first"
    (damaged,) = batch.files("payment")
    whole = lake.fs.cat_file(lake.full(damaged))
    lake.put_whole(damaged, b"PAR1 this is not a Parquet file PAR1")

    with pytest.raises(Exception, match="Parquet"):
        pipeline.run()
    assert pipeline.snapshot() == snapshot  # the rows the load had copied were rolled back

    lake.put_whole(damaged, whole)
    summary = pipeline.run()
    assert batch.batch_id in summary.batches_loaded
    pipeline.assert_warehouse_matches_source()


def test_process_killed_during_the_merge_then_rerun_converges(pipeline, prefect_api):
    """SIGKILL of ``totes run`` while its load transaction is writing fact_payment (stalled there by a
    trigger, so the kill lands inside the transaction, after the dimensions and two facts)."""
    pipeline.seed(scale=0.02)
    pipeline.run()
    snapshot = pipeline.snapshot()
    install_trigger(
        pipeline.warehouse_url,
        "stall",
        table="fact_payment",
        per="statement",
        body="perform pg_sleep(3); return null;",
    )
    pipeline.churn(orders=10)
    pipeline.checkpoint()

    child = pipeline.run_cli("run", env={"PREFECT_API_URL": prefect_api})
    stalled = threading.Event()
    for _ in range(600):
        if scalar(
            pipeline.warehouse_url,
            # The stall trigger's pg_sleep, in another session (this query must not see itself).
            "select count(*) from pg_stat_activity where datname = current_database() "
            "and pid <> pg_backend_pid() and wait_event = 'PgSleep'",
        ):
            stalled.set()
            break
        threading.Event().wait(0.1)
    child.kill()
    child.wait(timeout=30)
    assert stalled.is_set(), "the load never reached fact_payment"
    # The server rolls back the killed client's transaction once it notices the client is gone.
    for _ in range(300):
        if not scalar(
            pipeline.warehouse_url,
            "select count(*) from pg_stat_activity where datname = current_database() "
            "and pid <> pg_backend_pid() and state <> 'idle'",
        ):
            break
        threading.Event().wait(0.1)
    execute(pipeline.warehouse_url, "drop trigger stall on fact_payment")
    assert pipeline.snapshot() == snapshot

    pipeline.run()
    pipeline.assert_warehouse_matches_source()


def test_rebuild_from_the_lake_alone_restores_a_damaged_warehouse(pipeline):
    from flows.etl import rebuild_warehouse
    from tasks.schema import STAR_TABLES

    pipeline.seed(scale=0.02)
    pipeline.run()
    pipeline.churn(orders=10)
    pipeline.run()
    before = {table: pipeline.warehouse_rows(table) for table in STAR_TABLES}
    execute(
        pipeline.warehouse_url,
        "delete from fact_payment where payment_id % 3 = 0",
        "update dim_location set phone = 'damaged'",
        "delete from _totes_loaded_batch",
    )

    summary = rebuild_warehouse()

    assert len(summary.batches_loaded) == 2
    assert {table: pipeline.warehouse_rows(table) for table in STAR_TABLES} == before
    pipeline.assert_warehouse_matches_source()
    pipeline.run()  # and the next cycle carries on from there
    pipeline.assert_warehouse_matches_source()


def test_bad_source_rows_are_quarantined_good_rows_flow_and_a_fix_arrives(pipeline):
    """A source without constraints (like the real 2024 dump) holds a NULL and an impossible date."""
    from flows.etl import totesys_etl

    pipeline.seed(scale=0.02)
    pipeline.run()
    execute(
        pipeline.source_url,
        *null_units_sold(3),
        "update sales_order set agreed_payment_date = '2024-13-45', last_updated = (now() at time zone 'UTC') "
        "where sales_order_id = 4",
    )
    pipeline.churn(orders=10)
    before = scalar(pipeline.warehouse_url, "select count(*) from fact_sales_order")

    summary = totesys_etl()  # not pipeline.run(): the bad versions are not expected in the warehouse

    assert any("sales_order: 2 row(s) rejected" in w and "2024-13-45" in w for w in summary.warnings)
    assert summary.loaded["fact_sales_order"] >= 10  # the good rows flowed
    assert (
        scalar(pipeline.warehouse_url, "select count(*) from fact_sales_order")
        == before + summary.loaded["fact_sales_order"]
    )
    lake = Lake.from_url(pipeline.lake_url)
    newest = lake.read_manifest(STAR, lake.list_batches(STAR)[-1])
    assert newest["quarantined"]["sales_order"]["rows"] == 2

    execute(
        pipeline.source_url,
        "update sales_order set units_sold = 1234, last_updated = (now() at time zone 'UTC') where sales_order_id = 3",
        "update sales_order set agreed_payment_date = '2024-12-31', last_updated = (now() at time zone 'UTC') "
        "where sales_order_id = 4",
    )
    pipeline.run()
    pipeline.assert_warehouse_matches_source()


def test_one_global_concurrency_limit_per_database_bounds_its_connections(pipeline, monkeypatch):
    """A run creates one Prefect global concurrency limit per database (named without credentials),
    with the configured slots, holds slots only while working, and completes with a single slot."""
    from prefect.client.orchestration import get_client

    from tasks.core.concurrency import database_limit_name

    monkeypatch.setenv("TOTES_DATABASE_CONCURRENCY", "1")
    pipeline.seed(scale=0.02)
    pipeline.run()
    pipeline.assert_warehouse_matches_source()
    with get_client(sync_client=True) as client:
        for url in (pipeline.source_url, pipeline.warehouse_url):
            limit = client.read_global_concurrency_limit_by_name(database_limit_name(url))
            assert limit.limit == 1 and limit.active_slots == 0
    assert "postgres:" not in database_limit_name(pipeline.source_url)


def test_schema_drift_new_column_warns_and_missing_or_retyped_columns_stop_before_reading(pipeline, monkeypatch):
    from tasks.core.lake import RAW, Lake

    pipeline.seed(scale=0.02)
    pipeline.run()
    lake = Lake.from_url(pipeline.lake_url)
    batches = lake.list_batches(RAW)

    # A new column: the run goes on and says so in its report.
    execute(pipeline.source_url, "alter table sales_order add column discount_code text")
    pipeline.churn(orders=5)
    summary = pipeline.run()
    assert (
        "schema drift: source table sales_order has new column(s) discount_code, not carried into the warehouse"
        in summary.warnings
    )
    pipeline.assert_warehouse_matches_source()
    batches = lake.list_batches(RAW)

    # The same new column under the freeze policy (that table's, or every table's): the run stops.
    for policy in ('{"sales_order": "freeze"}', '{"*": "freeze", "design": "warn"}'):
        monkeypatch.setenv("TOTES_SCHEMA_DRIFT_POLICY", policy)
        with pytest.raises(
            Exception,
            match=re.escape(
                "source table sales_order has new column(s) discount_code and its schema-drift policy is freeze"
            ),
        ):
            pipeline.run()
        assert lake.list_batches(RAW) == batches
    monkeypatch.setenv("TOTES_SCHEMA_DRIFT_POLICY", '{"*": "freeze", "sales_order": "warn"}')
    pipeline.churn(orders=2)
    pipeline.run()  # sales_order's own policy wins over "*"
    monkeypatch.delenv("TOTES_SCHEMA_DRIFT_POLICY")
    batches = lake.list_batches(RAW)

    # A renamed column and a changed type: the run stops before reading anything; no watermark moves.
    execute(
        pipeline.source_url,
        "alter table design rename column design_name to name",
        "alter table purchase_order alter column item_quantity type text",
    )
    with pytest.raises(
        Exception,
        match=re.escape(
            "schema drift: source table design lacks column(s) design_name; new column(s) there: name (renamed?); "
            "source column purchase_order.item_quantity is text, expected one of bigint, integer, smallint"
        ),
    ):
        pipeline.run()
    assert lake.list_batches(RAW) == batches


def test_conflicting_duplicate_keys_in_a_source_without_constraints_are_quarantined(pipeline):
    """The real ToteSys dump enforces no primary keys: two different rows may share an id and a
    last_updated. Which one is true cannot be told, so both are quarantined with a warning, and every
    other row still loads."""
    pipeline.seed(scale=0.02)
    pipeline.run()
    execute(
        pipeline.source_url,
        "alter table sales_order drop constraint sales_order_pkey cascade",
        "insert into sales_order (sales_order_id, design_id, staff_id, counterparty_id, units_sold, unit_price, "
        "currency_id, agreed_delivery_date, agreed_payment_date, agreed_delivery_location_id, created_at, last_updated) "
        "select 900001, design_id, staff_id, counterparty_id, units_sold + k, unit_price, currency_id, "
        "agreed_delivery_date, agreed_payment_date, agreed_delivery_location_id, now(), now() "
        "from sales_order, generate_series(1, 2) as k where sales_order_id = 1",
    )
    pipeline.churn(orders=10)
    summary = pipeline.run()
    assert any("2 different rows share sales_order_id 900001" in w for w in summary.warnings), summary.warnings
    assert scalar(pipeline.warehouse_url, "select count(*) from fact_sales_order where sales_order_id = 900001") == 0
    # Everything else arrived: the expectation without the ambiguous id.
    pipeline.fact_versions["fact_sales_order"] = {
        v for v in pipeline.fact_versions["fact_sales_order"] if not v.startswith("(900001,")
    }
    pipeline.possible_versions["fact_sales_order"] = pipeline.fact_versions["fact_sales_order"]
    pipeline.assert_warehouse_matches_source()


def test_batches_loaded_again_into_a_warehouse_that_holds_them_duplicate_nothing(pipeline):
    """The warehouse already holds every version of the lake's batches but not their records (a
    second lake over the same source, a restored backup): loading them again merges, adds nothing.
    (Found: a straight COPY into a non-empty table aborted the transaction, and the ADBC driver
    cannot roll back to a savepoint, so the merge fallback failed.)"""
    from flows.etl import load

    pipeline.seed(scale=0.02)
    pipeline.run()
    before = pipeline.snapshot()
    execute(pipeline.warehouse_url, "delete from _totes_loaded_batch")
    reloaded = load()
    assert reloaded.batches_loaded and sum(reloaded.loaded.values()) == 0, reloaded.loaded
    after = pipeline.snapshot()
    assert {t: rows for t, rows in after.items() if t != "_totes_loaded_batch"} == before
    pipeline.assert_warehouse_matches_source()


def test_a_row_stamped_backwards_by_an_older_transaction_is_the_current_one(pipeline):
    """A writer's transaction (A) begins; another (B) updates an address and a payment and commits;
    a run reads B's rows (the watermark stays before A's start). Then A updates the same rows,
    stamped with its start (now()), older than B's stamp, and commits. The newest rows are A's, read
    last: dim_location, dim_counterparty (through the join state) and current_fact_payment show them,
    not the rows with the larger stamp."""
    from tasks.core.postgres import connect

    pipeline.seed(scale=0.02)
    pipeline.run()
    source = pipeline.source_url
    address = scalar(source, "select legal_address_id from counterparty order by counterparty_id limit 1")
    payment = scalar(source, "select min(payment_id) from payment")

    def stamp(city: str, amount: str) -> list[str]:
        now = "(now() at time zone 'UTC')"
        return [
            f"update address set city = '{city}', last_updated = {now} where address_id = {address}",
            f"update payment set payment_amount = {amount}, last_updated = {now} where payment_id = {payment}",
        ]

    older = connect(source)
    try:
        with older.cursor() as cursor:
            cursor.execute("select pg_current_xact_id()")  # A's transaction begins: now() is fixed
        time.sleep(1.5)
        execute(source, *stamp("B city", "111.11"))
        pipeline.run()
        with older.cursor() as cursor:
            for statement in stamp("A city", "222.22"):
                cursor.execute(statement)
        older.commit()
    finally:
        older.close()
    assert scalar(source, f"select city from address where address_id = {address}") == "A city"

    pipeline.run()
    url = pipeline.warehouse_url
    assert scalar(url, f"select city from dim_location where location_id = {address}") == "A city"
    assert (
        scalar(
            url,
            "select counterparty_legal_city from dim_counterparty where counterparty_id = "
            "(select min(counterparty_id) from dim_counterparty where counterparty_legal_city in ('A city', 'B city'))",
        )
        == "A city"
    )
    assert str(scalar(url, f"select payment_amount from current_fact_payment where payment_id = {payment}")) == "222.22"
    pipeline.assert_warehouse_matches_source()


def test_a_second_write_under_the_same_stamp_is_not_dropped_as_known(pipeline):
    """Two transactions write one payment with the same last_updated (a client that sets the stamp
    itself): a run reads the first; the next re-reads the version (it is at or after the watermark,
    held back by a transaction still open) and finds other content: it arrives and replaces the
    first write's row, where before it was dropped as a version already read."""
    from tasks.core.postgres import connect

    pipeline.seed(scale=0.02)
    pipeline.run()
    source, url = pipeline.source_url, pipeline.warehouse_url
    payment = scalar(source, "select min(payment_id) from payment")
    holder = connect(source)  # an open transaction holds the watermark before the writes
    try:
        with holder.cursor() as cursor:
            cursor.execute("select pg_current_xact_id()")
        stamp = scalar(source, "select (clock_timestamp() at time zone 'UTC')::timestamp(3)::text")
        write = f"update payment set payment_amount = {{}}, last_updated = '{stamp}' where payment_id = {payment}"
        execute(source, write.format("1.11"))
        pipeline.run()
        execute(source, write.format("2.22"))
        pipeline.run()
    finally:
        holder.close()
    amounts = rows_as_text(
        url,
        f"select payment_amount from fact_payment where payment_id = {payment} and "
        f"(last_updated_date + last_updated_time) = '{stamp}'::timestamp",
    )
    assert amounts == Counter({"(2.22)": 1}), amounts
    assert str(scalar(url, f"select payment_amount from current_fact_payment where payment_id = {payment}")) == "2.22"


def test_backfill_reads_tables_whole_duplicates_nothing_and_rebuilds_their_dimensions(pipeline):
    """A repair in the source that no ``last_updated`` shows (a department renamed by hand):
    ``backfill`` reads the table whole, and the new name reaches dim_staff through the join. Every
    sales order is read again too, and the warehouse still holds each version once; an order cancelled
    meanwhile is marked deleted."""
    from flows.etl import totesys_etl

    pipeline.seed(scale=0.02)
    pipeline.run()
    execute(
        pipeline.source_url,
        "update department set department_name = 'Repaired' where department_id = 1",
    )
    pipeline.churn(orders=5)  # ... which cancels an unpaid order: a delete the backfill finds on the way
    pipeline.checkpoint(required=False)
    orders = scalar(pipeline.source_url, "select count(*) from sales_order")
    departments = scalar(pipeline.source_url, "select count(*) from department")

    summary = totesys_etl(backfill=["department", "sales_order"])

    assert summary.ingested["department"] == departments
    assert summary.ingested["sales_order"] == orders
    assert scalar(
        pipeline.warehouse_url,
        "select count(*) from dim_staff where department_name = 'Repaired'",
    ) == scalar(pipeline.source_url, "select count(*) from staff where department_id = 1")
    assert summary.deleted.get("fact_sales_order", 0) >= 1
    pipeline.checkpoint()
    pipeline.assert_warehouse_matches_source()
