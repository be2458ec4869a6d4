"""A pipeline under test, and the independent check of its warehouse.

The check computes every star table from the *source* with the hand-written SQL in ``expected/``
and compares it, row by row and column by column (as PostgreSQL's text of each row), with the
warehouse. Facts keep history, so their expectation is the union of the source's versions at every
run (``Pipeline.run`` records a checkpoint before each run).
"""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest

from tasks.core.postgres import Connection, connect
from tasks.schema import DIMENSION_TABLES, FACT_TABLES, STAR_TABLES, quote_ident

EXPECTED = Path(__file__).with_name("expected")


def rows_as_text(url: str, query: str) -> Counter[str]:
    """Each row of ``query`` as PostgreSQL's text of the row, counted."""
    with connect(url) as connection, connection.cursor() as cursor:
        cursor.execute(f"select row(q.*)::text from ({query}) as q")
        return Counter(row[0] for row in cursor.fetchall())


def scalar(url: str, query: str, *parameters: object) -> object:
    with connect(url) as connection, connection.cursor() as cursor:
        cursor.execute(query, parameters=parameters or None)
        row = cursor.fetchone()
    return row[0] if row else None


def execute(url: str, *statements: str) -> None:
    with connect(url) as connection:
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
        connection.commit()


def null_units_sold(sales_order_id: int) -> tuple[str, str]:
    """Statements that give order ``sales_order_id`` a NULL ``units_sold`` (as a source without
    constraints, like the real 2024 dump, can): a bad row the product sets aside."""
    return (
        "alter table sales_order alter column units_sold drop not null",
        "update sales_order set units_sold = null, last_updated = (now() at time zone 'UTC') "
        f"where sales_order_id = {sales_order_id}",
    )


def warehouse_query(table: str) -> str:
    """A star table's columns; for a dimension, its rows not deleted in the source (the source has
    no deleted rows to compare with). Facts: every version, deleted or not (history)."""
    columns = ", ".join(quote_ident(c) for c in STAR_TABLES[table].columns)
    undeleted = " where _deleted_at is null" if table in DIMENSION_TABLES and table != "dim_date" else ""
    return f"select {columns} from {quote_ident(table)}{undeleted}"


# A sales order that a late writer inserts, stamped with its transaction's start (now()).
LATE_UNITS = 77777
_LATE_ORDER = (
    "insert into sales_order (design_id, staff_id, counterparty_id, units_sold, unit_price, "
    "currency_id, agreed_delivery_date, agreed_payment_date, agreed_delivery_location_id, "
    "created_at, last_updated) "
    f"values (1, 1, 1, {LATE_UNITS}, 3.33, 1, '2024-03-01', '2024-03-02', 1, "
    "(now() at time zone 'UTC'), (now() at time zone 'UTC'))"
)


@contextmanager
def late_writer(source_url: str, *, stamped_seconds_ago: float = 2.0) -> Iterator[Connection]:
    """A writer that has begun a transaction, inserted a sales order stamped with its start, and not
    committed yet (the block commits it); ``stamped_seconds_ago`` puts the stamp well behind the
    clock, past the watermark's 1 s safety margin."""
    writer = connect(source_url)
    try:
        with writer.cursor() as cursor:
            cursor.execute(_LATE_ORDER)
        time.sleep(stamped_seconds_ago)
        yield writer
    finally:
        writer.close()


def late_orders_loaded(warehouse_url: str) -> object:
    return scalar(warehouse_url, f"select count(*) from fact_sales_order where units_sold = {LATE_UNITS}")


class Pipeline:
    """Source, lake and warehouse of one test, with the commands a user would run."""

    def __init__(self, source_url: str, warehouse_url: str, lake_url: str, monkeypatch: pytest.MonkeyPatch):
        self.source_url = source_url
        self.warehouse_url = warehouse_url
        self.lake_url = lake_url
        # Fact versions the warehouse must hold (the source held them when a run that completed
        # started), and those it may hold (the source held them at some run's start, perhaps a run
        # killed before it read them: a version overwritten before any completed read is
        # unobservable without CDC).
        self.fact_versions: dict[str, set[str]] = {table: set() for table in FACT_TABLES}
        self.possible_versions: dict[str, set[str]] = {table: set() for table in FACT_TABLES}
        monkeypatch.setenv("TOTES_SOURCE_URL", source_url)
        monkeypatch.setenv("TOTES_WAREHOUSE_URL", warehouse_url)
        monkeypatch.setenv("TOTES_LAKE_URL", lake_url)

    def seed(self, scale: float = 0.05) -> dict[str, int]:
        from tasks.sandbox.totesys import seed_generated

        with connect(self.source_url) as connection:
            return seed_generated(connection, scale)

    def churn(self, orders: int = 20) -> None:
        from tasks.sandbox.totesys import churn

        with connect(self.source_url) as connection:
            churn(connection, orders=orders)

    def source_versions(self) -> dict[str, set[str]]:
        return {
            table: set(rows_as_text(self.source_url, (EXPECTED / f"{table}.sql").read_text())) for table in FACT_TABLES
        }

    def checkpoint(self, versions: dict[str, set[str]] | None = None, *, required: bool = True) -> None:
        """Record the fact versions the source holds now (or ``versions``): the warehouse must keep
        each of them, or, with ``required=False`` (a run that may not have read them), may."""
        versions = versions or self.source_versions()
        for table in FACT_TABLES:
            self.possible_versions[table] |= versions[table]
            if required:
                self.fact_versions[table] |= versions[table]

    def run(self):
        from flows.etl import totesys_etl

        self.checkpoint()
        return totesys_etl()

    def run_cli(
        self, *args: str, env: dict[str, str | None] | None = None, verbose: bool = False, **popen: object
    ) -> subprocess.Popen:
        """``totes <args>`` in a child process with this pipeline's settings (``env`` adds variables;
        one set to None is removed). ``verbose``: ``totes -v``, every task run's lines (a test that
        waits for a given task to start, or checks everything logged, needs them)."""
        child_env = {name: value for name, value in (dict(os.environ) | (env or {})).items() if value is not None}
        return subprocess.Popen(
            [sys.executable, "-m", "flows.cli", *(["-v"] if verbose else []), *args],
            env=child_env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            **popen,
        )

    def warehouse_rows(self, table: str) -> Counter[str]:
        return rows_as_text(self.warehouse_url, warehouse_query(table))

    def snapshot(self) -> dict[str, Counter[str]]:
        """Every star table's rows, lineage and serial ids included."""
        return {table: rows_as_text(self.warehouse_url, f"select * from {quote_ident(table)}") for table in STAR_TABLES}

    def assert_warehouse_matches_source(self) -> None:
        """Compare every star table with the independent expectation from the source."""
        problems = []
        for table in FACT_TABLES:
            actual = self.warehouse_rows(table)
            duplicates = [row for row, n in actual.items() if n > 1]
            if duplicates:
                problems.append(f"{table}: {len(duplicates)} duplicated versions, e.g. {duplicates[:2]}")
            missing = self.fact_versions[table] - set(actual)
            extra = set(actual) - self.fact_versions[table] - self.possible_versions[table]
            if missing or extra:
                problems.append(
                    f"{table}: {len(missing)} missing (e.g. {sorted(missing)[:2]}), "
                    f"{len(extra)} unexpected (e.g. {sorted(extra)[:2]})"
                )
        for table in STAR_TABLES:
            if table in FACT_TABLES or table == "dim_date":
                continue
            expected = rows_as_text(self.source_url, (EXPECTED / f"{table}.sql").read_text())
            actual = self.warehouse_rows(table)
            if expected != actual:
                problems.append(
                    f"{table}: missing {sorted((expected - actual).elements())[:2]}, "
                    f"unexpected {sorted((actual - expected).elements())[:2]}"
                )
        dates = self.warehouse_rows("dim_date")
        recomputed = rows_as_text(self.warehouse_url, (EXPECTED / "dim_date_attributes.sql").read_text())
        if dates != recomputed:
            problems.append(f"dim_date attributes differ: {sorted((dates - recomputed).elements())[:2]}")
        span = scalar(self.warehouse_url, "select (max(date_id) - min(date_id) + 1) - count(*) from dim_date")
        if span:
            problems.append(f"dim_date is not contiguous: {span} day(s) missing inside its range")
        referenced = rows_as_text(self.source_url, (EXPECTED / "referenced_dates.sql").read_text())
        covered = rows_as_text(self.warehouse_url, "select date_id from dim_date")
        if set(referenced) - set(covered):
            problems.append(f"dim_date lacks referenced dates {sorted(set(referenced) - set(covered))[:3]}")
        assert not problems, "warehouse differs from the source:\n" + "\n".join(problems)


@pytest.fixture
def pipeline(databases, s3_lake_url, prefect_api, monkeypatch) -> Pipeline:
    """A pipeline on a fresh source and warehouse, with its lake in a fresh bucket of the S3 server."""
    return Pipeline(databases.source_url, databases.warehouse_url, s3_lake_url, monkeypatch)


@pytest.fixture
def sns_inbox(s3_endpoint):
    """An SNS topic with an SQS queue subscribed to it, on the moto server."""
    sns = boto3.client("sns", endpoint_url=s3_endpoint)
    sqs = boto3.client("sqs", endpoint_url=s3_endpoint)
    topic = sns.create_topic(Name=f"totes-alerts-{uuid.uuid4().hex[:8]}")["TopicArn"]
    queue_url = sqs.create_queue(QueueName=f"inbox-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)

    def received() -> list[dict]:
        """The alerts not received before (each is deleted once read: an SQS message left in the queue
        comes back after its 30 s visibility timeout, and a slow test would count it twice)."""
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=2)
        for message in messages.get("Messages", []):
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        return [json.loads(m["Body"]) for m in messages.get("Messages", [])]

    return topic, received


# --- file feeds: a real SFTP server on 127.0.0.1 and a versioned bucket ---------------------------

FEED_DIR = "exchange-rates"
RATES = {"GBP": Decimal("1"), "USD": Decimal("1.26340000"), "EUR": Decimal("1.16880000")}


def rates_file(first_day: date, days: int, rates: dict[str, Decimal] = RATES) -> bytes:
    from tasks.sandbox.sample_feeds import exchange_rates_csv

    return exchange_rates_csv([first_day + timedelta(n) for n in range(days)], rates)


class Feeds:
    """The SFTP folder, the feed store and the warehouse of one test."""

    def __init__(self, sftp_root: Path, files_url: str, warehouse_url: str):
        self.folder = sftp_root / FEED_DIR
        self.folder.mkdir(parents=True, exist_ok=True)
        self.files_url = files_url
        self.warehouse_url = warehouse_url
        self._clock = int(time.time()) - 10_000

    def drop(self, name: str, content: bytes) -> None:
        """Put a file on the SFTP server, with a fresh mtime (as a partner's upload would)."""
        path = self.folder / name
        path.write_bytes(content)
        self._clock += 10
        os.utime(path, (self._clock, self._clock))

    def remove(self, name: str) -> None:
        (self.folder / name).unlink()

    def run(self, *feeds: str):
        from flows.files import totesys_files

        return totesys_files(feeds=list(feeds) or None)

    def expected(self, *, skip: tuple[str, ...] = ()) -> Counter[str]:
        """The rows the files on SFTP hold, as the warehouse should show them."""
        rows: Counter[str] = Counter()
        for path in sorted(self.folder.glob("*.csv")):
            if path.name in skip:
                continue
            reader = csv.reader(io.StringIO(path.read_text()))
            next(reader)
            for line, (day, code, rate) in enumerate(reader, start=2):
                rows[f"({day},{code},{Decimal(rate):.8f},{FEED_DIR}/{path.name},{line})"] += 1
        return rows

    def actual(self) -> Counter[str]:
        return rows_as_text(
            self.warehouse_url,
            "select r.rate_date, c.currency_code, r.rate_to_gbp, r._source_file, r._source_line "
            "from fact_exchange_rate r join dim_currency c using (currency_id)",
        )

    def snapshot(self) -> Counter[str]:
        """Every column, the record ids and load times included: a no-op run must not touch any."""
        return rows_as_text(self.warehouse_url, "select * from fact_exchange_rate") + rows_as_text(
            self.warehouse_url, "select * from _totes_feed_file"
        )

    def store(self):
        from tasks.feeds.store import FeedStore

        return FeedStore(self.files_url)


@pytest.fixture
def sftp_server(tmp_path, monkeypatch):
    from tasks.sandbox.sftp_server import LoopbackSftpServer

    password = secrets.token_urlsafe(12)
    with LoopbackSftpServer(tmp_path / "sftp", password=password) as server:
        monkeypatch.setenv("TOTES_SFTP_URL", server.url)
        monkeypatch.setenv("TOTES_SFTP_KNOWN_HOSTS", str(server.write_known_hosts(tmp_path / "known_hosts")))
        yield server


@pytest.fixture
def versioned_files_url(s3_endpoint, monkeypatch) -> str:
    bucket = f"raw-{uuid.uuid4().hex[:12]}"
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    url = f"s3://{bucket}/files"
    monkeypatch.setenv("TOTES_FILES_URL", url)
    return url


def install_currencies(warehouse_url: str, codes: dict[int, str]) -> None:
    """The warehouse's dim_currency as the ETL would have loaded it from ToteSys."""
    from tasks.core.postgres import connect
    from tasks.core.warehouse import migrate_warehouse_schema as migrate

    with connect(warehouse_url) as connection:
        migrate(connection)
    execute(
        warehouse_url,
        *(
            f"insert into dim_currency values ({currency_id}, '{code}', '{code} name', 'test') on conflict do nothing"
            for currency_id, code in codes.items()
        ),
    )


# --- a Prefect server of one test ----------------------------------------------------------------

PREFECT = str(Path(sys.executable).with_name("prefect"))


def wait_for(predicate, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def wait_for_trusted_counts(source_url: str, timeout: float = 60) -> None:
    """Wait until the source's write counts can be trusted (no other session busy in the last 11 s),
    as a run would see them: a test's own reads or a run's children may have just ended."""
    from tasks.ingest.source import read_source_activity

    because: list[str | None] = [None]

    def trusted() -> bool:
        with connect(source_url) as connection:
            because[0] = read_source_activity(connection).untrusted_because
        return because[0] is None

    deadline = time.monotonic() + timeout
    while not trusted():
        if time.monotonic() > deadline:
            pytest.fail(f"the source's write counts stayed untrusted for {timeout:.0f} s: {because[0]}")
        time.sleep(0.5)


def create_downstream_deployment(api_url: str) -> str:
    """A deployment standing for a user's downstream job (dbt, a report) on the server: its id. No
    worker runs it: a test checks that an automation creates its flow run."""
    flow = call_api(api_url, "/flows/", {"name": "downstream-report"})
    deployment = call_api(api_url, "/deployments/", {"name": "after-totes", "flow_id": flow["id"]})
    return deployment["id"]


def call_api(api_url: str, path: str, body: dict | None = None) -> Any:
    """A Prefect REST API call: POST ``body`` as JSON (GET without one); the JSON answer."""
    request = urllib.request.Request(
        f"{api_url}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"},
        method="POST" if body is not None else "GET",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture
def deployed_pipeline(databases, s3_lake_url, monkeypatch) -> Pipeline:
    """A seeded pipeline for runs on a Prefect server's deployments (its settings in the environment
    that workers and served flows inherit)."""
    pipeline = Pipeline(databases.source_url, databases.warehouse_url, s3_lake_url, monkeypatch)
    pipeline.seed(scale=0.02)
    pipeline.checkpoint()
    return pipeline


@pytest.fixture
def local_prefect_home(tmp_path, monkeypatch) -> Iterator[Path]:
    """A PREFECT_HOME for runs without PREFECT_API_URL: the local Prefect server the first of them
    starts there in the background is stopped after the test."""
    from flows.cli.local_api import stop_local_api

    home = tmp_path / "prefect-home"
    yield home
    with monkeypatch.context() as scoped:
        scoped.setenv("PREFECT_HOME", str(home))
        stop_local_api()


@pytest.fixture(scope="session")
def migrated_prefect_database(tmp_path_factory) -> Path:
    """A Prefect server database with every migration applied, made once per test worker: a server
    started on a copy skips the migrations (about 8 s and 3 s of CPU a server here)."""
    home = tmp_path_factory.mktemp("prefect-template")
    env = dict(os.environ, PREFECT_HOME=str(home))
    env.pop("PREFECT_API_URL", None)
    env.pop("PREFECT_SERVER_DATABASE_CONNECTION_URL", None)
    subprocess.run([PREFECT, "server", "database", "upgrade", "-y"], env=env, check=True, capture_output=True)
    return home / "prefect.db"


@pytest.fixture
def prefect_server(tmp_path_factory, migrated_prefect_database) -> str:
    """A real Prefect server process on 127.0.0.1 with its own home and database, per test: a
    served deployment must not inherit the pull steps of a prefect.yaml deployment of the same name."""
    import sqlite3

    home = tmp_path_factory.mktemp("prefect-home")
    template, copy = sqlite3.connect(migrated_prefect_database), sqlite3.connect(home / "prefect.db")
    try:
        template.backup(copy)
    finally:
        template.close()
        copy.close()
    port = free_port()
    env = dict(os.environ, PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_UI_ENABLED="false")
    env.pop("PREFECT_API_URL", None)
    server = subprocess.Popen(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/api"
    try:
        wait_for(lambda: _healthy(url), timeout=90, what="prefect server start")
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


# --- a PostgreSQL server of one test ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class OwnPostgres:
    """A PostgreSQL server of one test, on 127.0.0.1:<port> (TCP only), that the test may restart."""

    data: Path
    port: int
    system_user: str | None
    # Server settings of the test's own (e.g. a lock table scaled down), applied by configure().
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def _options(self) -> str:
        # Durability settings off: the tests restart the server cleanly or crash only its sessions.
        settings = {"fsync": "off", "full_page_writes": "off", "synchronous_commit": "off", "max_connections": "60"}
        return f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' " + " ".join(
            f"-c {name}={value}" for name, value in (settings | self.settings).items()
        )

    def configure(self, **settings: object) -> None:
        """Restart the server with these settings (``max_locks_per_transaction=10``, ...) on top of
        the tests' own."""
        self.settings |= {name: str(value) for name, value in settings.items()}
        self.restart()

    def _run(self, binary: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        from pgserver._commands import POSTGRES_BIN_PATH

        return subprocess.run(
            [str(POSTGRES_BIN_PATH / binary), *args],
            user=self.system_user,
            check=True,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def pg_ctl(self, action: str, *args: str) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.data / "server.log"), "-w", "-t", "60", *args, action)

    def start(self) -> None:
        self.pg_ctl("start", "-o", self._options)

    def restart(self, mode: str = "fast") -> None:
        self.pg_ctl("restart", "-m", mode, "-o", self._options)

    def stop(self) -> None:
        self.pg_ctl("stop", "-m", "immediate")

    def url(self, database: str = "postgres", *, port: int | None = None, password: str | None = None) -> str:
        secret = f":{password}" if password else ""
        return f"postgresql://postgres{secret}@127.0.0.1:{port or self.port}/{database}"

    def require_password(self, password: str) -> None:
        """From now on, TCP logins need ``password`` (scram-sha-256), as a real server's do."""
        execute(self.url(), f"alter user postgres password '{password}'")
        (self.data / "pg_hba.conf").write_text("host all all 127.0.0.1/32 scram-sha-256\n")
        self.pg_ctl("reload")

    def create_database(self, name: str) -> None:
        from tasks.core.postgres import connect

        with connect(self.url()) as admin:
            admin.adbc_connection.set_autocommit(True)
            with admin.cursor() as cursor:
                cursor.execute(f'create database "{name}"')


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[OwnPostgres]:
    """A fresh PostgreSQL server for this test alone, stopped (immediately) afterwards."""
    from pgserver._commands import POSTGRES_BIN_PATH

    data = tmp_path / "pg"
    data.mkdir()
    system_user = None
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as pgserver's own system user
        from pgserver.utils import ensure_prefix_permissions, ensure_user_exists

        system_user = "pgserver"
        entry = ensure_user_exists(system_user)
        ensure_prefix_permissions(data)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        shutil.chown(data, entry.pw_uid, entry.pw_gid)
    server = OwnPostgres(data, free_port(), system_user)
    server._run("initdb", "-D", str(data), "--auth=trust", "-U", "postgres", "--encoding=utf8", "--no-sync")
    server.start()
    yield server
    try:
        server.stop()
    except subprocess.CalledProcessError:
        pass  # already stopped
