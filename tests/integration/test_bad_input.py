"""Bad source data, as a real ToteSys without constraints can hold it: each bad row is named in a
data-quality warning (table, column, key, value) and in one alert, every good row still flows,
nothing already loaded is lost or duplicated, and corrected rows arrive as new versions.

The catalogue of bad input and where each case is tested is in docs/concepts/bad-input.md ("The
bad-input catalogue")."""

from __future__ import annotations

import json

import pytest

from tests.integration.conftest import execute, rows_as_text, scalar

NOW = "(now() at time zone 'UTC')::timestamp(3)"
ONE_MEGABYTE = "x" * (1024 * 1024)
AWKWARD_TEXT = 'O\'Brien "quoted"\nsecond line\ttab \\ backslash; -- not a comment ✓ 🧵'

# The source as the real 2024 dump has it: no foreign keys, money as unconstrained numeric.
LIKE_THE_REAL_DUMP = [
    "alter table sales_order drop constraint if exists sales_order_counterparty_id_fkey",
    "alter table staff drop constraint if exists staff_department_id_fkey",
    "alter table sales_order alter column unit_price type numeric",
    "alter table payment alter column payment_amount type numeric",
    "alter table sales_order alter column units_sold drop not null",
]


def test_bad_rows_are_named_alerted_once_and_set_aside_while_good_rows_flow(pipeline, sns_inbox, monkeypatch):
    from flows.etl import totesys_etl

    topic, received = sns_inbox
    monkeypatch.setenv("TOTES_ALERT_SNS_TOPIC_ARN", topic)
    pipeline.seed(scale=0.02)
    pipeline.run()
    loaded_before = pipeline.warehouse_rows("fact_sales_order")
    execute(
        pipeline.source_url,
        *LIKE_THE_REAL_DUMP,
        f"update sales_order set units_sold = null, last_updated = {NOW} where sales_order_id = 1",
        f"update sales_order set agreed_payment_date = '2024-13-45', last_updated = {NOW} where sales_order_id = 2",
        f"update purchase_order set item_quantity = -3, last_updated = {NOW} where purchase_order_id = 1",
        f"update sales_order set unit_price = 123456789.5, last_updated = {NOW} where sales_order_id = 3",
        f"update sales_order set unit_price = -2.00, last_updated = {NOW} where sales_order_id = 4",
        f"update payment set payment_amount = 10.005, last_updated = {NOW} where payment_id = 1",
        f"update payment set payment_amount = 'NaN', last_updated = {NOW} where payment_id = 2",
        f"insert into currency (currency_code, created_at, last_updated) values ('XYZ', {NOW}, {NOW})",
        f"update sales_order set counterparty_id = 99999, last_updated = {NOW} where sales_order_id = 5",
        f"update staff set department_id = 777, last_updated = {NOW} where staff_id = 1",
        f"update design set design_name = $${AWKWARD_TEXT}$$, last_updated = {NOW} where design_id = 1",
        f"update purchase_order set item_code = '{ONE_MEGABYTE}', last_updated = {NOW} where purchase_order_id = 2",
    )
    newest = {
        t: scalar(pipeline.source_url, f"select max({t}_id) from {t}")
        for t in ("sales_order", "purchase_order", "payment")
    }
    pipeline.churn(orders=10)
    bad_keys = {
        "fact_sales_order": ("(1,", "(2,", "(3,", "(4,"),
        "fact_purchase_order": ("(1,",),
        "fact_payment": ("(1,", "(2,"),
    }

    summary = totesys_etl()  # not pipeline.run(): the bad versions must not reach the warehouse

    expected_warnings = [
        "sales_order_id 1: units_sold is NULL",
        "sales_order_id 2: agreed_payment_date 2024-13-45 is not a yyyy-mm-dd date",
        "purchase_order_id 1: item_quantity -3 is not a positive quantity",
        "sales_order_id 3: unit_price 123456789.5 does not fit numeric(10,2) exactly",
        "sales_order_id 4: unit_price -2.00 is negative",
        "payment_id 1: payment_amount 10.005 does not fit numeric(10,2) exactly",
        "payment_id 2: payment_amount NaN does not fit numeric(10,2) exactly",
        "currency code 'XYZ' is not ISO 4217",
        "dim_counterparty: facts refer to 1 id(s) it does not hold (99999)",
        "staff: 1 row(s) left out of the warehouse until their parent row arrives (staff_id 1: department_id 777 names no department row)",
    ]
    text = "\n".join(summary.warnings)
    for expected in expected_warnings:
        assert expected in text, f"{expected!r} not in:\n{text}"
    # One data-quality alert, naming every case.
    alerts = received()
    assert len(alerts) == 1 and "data-quality warning" in alerts[0]["Subject"], alerts
    for expected in expected_warnings:
        assert expected in alerts[0]["Message"]
    # Good rows flowed, the bad versions did not, nothing loaded before was lost or duplicated.
    after = pipeline.warehouse_rows("fact_sales_order")
    assert not (loaded_before - after) and max(after.values()) == 1
    for source, newest_before in newest.items():
        query = f"select {source}_id from {{}} where {source}_id > {newest_before}"
        assert (
            rows_as_text(pipeline.warehouse_url, query.format(f"fact_{source}")).keys()
            == rows_as_text(pipeline.source_url, query.format(source)).keys()
        ), f"the new {source} rows did not all arrive"
    for table, prefixes in bad_keys.items():
        rows = set(pipeline.warehouse_rows(table))
        assert not {v for v in rows - pipeline.fact_versions[table] if v.startswith(prefixes)}, (
            f"{table}: a bad version loaded"
        )
    # Awkward and very long strings arrive exactly; the unknown counterparty has an inferred member.
    assert scalar(pipeline.warehouse_url, "select design_name from dim_design where design_id = 1") == AWKWARD_TEXT
    assert scalar(
        pipeline.warehouse_url,
        "select length(item_code) from fact_purchase_order where purchase_order_id = 2 order by last_updated_date desc, last_updated_time desc limit 1",
    ) == len(ONE_MEGABYTE)
    assert (
        scalar(
            pipeline.warehouse_url,
            "select counterparty_legal_name || ' ' || _inferred from dim_counterparty where counterparty_id = 99999",
        )
        == "Unknown true"
    )

    # A run with nothing new alerts no more.
    totesys_etl()
    assert len(received()) == 0

    # The source is corrected, the missing counterparty arrives: everything converges.
    execute(
        pipeline.source_url,
        f"update sales_order set units_sold = 1000, last_updated = {NOW} where sales_order_id = 1",
        f"update sales_order set agreed_payment_date = '2024-12-31', last_updated = {NOW} where sales_order_id = 2",
        f"update purchase_order set item_quantity = 3, last_updated = {NOW} where purchase_order_id = 1",
        f"update sales_order set unit_price = 3.50, last_updated = {NOW} where sales_order_id in (3, 4)",
        f"update payment set payment_amount = 10.01, last_updated = {NOW} where payment_id in (1, 2)",
        "insert into counterparty (counterparty_id, counterparty_legal_name, legal_address_id, commercial_contact, "
        f"delivery_contact, created_at, last_updated) values (99999, 'Late Arrival Ltd', 1, null, null, {NOW}, {NOW})",
        "insert into department (department_id, department_name, location, manager, created_at, last_updated) "
        f"values (777, 'Late Department', 'Leeds', null, {NOW}, {NOW})",
    )
    pipeline.run()
    assert (
        scalar(
            pipeline.warehouse_url,
            "select counterparty_legal_name || ' ' || _inferred from dim_counterparty where counterparty_id = 99999",
        )
        == "Late Arrival Ltd false"
    )
    pipeline.assert_warehouse_matches_source()


def test_a_new_column_alerts_once_not_every_run(pipeline, sns_inbox, monkeypatch):
    topic, received = sns_inbox
    monkeypatch.setenv("TOTES_ALERT_SNS_TOPIC_ARN", topic)
    pipeline.seed(scale=0.02)
    pipeline.run()
    execute(pipeline.source_url, "alter table staff add column nickname text")
    pipeline.run()
    pipeline.churn(orders=3)
    summary = pipeline.run()
    assert any("staff has new column(s) nickname" in w for w in summary.warnings)  # still reported...
    alerts = received()
    assert len(alerts) == 1 and "staff has new column(s) nickname" in alerts[0]["Message"]  # ...alerted once
    assert json.dumps(alerts).count("nickname") >= 1
    pipeline.assert_warehouse_matches_source()


def test_rows_without_last_updated_are_named_once_and_arrive_when_stamped(pipeline, sns_inbox, monkeypatch):
    """A delta never reads a row whose last_updated is NULL (the real dump enforces no NOT NULL):
    each such row is quarantined and named once, not every run; stamped, it arrives."""
    from flows.etl import totesys_etl
    from tasks.core.lake import RAW, Lake

    topic, received = sns_inbox
    monkeypatch.setenv("TOTES_ALERT_SNS_TOPIC_ARN", topic)
    pipeline.seed(scale=0.02)
    pipeline.run()
    execute(
        pipeline.source_url,
        "alter table design alter column last_updated drop not null",
        "insert into design (design_id, design_name, file_location, file_name, created_at, last_updated) "
        f"values (900001, 'Unstamped', '/designs', 'unstamped.jpg', {NOW}, null)",
        "update design set design_name = 'Renamed without a stamp', last_updated = null where design_id = 2",
    )
    summary = totesys_etl()
    text = "\n".join(summary.warnings)
    for key in (2, 900001):
        assert f"design_id {key}: last_updated is NULL" in text, text
    alerts = received()
    assert len(alerts) == 1 and "design_id 900001: last_updated is NULL" in alerts[0]["Message"], alerts
    assert scalar(pipeline.warehouse_url, "select count(*) from dim_design where design_id = 900001") == 0
    batches = Lake.from_url(pipeline.lake_url).list_batches(RAW)

    again = totesys_etl()  # nothing changed: no new warning (so no alert) and no new batch
    assert not any("last_updated is NULL" in w for w in again.warnings + again.new_warnings)
    assert Lake.from_url(pipeline.lake_url).list_batches(RAW) == batches

    execute(pipeline.source_url, f"update design set last_updated = {NOW} where last_updated is null")
    pipeline.run()
    assert (
        scalar(pipeline.warehouse_url, "select design_name from dim_design where design_id = 2")
        == "Renamed without a stamp"
    )
    pipeline.assert_warehouse_matches_source()


PASSWORD = "Right-Pa55word"


def test_bad_credentials_hosts_databases_tables_and_buckets_fail_clearly_alert_and_lose_nothing(
    own_postgres, s3_lake_url, prefect_api, sns_inbox, monkeypatch
):
    """Each misconfiguration in turn, on servers that check passwords: the run fails at once (none
    of these is worth retrying) with one line naming what is wrong where (no password), one alert
    says the same, the warehouse is untouched, and once the setting is right the run converges."""
    from flows.etl import totesys_etl
    from tasks.core.lake import RAW, Lake
    from tests.integration.conftest import Pipeline

    topic, received = sns_inbox
    monkeypatch.setenv("TOTES_ALERT_SNS_TOPIC_ARN", topic)
    own_postgres.create_database("totesys")
    own_postgres.create_database("warehouse")
    own_postgres.require_password(PASSWORD)
    port = own_postgres.port
    source, warehouse = own_postgres.url("totesys", password=PASSWORD), own_postgres.url("warehouse", password=PASSWORD)
    pipeline = Pipeline(source, warehouse, s3_lake_url, monkeypatch)
    pipeline.seed(scale=0.02)
    pipeline.run()
    pipeline.churn(orders=5)
    lake = Lake.from_url(s3_lake_url)
    snapshot, raw_batches = pipeline.snapshot(), lake.list_batches(RAW)

    redacted = f"postgresql://postgres:***@127.0.0.1:{port}"
    cases = [
        (
            "TOTES_SOURCE_URL",
            source.replace(PASSWORD, "wrong-password"),
            f'cannot connect to the source database {redacted}/totesys: connection to server at "127.0.0.1", port {port} failed: FATAL:  password authentication failed for user "postgres"',
        ),
        (
            "TOTES_SOURCE_URL",
            source.replace("127.0.0.1", "totesys.invalid"),
            "cannot connect to the source database postgresql://postgres:***@totesys.invalid:",
        ),
        (
            "TOTES_SOURCE_URL",
            source.replace("/totesys", "/totesys_typo"),
            f'cannot connect to the source database {redacted}/totesys_typo: connection to server at "127.0.0.1", port {port} failed: FATAL:  database "totesys_typo" does not exist',
        ),
        (
            "TOTES_WAREHOUSE_URL",
            warehouse.replace(PASSWORD, "wrong-password"),
            f'cannot connect to the warehouse database {redacted}/warehouse: connection to server at "127.0.0.1", port {port} failed: FATAL:  password authentication failed for user "postgres"',
        ),
        (
            "TOTES_LAKE_URL",
            "s3://no-such-bucket-for-totes/lake",
            "the lake's bucket 'no-such-bucket-for-totes' does not exist: create it, or correct TOTES_LAKE_URL",
        ),
        ("source table renamed", None, "schema drift: source table sales_order does not exist"),
    ]
    for variable, value, expected in cases:
        if value is None:
            execute(source, "alter table sales_order rename to sales_order_archive")
        else:
            monkeypatch.setenv(variable, value)
        try:
            with pytest.raises(Exception) as failure:
                totesys_etl()
        finally:
            if value is None:
                execute(source, "alter table sales_order_archive rename to sales_order")
            else:
                monkeypatch.setenv(
                    variable,
                    {"TOTES_SOURCE_URL": source, "TOTES_WAREHOUSE_URL": warehouse, "TOTES_LAKE_URL": s3_lake_url}[
                        variable
                    ],
                )
        assert expected in str(failure.value), f"{variable}: {failure.value}"
        assert "wrong-password" not in str(failure.value) and PASSWORD not in str(failure.value)
        alerts = received()
        assert len(alerts) == 1 and expected in alerts[0]["Message"], f"{variable}: {alerts}"
        assert "wrong-password" not in json.dumps(alerts) and PASSWORD not in json.dumps(alerts)
        assert pipeline.snapshot() == snapshot, f"{variable}: the warehouse changed"
        lake.fs.invalidate_cache()
        # The cycle lock is taken on the warehouse before anything is read: a bad warehouse setting
        # stops the run before ingest too.
        assert lake.list_batches(RAW) == raw_batches, f"{variable}: a watermark moved"

    pipeline.run()
    pipeline.assert_warehouse_matches_source()


def test_a_source_without_primary_keys_duplicates_across_files_do_not_block_the_pipeline(pipeline, monkeypatch):
    """The real dump enforces no primary key: exact copies of rows land in other raw files of the same
    batch than the originals, and two different rows share one payment's version. Before, the batch
    failed its COPY on the version key, and so did every later run (the batch is immutable). Now the
    copies are kept once and the conflicting rows quarantined (as within one file), and runs go on."""
    from flows.etl import totesys_etl

    monkeypatch.setenv("TOTES_PARQUET_ROWS_PER_FILE", "100")
    pipeline.seed(scale=0.02)
    execute(
        pipeline.source_url,
        "alter table sales_order drop constraint sales_order_pkey cascade",
        "alter table payment drop constraint payment_pkey cascade",
        "drop index payment_transaction_id_key",
        "alter table design drop constraint design_pkey cascade",
        "insert into sales_order select * from sales_order where sales_order_id in (1, 2)",
        "insert into design select * from design where design_id = 3",
        "insert into payment select * from payment where payment_id = 5",
        "update payment set payment_amount = payment_amount + 1 where ctid = "
        "(select max(ctid) from payment where payment_id = 5)",
    )
    first = totesys_etl()
    assert first.batches_loaded, "the first batch must load"
    text = "\n".join(first.warnings)
    assert "payment: 2 row(s) rejected" in text and "2 different rows share payment_id 5 (" in text
    assert "sales_order: " not in text and "design: " not in text, text  # exact copies: kept once, quietly
    pipeline.churn(orders=5)
    assert totesys_etl().batches_loaded, "the runs after it are not blocked"
    counts = {
        "sales_order 1, 2": "select count(*) from fact_sales_order where sales_order_id in (1, 2)",
        "design 3": "select count(*) from dim_design where design_id = 3",
        "payment 5": "select count(*) from fact_payment where payment_id = 5",
    }
    found = {name: scalar(pipeline.warehouse_url, query) for name, query in counts.items()}
    assert found == {"sales_order 1, 2": 2, "design 3": 1, "payment 5": 0}
