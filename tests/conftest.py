"""Real components for the tests, started by the tests themselves.

* PostgreSQL: the ``pgserver`` wheel's own server binaries, in a temporary folder; each test gets
  fresh source and warehouse databases.
* S3: moto's standalone server (``ThreadedMotoServer``) on 127.0.0.1, reached over HTTP by s3fs
  through ``AWS_ENDPOINT_URL``; each test gets its own bucket.
* Prefect: ``prefect_test_harness``, one temporary API for the whole session; commands run without
  ``PREFECT_API_URL`` share totes's local background server, in the session's own PREFECT_HOME.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data" / "totesys-2024-02.sql.gz"

# The processes the tests start (totes commands, workers' flow runs) run totes as installed: without
# pandas, which only the benchmark's baseline needs (it removes this path). Arrow imports pandas when
# it is there: 0.2 s of CPU in each of some 250 processes, and a product path that needed it would
# pass here and fail in production. See bench/without_pandas.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(REPO / "bench" / "without_pandas"), *filter(None, [os.environ.get("PYTHONPATH")])]
)


# The longest tests (one to four minutes each in CI), started first: pytest-xdist hands tests out in
# collection order, and one of them left to the end runs alone while the other worker idles.
SLOWEST_FIRST = (
    "test_fan_out.py",
    "test_ecs_worker.py",
    "test_bench.py",
    "test_chaos.py",
    "test_one_writer.py",
    "test_database_faults.py",
    "test_assets.py",
    "test_deployments.py",
    "test_status.py",
    "test_demo.py",
    "test_subscriber.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = "integration" if "integration" in item.path.parts else "unit"
        item.add_marker(getattr(pytest.mark, tier))
    rank = {name: position for position, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


@pytest.fixture(scope="session", autouse=True)
def local_prefect_api_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The PREFECT_HOME of the commands the tests run without PREFECT_API_URL: the local Prefect
    server the first of them starts in the background (as a user's would) lives in a folder of the
    test session's, never the user's ``~/.prefect``, and is stopped when the session ends."""
    from flows.cli.local_api import stop_local_api

    home = tmp_path_factory.mktemp("prefect-home")
    before = os.environ.get("PREFECT_HOME")
    os.environ["PREFECT_HOME"] = str(home)
    yield home
    stop_local_api()
    if before is None:
        os.environ.pop("PREFECT_HOME", None)
    else:
        os.environ["PREFECT_HOME"] = before


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a real PostgreSQL server running for the whole session."""
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="delete")
    yield server.get_uri()
    server.cleanup()


@dataclass(frozen=True)
class Databases:
    source_url: str
    warehouse_url: str


@pytest.fixture
def databases(postgres_server: str) -> Iterator[Databases]:
    """A fresh, empty source and warehouse database for one test, dropped afterwards."""
    from tasks.core.postgres import connect
    from tasks.sandbox.embedded_postgres import database_url

    suffix = uuid.uuid4().hex[:10]
    names = (f"source_{suffix}", f"warehouse_{suffix}")
    with connect(postgres_server) as admin:
        admin.adbc_connection.set_autocommit(True)
        with admin.cursor() as cursor:
            for name in names:
                cursor.execute(f'create database "{name}"')
    yield Databases(*(database_url(postgres_server, name) for name in names))
    with connect(postgres_server) as admin:
        admin.adbc_connection.set_autocommit(True)
        with admin.cursor() as cursor:
            for name in names:
                cursor.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 API over HTTP: moto's server on 127.0.0.1."""
    from moto.server import ThreadedMotoServer

    # One log record per request otherwise (thousands a test), each formatted into the test's capture.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    saved = {
        k: os.environ.get(k)
        for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    }
    os.environ.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing-secret",
        AWS_DEFAULT_REGION="us-east-1",
    )
    yield endpoint
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def s3_lake_url(s3_endpoint: str) -> str:
    """``s3://<fresh bucket>/lake`` on the moto server."""
    import boto3

    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    return f"s3://{bucket}/lake"


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """One temporary Prefect API for the session (starting one costs ~10 s)."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield PREFECT_API_URL.value()
