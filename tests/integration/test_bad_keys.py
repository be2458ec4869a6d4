"""Rows that break keys never stop the rest (the real ToteSys dump enforces no constraints): a NULL
key, several different rows under one key (whatever their stamps, in whichever raw files they land),
a key its column type holds but the model's integer cannot. Each is set aside with a reason naming
the table and key — once, not on every run — counted in the run report and `totes status`, alerted
once; every other row and table flows; when the source repairs the row, it arrives.

(On the code before: a NULL design_id failed every later run with "conversion from f64 to i32";
two transaction rows under one id with different stamps failed the full load, every run, backfill
and rebuild with "could not create unique index dim_transaction_pkey"; a bigint id failed the
table's read.)"""

from __future__ import annotations

import json

from flows.etl import rebuild_warehouse, totesys_etl
from tasks.core.lake import RAW, Lake
from tests.integration.conftest import execute, scalar

NOW = "(now() at time zone 'UTC')::timestamp(3)"


def set_aside_reasons(pipeline) -> list[str]:
    """`totes status --json`'s rows set aside, as reason texts."""
    status = pipeline.run_cli("status", "--json")
    out, err = status.communicate(timeout=120)
    assert status.returncode == 0, err
    return [reason for table in json.loads(out)["source_tables"] for reason in table["quarantine_reasons"]]


def test_a_null_key_is_set_aside_once_and_the_rest_flows_until_it_is_repaired(pipeline, sns_inbox, monkeypatch):
    topic, received = sns_inbox
    monkeypatch.setenv("TOTES_ALERT_SNS_TOPIC_ARN", topic)
    pipeline.seed(scale=0.02)
    pipeline.run()
    received()
    execute(
        pipeline.source_url,
        "alter table design drop constraint design_pkey cascade",
        "alter table design alter column design_id drop not null",
        "insert into design (design_id, design_name, file_location, file_name, created_at, last_updated) "
        f"values (null, 'Keyless', '/designs', 'keyless.jpg', {NOW}, {NOW})",
    )
    pipeline.churn(orders=5)

    summary = pipeline.run()

    text = "\n".join(summary.warnings)
    assert "design: 1 row(s) rejected" in text and "design_id is NULL: the row has no key" in text, text
    assert summary.loaded.get("fact_sales_order"), "other tables' changes arrive in the same run"
    alerts = received()
    assert len(alerts) == 1 and "design_id is NULL" in alerts[0]["Message"], alerts
    assert any("design_id is NULL" in reason for reason in set_aside_reasons(pipeline))
    batches = Lake.from_url(pipeline.lake_url).list_batches(RAW)

    again = totesys_etl()
    assert not any("design_id is NULL" in w for w in again.warnings), "named once, not on every run"
    assert not received()
    assert Lake.from_url(pipeline.lake_url).list_batches(RAW) == batches, "nothing new: no batch"

    # Repaired without touching last_updated: the key-range check finds the key the lake never saw.
    execute(pipeline.source_url, "update design set design_id = 900002 where design_id is null")
    pipeline.run()
    assert scalar(pipeline.warehouse_url, "select design_name from dim_design where design_id = 900002") == "Keyless"
    pipeline.assert_warehouse_matches_source()


def test_two_rows_under_one_key_with_different_stamps_are_set_aside_and_arrive_once_repaired(pipeline, monkeypatch):
    # Small raw files: the two copies land in different files of the full load's batch.
    monkeypatch.setenv("TOTES_PARQUET_ROWS_PER_FILE", "50")
    pipeline.seed(scale=0.02)
    last = scalar(pipeline.source_url, "select max(transaction_id) from transaction")
    execute(
        pipeline.source_url,
        "alter table payment drop constraint if exists payment_transaction_id_fkey",
        "alter table transaction drop constraint transaction_pkey cascade",
        "drop index transaction_sales_order_id_key",
        "drop index transaction_purchase_order_id_key",
        "insert into transaction (transaction_id, transaction_type, sales_order_id, purchase_order_id, created_at, "
        "last_updated) select transaction_id, transaction_type, sales_order_id, purchase_order_id, created_at, "
        "last_updated + interval '1 second' from transaction where transaction_id = 1",
    )

    first = pipeline.run()  # the full load

    text = "\n".join(first.warnings)
    assert "2 different rows share transaction_id 1 (" in text, text
    assert first.batches_loaded
    assert scalar(pipeline.warehouse_url, "select count(*) from dim_transaction where not _inferred") == last - 1
    pipeline.churn(orders=5)
    second = pipeline.run()
    assert second.batches_loaded, "later runs go on"
    assert not any("share transaction_id 1" in w for w in second.warnings), "named once"
    assert any("share transaction_id 1" in reason for reason in set_aside_reasons(pipeline))

    assert totesys_etl(backfill=["transaction"]).batches_loaded
    rebuild_warehouse()
    assert scalar(pipeline.warehouse_url, "select count(*) from dim_transaction where transaction_id = 1") in (0, 1)

    # Repaired: one copy removed (its stamp is old: no delta would read the one left).
    execute(
        pipeline.source_url,
        "delete from transaction where ctid = (select max(ctid) from transaction where transaction_id = 1)",
    )
    pipeline.run()
    assert (
        scalar(
            pipeline.warehouse_url, "select count(*) from dim_transaction where transaction_id = 1 and not _inferred"
        )
        == 1
    )
    pipeline.assert_warehouse_matches_source()
    rebuild_warehouse()
    pipeline.assert_warehouse_matches_source()


def test_a_key_beyond_integer_is_set_aside_and_the_rest_of_its_table_flows(pipeline):
    pipeline.seed(scale=0.02)
    pipeline.run()
    execute(
        pipeline.source_url,
        "alter table design alter column design_id type bigint",
        "insert into design (design_id, design_name, file_location, file_name, created_at, last_updated) "
        f"values (3000000000, 'Too big', '/designs', 'big.jpg', {NOW}, {NOW}), "
        f"(900003, 'Fine', '/designs', 'fine.jpg', {NOW}, {NOW})",
    )
    summary = pipeline.run()
    text = "\n".join(summary.warnings)
    assert "design_id 3000000000 does not fit integer" in text, text
    assert scalar(pipeline.warehouse_url, "select design_name from dim_design where design_id = 900003") == "Fine"
    again = totesys_etl()
    assert not any("3000000000" in w for w in again.warnings), "named once"
    execute(pipeline.source_url, "delete from design where design_id = 3000000000")
    pipeline.run()
    pipeline.assert_warehouse_matches_source()
