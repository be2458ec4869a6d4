"""A logical-replication subscriber as the source: a publisher database and a subscriber database on
a real PostgreSQL server of this test (``wal_level = logical``; the subscription's slot is made
beforehand, since a subscription to its own server cannot create it: it would wait for itself).

The subscriber's ``pg_stat_activity`` cannot see a transaction open on the publisher, and the
rows it applies carry the publisher's stamps: a run that took its horizon on the subscriber moved the
watermark past a payment updated in such a transaction, and no later run read it (issue 21, item 7).
totes refuses a subscriber alone and a primary connection that is not its publisher (item 8); with
the publisher, it takes the horizon there and reads the subscriber once it has applied that far.
The roles are not superusers: SELECT on the tables and ``pg_read_all_stats``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal

import pytest

from tasks.core.lake import Lake
from tasks.core.postgres import connect
from tasks.schema import SOURCE_TABLES
from tests.integration.conftest import OwnPostgres, Pipeline, execute, scalar

READER = "totes_reader"


@dataclass(frozen=True)
class Replication:
    publisher_url: str  # the databases as totes' SELECT-only role reaches them
    subscriber_url: str
    admin_publisher_url: str  # as the superuser, for the test's own writes


def autocommit(url: str, *statements: str) -> None:
    """Statements that cannot run in a transaction block (ALTER SYSTEM, CREATE SUBSCRIPTION)."""
    with connect(url) as connection:
        connection.adbc_connection.set_autocommit(True)
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)


def as_reader(url: str) -> str:
    return url.replace("postgresql://postgres@", f"postgresql://{READER}@", 1)


@pytest.fixture
def replication(own_postgres: OwnPostgres, s3_lake_url, monkeypatch) -> Replication:
    """``totesys`` (seeded, publishing every source table) and ``replica`` (subscribed to it, its
    initial copy done) on a server with ``wal_level = logical``; ``warehouse`` beside them."""
    from tasks.sandbox.totesys import create_schema

    autocommit(own_postgres.url(), "alter system set wal_level = logical")
    own_postgres.restart()
    for name in ("totesys", "replica", "warehouse"):
        own_postgres.create_database(name)
    Pipeline(own_postgres.url("totesys"), own_postgres.url("warehouse"), s3_lake_url, monkeypatch).seed(scale=0.02)
    with connect(own_postgres.url("replica")) as connection:
        create_schema(connection, replace=False)
    tables = ", ".join(SOURCE_TABLES)
    execute(own_postgres.url("totesys"), f"create publication totes for table {tables}")
    # In a transaction of its own: a slot cannot be made in one that has written.
    assert scalar(
        own_postgres.url("totesys"), "select pg_create_logical_replication_slot('totes', 'pgoutput') is not null"
    )
    autocommit(
        own_postgres.url("replica"),
        f"create subscription totes connection 'host=127.0.0.1 port={own_postgres.port} dbname=totesys "
        "user=postgres' publication totes with (create_slot = false, slot_name = 'totes')",
    )
    execute(own_postgres.url(), f"create role {READER} login in role pg_read_all_stats")
    for database in ("totesys", "replica"):
        execute(
            own_postgres.url(database),
            f"grant usage on schema public to {READER}",
            f"grant select on all tables in schema public to {READER}",
        )
    deadline = time.monotonic() + 120
    ready = "select count(*) from pg_subscription_rel where srsubstate = 'r'"
    while scalar(own_postgres.url("replica"), ready) != len(SOURCE_TABLES):
        assert time.monotonic() < deadline, "the subscription's initial copy did not finish"
        time.sleep(0.2)
    return Replication(
        as_reader(own_postgres.url("totesys")), as_reader(own_postgres.url("replica")), own_postgres.url("totesys")
    )


def test_a_subscriber_alone_or_with_another_database_as_primary_is_refused_before_anything_is_read(
    own_postgres, replication, s3_lake_url, prefect_api, monkeypatch
):
    pipeline = Pipeline(replication.subscriber_url, own_postgres.url("warehouse"), s3_lake_url, monkeypatch)

    refusals = []
    for primary in (None, as_reader(own_postgres.url("warehouse"))):  # none; another database of the publisher
        child = pipeline.run_cli("run", env={"PREFECT_API_URL": prefect_api, "TOTES_SOURCE_PRIMARY_URL": primary})
        _, err = child.communicate(timeout=300)
        assert child.returncode == 1, err
        assert "Traceback" not in err, err
        refusals.append(err.strip().splitlines()[-1])

    alone, elsewhere = refusals
    assert alone.startswith(
        "totes run: failed: SourceIsSubscriber: the source database is a logical-replication subscriber "
        "(subscription totes)"
    ), alone
    assert "Set TOTES_SOURCE_PRIMARY_URL" in alone
    assert elsewhere.startswith(
        "totes run: failed: PrimaryMismatch: TOTES_SOURCE_PRIMARY_URL reaches database warehouse, which has no "
        "logical replication slot totes"
    ), elsewhere
    assert Lake.from_url(s3_lake_url).list_batches("raw") == []


def test_reading_a_subscriber_with_the_publisher_s_horizon_loses_no_late_commit(
    own_postgres, replication, s3_lake_url, prefect_api, monkeypatch
):
    """The issue's case: a payment updated on the publisher in a transaction left open across a run
    (newer changes commit and replicate meanwhile), then committed and applied, arrives in the next
    run."""
    publisher = Pipeline(replication.admin_publisher_url, own_postgres.url("warehouse"), s3_lake_url, monkeypatch)
    pipeline = Pipeline(replication.subscriber_url, own_postgres.url("warehouse"), s3_lake_url, monkeypatch)
    monkeypatch.setenv("TOTES_SOURCE_PRIMARY_URL", replication.publisher_url)
    pipeline.run()
    # A paid payment: the churn only pays unpaid ones and cancels an unpaid order, so it never waits for this row.
    payment_id = scalar(replication.admin_publisher_url, "select min(payment_id) from payment where paid")
    amount_in_warehouse = f"select payment_amount from current_fact_payment where payment_id = {payment_id}"
    before = Decimal(str(scalar(pipeline.warehouse_url, amount_in_warehouse)))

    writer = connect(replication.admin_publisher_url)
    try:
        with writer.cursor() as cursor:
            cursor.execute(
                "update payment set payment_amount = payment_amount + 1000, "
                f"last_updated = (now() at time zone 'UTC') where payment_id = {payment_id}"
            )
        time.sleep(2)  # the stamp well behind the clock, past the watermark's 1 s safety margin
        publisher.churn(orders=5)  # newer rows, committed and replicated while the writer is open
        pipeline.run()
        assert Decimal(str(scalar(pipeline.warehouse_url, amount_in_warehouse))) == before
        writer.commit()
    finally:
        writer.close()

    pipeline.run()  # waits for the subscriber to apply the commit
    assert Decimal(str(scalar(pipeline.warehouse_url, amount_in_warehouse))) == before + 1000
    pipeline.checkpoint()  # what the subscriber holds now, once applied
    pipeline.assert_warehouse_matches_source()
