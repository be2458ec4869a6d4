"""A hot standby as the source: a real primary and a real streaming standby (``pg_basebackup -R``),
both PostgreSQL servers of this test.

A standby's ``pg_stat_activity`` cannot see a transaction open on the primary, so a run that took
its horizon there would move the watermark past rows still uncommitted on the primary and lose them.
totes refuses a standby alone, and with ``TOTES_SOURCE_PRIMARY_URL`` takes the horizon from the
primary and reads the standby once it has replayed past the primary's position.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from tasks.core.lake import Lake
from tests.integration.conftest import OwnPostgres, Pipeline, free_port, late_orders_loaded, late_writer, scalar


@pytest.fixture
def standby(own_postgres: OwnPostgres, tmp_path) -> Iterator[OwnPostgres]:
    """A streaming hot standby of ``own_postgres`` (which holds the databases ``totesys`` and
    ``warehouse``), started from a base backup taken after they were created."""
    own_postgres.create_database("totesys")
    own_postgres.create_database("warehouse")
    data = tmp_path / "standby"
    data.mkdir()
    if own_postgres.system_user:
        shutil.chown(data, own_postgres.system_user, own_postgres.system_user)
    server = OwnPostgres(data, free_port(), own_postgres.system_user)
    server._run(
        "pg_basebackup", "-D", str(data), "-R", "-X", "stream", "-c", "fast", "-h", "127.0.0.1", "-p", str(own_postgres.port),
        "-U", "postgres", timeout=120,
    )  # fmt: skip
    data.chmod(0o700)
    server.start()
    yield server
    with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
        server.stop()


def replayed(primary: OwnPostgres, standby: OwnPostgres) -> None:
    """Wait until the standby shows everything the primary has committed."""
    position = scalar(primary.url("totesys"), "select pg_current_wal_lsn()::text")
    for _ in range(300):
        if scalar(standby.url("totesys"), "select pg_last_wal_replay_lsn() >= $1::pg_lsn", position):
            return
        time.sleep(0.1)
    pytest.fail("the standby did not catch up")


def test_a_standby_alone_is_refused_before_anything_is_read(
    own_postgres, standby, s3_lake_url, prefect_api, monkeypatch
):
    pipeline = Pipeline(own_postgres.url("totesys"), own_postgres.url("warehouse"), s3_lake_url, monkeypatch)
    pipeline.seed(scale=0.02)
    replayed(own_postgres, standby)
    monkeypatch.setenv("TOTES_SOURCE_URL", standby.url("totesys"))
    child = pipeline.run_cli("run", env={"PREFECT_API_URL": prefect_api})
    _, err = child.communicate(timeout=300)
    assert child.returncode != 0
    # The command's last line says it (Prefect's own log of the failed flow run still shows the
    # traceback before it: issue 14 quiets those).
    last = err.strip().splitlines()[-1]
    assert last.startswith("totes run: failed: SourceIsStandby: the source database is a standby"), last
    assert "TOTES_SOURCE_PRIMARY_URL" in last
    assert Lake.from_url(s3_lake_url).list_batches("raw") == []


def test_reading_a_standby_with_the_primary_s_horizon_loses_no_late_commit(
    own_postgres, standby, s3_lake_url, prefect_api, monkeypatch
):
    """A writer on the primary begins before a run and commits after it; newer rows commit (and
    replicate) meanwhile. The run reads the standby, which cannot see the open writer: only the
    primary's horizon keeps the watermark before the late row."""
    pipeline = Pipeline(own_postgres.url("totesys"), own_postgres.url("warehouse"), s3_lake_url, monkeypatch)
    pipeline.seed(scale=0.02)
    replayed(own_postgres, standby)
    monkeypatch.setenv("TOTES_SOURCE_URL", standby.url("totesys"))
    monkeypatch.setenv("TOTES_SOURCE_PRIMARY_URL", own_postgres.url("totesys"))
    pipeline.run()

    with late_writer(own_postgres.url("totesys")) as writer:
        pipeline.churn(orders=5)  # newer rows, committed on the primary while the writer is open
        pipeline.run()  # waits for the standby to replay the churn, reads it
        assert late_orders_loaded(pipeline.warehouse_url) == 0
        writer.commit()

    pipeline.run()
    assert late_orders_loaded(pipeline.warehouse_url) == 1
    pipeline.assert_warehouse_matches_source()


def test_a_primary_url_reaching_another_database_of_the_primary_is_refused(
    own_postgres, standby, s3_lake_url, prefect_api, monkeypatch
):
    """The primary's other database shares its WAL (the standby replays past its position) but not
    its sessions: a horizon read there misses the source's open transactions (issue 21, item 8)."""
    pipeline = Pipeline(own_postgres.url("totesys"), own_postgres.url("warehouse"), s3_lake_url, monkeypatch)
    pipeline.seed(scale=0.02)
    replayed(own_postgres, standby)
    monkeypatch.setenv("TOTES_SOURCE_URL", standby.url("totesys"))
    monkeypatch.setenv("TOTES_SOURCE_PRIMARY_URL", own_postgres.url("postgres"))
    child = pipeline.run_cli("run", env={"PREFECT_API_URL": prefect_api})
    _, err = child.communicate(timeout=300)
    assert child.returncode == 1, err
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("totes run: failed: PrimaryMismatch: TOTES_SOURCE_PRIMARY_URL reaches database postgres"), (
        last
    )
    assert "point it at database totesys on the standby's primary" in last
    assert Lake.from_url(s3_lake_url).list_batches("raw") == []


def test_a_declared_copy_is_refused_without_its_primary_and_read_with_the_watermark_held_back(
    pipeline, prefect_api, monkeypatch
):
    """A copy PostgreSQL does not show (AWS DMS) is declared with TOTES_SOURCE_IS_COPY: refused
    without the database it copies, and one lacking the source tables; with it, the horizon is read
    there and the watermark stays TOTES_FALLBACK_LAG_SECONDS behind its clock (its apply position
    cannot be known). Here the copy's primary is the source itself, a copy without delay."""
    pipeline.seed(scale=0.02)
    monkeypatch.setenv("TOTES_SOURCE_IS_COPY", "true")
    refusals = []
    for primary in (None, pipeline.warehouse_url):
        child = pipeline.run_cli("run", env={"PREFECT_API_URL": prefect_api, "TOTES_SOURCE_PRIMARY_URL": primary})
        _, err = child.communicate(timeout=300)
        assert child.returncode == 1, err
        assert "Traceback" not in err, err
        refusals.append(err.strip().splitlines()[-1])
    alone, elsewhere = refusals
    assert alone.startswith(
        "totes run: failed: SourceIsCopy: TOTES_SOURCE_IS_COPY says the source database is a copy"
    ), alone
    assert "Set TOTES_SOURCE_PRIMARY_URL" in alone
    assert elsewhere.startswith("totes run: failed: PrimaryMismatch: TOTES_SOURCE_PRIMARY_URL reaches database "), (
        elsewhere
    )
    assert "which has no source table(s) address, counterparty" in elsewhere
    assert Lake.from_url(pipeline.lake_url).list_batches("raw") == []

    monkeypatch.setenv("TOTES_SOURCE_PRIMARY_URL", pipeline.source_url)
    pipeline.run()
    pipeline.churn(orders=5)
    pipeline.run()
    lake = Lake.from_url(pipeline.lake_url)
    manifest = lake.read_raw_manifest(lake.list_batches("raw")[-1])
    assert manifest.horizon is not None and manifest.horizon.has_hidden_sessions
    held_back = manifest.horizon.clock_at - manifest.tables["sales_order"].watermark
    assert held_back.total_seconds() >= 900, held_back
    pipeline.assert_warehouse_matches_source()
