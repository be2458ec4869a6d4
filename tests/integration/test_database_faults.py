"""Database faults, provoked for real on PostgreSQL servers the tests start themselves.

* The warehouse server restarts (``pg_ctl restart``) while the load's COPY is in progress: the
  batch's transaction is rolled back whole, the load task retries, and the batch is loaded once.
* The source is unreachable (behind a TCP proxy that the test cuts) for longer than the retries
  last: the run fails naming the source database (password redacted), alerts, and moves no
  watermark; once the source is back, the next run converges.
* A source statement times out (an operator's ``statement_timeout`` and a lock held by another
  session): same expectations.

The shared test server listens on a unix socket only and its restart would stop every other test's
databases, so these tests start their own server (the ``pgserver`` wheel's binaries) on 127.0.0.1.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import boto3

from tests.integration.conftest import Pipeline, execute, scalar
from tests.integration.test_faults import CuttableProxy
from tests.integration.test_pipeline import install_trigger

PASSWORD = "Db-Fault-S3cret"  # in the source URL behind the proxy: no message may show it


def raw_manifests(lake_url: str) -> list[str]:
    """Keys of the lake's ingest manifests (one per recorded batch: they hold the watermarks)."""
    parts = urlsplit(lake_url)
    listing = boto3.client("s3").list_objects_v2(Bucket=parts.netloc, Prefix=f"{parts.path.strip('/')}/raw/_batches/")
    return sorted(item["Key"] for item in listing.get("Contents", []))


def star_manifests(lake_url: str) -> list[str]:
    parts = urlsplit(lake_url)
    listing = boto3.client("s3").list_objects_v2(Bucket=parts.netloc, Prefix=f"{parts.path.strip('/')}/star/_batches/")
    return sorted(Path(item["Key"]).stem for item in listing.get("Contents", []))


def wait_for(condition, *, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


# --- 1. the warehouse server restarts in the middle of the load's COPY ---------------------------

STALLED_COPY = (
    "select pid from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid() "
    "and query ilike 'copy%fact_sales_order%' and wait_event = 'PgSleep'"
)
STAR_ROWS = (
    "select (select count(*) from dim_staff) + (select count(*) from dim_location) "
    "+ (select count(*) from fact_payment) + (select count(*) from fact_purchase_order) "
    "+ (select count(*) from fact_sales_order) + (select count(*) from _totes_loaded_batch)"
)


# A first load drops a star table's indexes until it commits: a reader of that table waits for the
# commit rather than see it empty, so "nothing visible yet" is either no rows or a lock.
LOCKED = "locked until the load commits"


def visible_star_rows(url: str) -> object:
    """The star rows a reader sees now, or LOCKED if it would have to wait for the load's commit."""
    from tasks.core.postgres import DatabaseError, connect

    with connect(url) as connection, connection.cursor() as cursor:
        cursor.execute("set lock_timeout = '500ms'")
        try:
            cursor.execute(STAR_ROWS)
        except DatabaseError as error:
            if "lock timeout" in str(error):
                return LOCKED
            raise
        return cursor.fetchone()[0]


def test_warehouse_server_restart_during_copy_rolls_back_and_loads_once(
    databases, own_postgres, s3_lake_url, prefect_api, monkeypatch
):
    """``pg_ctl restart -m fast`` of the warehouse's own server while the load transaction is in the
    COPY into fact_sales_order (after the dimensions and the two other facts): the server rolls the
    transaction back, the load task's retry loads the whole batch, once."""
    from tasks.core.postgres import connect
    from tasks.core.warehouse import migrate_warehouse_schema as migrate

    own_postgres.create_database("warehouse")
    pipeline = Pipeline(databases.source_url, own_postgres.url("warehouse"), s3_lake_url, monkeypatch)
    pipeline.seed(scale=0.02)
    with connect(pipeline.warehouse_url) as connection:
        migrate(connection)  # the star schema, so the stall can be installed before the first load
    # The COPY into fact_sales_order waits (in the server, inside the load's transaction) until the
    # test inserts a row into _test_release; a row the load's rollback cannot take back.
    execute(pipeline.warehouse_url, "create table _test_release (released boolean)")
    install_trigger(
        pipeline.warehouse_url,
        "stall",
        table="fact_sales_order",
        per="statement",
        body="for i in 1..600 loop exit when exists (select from _test_release); perform pg_sleep(0.1); "
        "end loop; return null;",
    )
    seen: dict[str, object] = {}
    failures: list[BaseException] = []

    def restart_the_warehouse_mid_copy() -> None:
        try:
            wait_for(
                lambda: scalar(pipeline.warehouse_url, STALLED_COPY),
                seconds=120,
                what="the load's COPY into fact_sales_order",
            )
            seen["rows_during_first_copy"] = visible_star_rows(pipeline.warehouse_url)
            started = scalar(pipeline.warehouse_url, "select pg_postmaster_start_time()")
            own_postgres.restart("fast")
            seen["restarted"] = scalar(pipeline.warehouse_url, "select pg_postmaster_start_time()") != started
            # The load task's retry (a new session on the restarted server) reaches the same COPY.
            wait_for(lambda: scalar(pipeline.warehouse_url, STALLED_COPY), seconds=60, what="the load task's retry")
            seen["rows_during_retry"] = visible_star_rows(pipeline.warehouse_url)
        except BaseException as error:  # noqa: BLE001 - reported by the test below
            failures.append(error)
        finally:
            for _ in range(100):  # never leave the load stalled, whatever happened
                try:
                    execute(pipeline.warehouse_url, "insert into _test_release values (true)")
                    break
                except Exception:  # noqa: BLE001 - the server may still be starting
                    time.sleep(0.2)

    controller = threading.Thread(target=restart_the_warehouse_mid_copy, daemon=True)
    controller.start()
    summary = pipeline.run()  # succeeds: the restart is a transient fault
    controller.join(timeout=60)
    assert not failures, failures
    assert seen["rows_during_first_copy"] in (0, LOCKED), "the load transaction's work was visible before its commit"
    assert seen["restarted"], "the warehouse server did not restart"
    # Locked: the retry loads the still-empty tables again (with their indexes dropped until it
    # commits), so nothing of the interrupted attempt survived in them.
    assert seen["rows_during_retry"] in (0, LOCKED), "part of the interrupted batch survived the restart"

    batches = star_manifests(pipeline.lake_url)
    loaded = scalar(
        pipeline.warehouse_url, "select string_agg(batch_id, ',' order by batch_id) from _totes_loaded_batch"
    )
    assert loaded.split(",") == batches == summary.batches_loaded, "each star batch must be recorded once"
    assert scalar(pipeline.warehouse_url, "select count(*) from fact_sales_order") > 0
    pipeline.assert_warehouse_matches_source()


# --- 2. the source is unreachable for longer than the retries last ------------------------------


def failed_run(pipeline: Pipeline, prefect_api: str, alert_topic: str) -> tuple[int, str]:
    """``totes run`` in a child process that alerts to ``alert_topic`` (the other runs of a test do
    not, so that the only alert is this run's): (exit status, the last line of its stderr)."""
    child = pipeline.run_cli("run", env={"PREFECT_API_URL": prefect_api, "TOTES_ALERT_SNS_TOPIC_ARN": alert_topic})
    try:
        _, stderr = child.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        raise
    lines = [line for line in stderr.splitlines() if line.startswith("totes run:")]
    return child.returncode, lines[-1] if lines else stderr[-2000:]


def test_source_unreachable_fails_clearly_alerts_and_moves_no_watermark(
    databases, own_postgres, s3_lake_url, prefect_api, sns_inbox, monkeypatch
):
    """ToteSys goes away (every connection reset, new ones refused) before a run and stays away for
    longer than the task retries last (2 + 4 + 8 + 16 s, +/-50 %)."""
    topic, received = sns_inbox
    own_postgres.create_database("totesys")
    proxy = CuttableProxy(("127.0.0.1", own_postgres.port))
    source_url = own_postgres.url("totesys", port=proxy.port, password=PASSWORD)
    try:
        pipeline = Pipeline(source_url, databases.warehouse_url, s3_lake_url, monkeypatch)
        pipeline.seed(scale=0.02)
        pipeline.run()
        pipeline.churn(orders=10)
        manifests, warehouse = raw_manifests(pipeline.lake_url), pipeline.snapshot()

        proxy.cut()
        status, message = failed_run(pipeline, prefect_api, topic)
        assert proxy.broken > 0, "the run never reached the source"
        assert status == 1, message
        alerts = received()
        assert len(alerts) == 1, alerts
        assert raw_manifests(pipeline.lake_url) == manifests, "a failed ingest recorded a batch (moved a watermark)"
        assert pipeline.snapshot() == warehouse

        proxy.restore()
        pipeline.run()
        assert len(raw_manifests(pipeline.lake_url)) == len(manifests) + 1
        pipeline.assert_warehouse_matches_source()
    finally:
        proxy.close()

    # What the operator reads: checked last, so that the behaviour above is checked whatever they say.
    redacted = f"postgresql://postgres:***@127.0.0.1:{proxy.port}/totesys"
    alert = alerts[0]
    assert PASSWORD not in message and PASSWORD not in str(alert)
    assert message.startswith(
        f"totes run: failed: ConnectionFailed: cannot connect to the source database {redacted}: "
    ), message
    assert f"cannot connect to the source database {redacted}" in alert["Message"], alert["Message"]
    # The failing task, as the task is named (the 3 characters Prefect appends to a run's name are noise).
    assert alert["Subject"] == "totes: totesys-etl (run without a deployment) failed in read-source-horizon", alert[
        "Subject"
    ]


# --- 3. a source statement times out ------------------------------------------------------------


def test_source_statement_timeout_fails_clearly_alerts_and_moves_no_watermark(pipeline, sns_inbox, prefect_api):
    """The source's operator caps statements at 500 ms (``statement_timeout`` on the database) and a
    long maintenance transaction holds an ACCESS EXCLUSIVE lock on sales_order for longer than the
    retries last: the read of sales_order times out on every attempt (SQLSTATE 57014)."""
    from tasks.core.postgres import connect

    topic, received = sns_inbox
    pipeline.seed(scale=0.02)
    pipeline.run()
    pipeline.churn(orders=10)
    manifests, warehouse = raw_manifests(pipeline.lake_url), pipeline.snapshot()
    database = urlsplit(pipeline.source_url).path.strip("/")
    execute(pipeline.source_url, f"alter database \"{database}\" set statement_timeout = '500ms'")
    maintenance = connect(pipeline.source_url)
    try:
        with maintenance.cursor() as cursor:
            cursor.execute("set statement_timeout = 0")
            cursor.execute("lock table sales_order in access exclusive mode")  # held until rollback

        status, message = failed_run(pipeline, prefect_api, topic)
    finally:
        maintenance.rollback()
        maintenance.close()

    assert status == 1, message
    alerts = received()
    assert len(alerts) == 1, alerts
    assert raw_manifests(pipeline.lake_url) == manifests, "a failed ingest recorded a batch (moved a watermark)"
    assert pipeline.snapshot() == warehouse

    pipeline.run()  # the lock is gone; the 500 ms cap stays, as the operator set it
    assert len(raw_manifests(pipeline.lake_url)) == len(manifests) + 1
    execute(pipeline.source_url, f'alter database "{database}" reset statement_timeout')
    pipeline.assert_warehouse_matches_source()

    # What the operator reads: checked last, so that the behaviour above is checked whatever they say.
    # It must say what timed out: the read of source table sales_order, in the source database.
    alert = alerts[0]
    assert alert["Subject"] == "totes: totesys-etl (run without a deployment) failed in extract-sales_order", alert[
        "Subject"
    ]
    assert "statement timeout" in alert["Message"], alert["Message"]
    assert message.startswith("totes run: failed: ") and "statement timeout" in message, message
    assert "sales_order" in message and "source database" in message, (
        f"the one-line reason does not name the table whose read timed out, nor the database: {message!r}"
    )
    assert "sales_order" in alert["Message"].split("Error: ", 1)[1], alert["Message"]
