"""Fan-out (``TOTES_FAN_OUT``) on a real Prefect server, a real ``process`` work pool and two real
workers: each source table's extract runs as a child flow run of ``extract-table`` in a process
of its own, and the cycle alone records the batch.

* Only the tables worth a child's start-up get one (``TOTES_FAN_OUT_MIN_ROWS``, here set between
  the source's fourth- and fifth-biggest tables); the cycle reads the others itself. The warehouse
  equals the source (the same independent expectation as the single-process run), and both
  workers ran children. A no-op fan-out run starts no child at all.
* A child that fails (its read times out against a lock, on every retry) and a child killed with
  SIGKILL mid-read (its worker reports it Crashed) fail the cycle, which records nothing. The next
  run (in one process) converges at once: the killed child's slot is still leased, and the run
  reads with the slots that are free.
* Children their worker cannot start (the command that starts them is missing until the first
  has crashed) are submitted again, and the cycle completes.

ECS, where the children run in production, cannot run here: the process pool runs the same
deployment from a checkout instead of an image.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from urllib.parse import urlsplit

import pytest

from tasks.core.postgres import connect
from tasks.schema import SOURCE_TABLES
from tests.conftest import REPO
from tests.integration.conftest import PREFECT, Pipeline, execute, wait_for, wait_for_trusted_counts
from tests.integration.test_database_faults import raw_manifests
from tests.integration.test_deployments import prefect


def child_runs(api_url: str) -> list[dict]:
    """Every flow run of the extract-table flow, newest first."""
    request = urllib.request.Request(
        f"{api_url}/flow_runs/filter",
        data=json.dumps({"flows": {"name": {"any_": ["extract-table"]}}, "sort": "START_TIME_DESC"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - the test's own local server
        return json.load(response)


def running_child(api_url: str, table: str) -> dict | None:
    """The extract-table run of ``table`` that is running in a process now, if any."""
    for run in child_runs(api_url):
        if run["parameters"].get("table") == table and run["state_type"] == "RUNNING" and run.get("infrastructure_pid"):
            return run
    return None


def set_statement_timeout(url: str, database: str, value: str) -> None:
    """The source operator's cap on statements, for every new session of the database."""
    with connect(url) as admin, admin.cursor() as cursor:
        cursor.execute(f'alter database "{database}" set statement_timeout = {value}')
        admin.commit()


def fan_out_run(pipeline: Pipeline, api_url: str, min_rows: int) -> subprocess.Popen:
    return pipeline.run_cli(
        "run", env={"PREFECT_API_URL": api_url, "TOTES_FAN_OUT": "true", "TOTES_FAN_OUT_MIN_ROWS": str(min_rows)}
    )


def biggest_tables(url: str, count: int) -> tuple[int, set[str]]:
    """A row count between the source's ``count``-th and next biggest tables, and those tables."""
    with connect(url) as connection, connection.cursor() as cursor:
        rows = {}
        for name in SOURCE_TABLES:
            cursor.execute(f"select count(*) from {name}")  # noqa: S608 - our schema's table names
            rows[name] = int(cursor.fetchone()[0])
    ranked = sorted(rows.items(), key=lambda item: -item[1])
    above, below = ranked[count - 1][1], ranked[count][1]
    assert above > 2 * below, f"no clear gap after the {count} biggest tables: {ranked}"
    return (above + below) // 2, {name for name, _ in ranked[:count]}


@pytest.fixture
def two_workers(prefect_server, deployed_pipeline, tmp_path):
    """The extract-table deployment on a process pool, and two workers of that pool."""
    prefect(prefect_server, "work-pool", "create", "totes-local", "--type", "process")
    prefect(
        prefect_server,
        "deploy",
        "--prefect-file",
        "deployments/local.prefect.yaml",
        "--name",
        "totesys-extract-table",
        env={"TOTES_HOME": str(REPO)},
    )
    env = dict(os.environ, PREFECT_API_URL=prefect_server, TOTES_HOME=str(REPO), PREFECT_WORKER_QUERY_SECONDS="1")
    workers = []
    for number in (1, 2):
        log = open(tmp_path / f"worker-{number}.log", "w")  # noqa: SIM115 - closed below
        workers.append(
            (
                subprocess.Popen(
                    [PREFECT, "worker", "start", "--pool", "totes-local", "--limit", "2", "--name", f"worker-{number}"],
                    cwd=REPO,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                ),
                log,
            )
        )
    yield prefect_server, deployed_pipeline, [tmp_path / f"worker-{number}.log" for number in (1, 2)]
    for worker, log in workers:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=60)
        log.close()


def finish(child: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    try:
        _, err = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        raise
    return child.returncode, err


def test_fan_out_on_two_workers_builds_the_warehouse_and_a_failed_or_killed_child_records_nothing(two_workers):
    api_url, pipeline, logs = two_workers

    min_rows, big = biggest_tables(pipeline.source_url, 4)
    status, err = finish(fan_out_run(pipeline, api_url, min_rows))
    assert status == 0, err[-3000:]
    pipeline.assert_warehouse_matches_source()
    first = child_runs(api_url)
    assert {run["parameters"]["table"] for run in first} == big, "a child run for each big table, and only those"
    assert len(first) == len(big)
    assert {run["state_type"] for run in first} == {"COMPLETED"}
    assert len({run["infrastructure_pid"] for run in first}) == len(big), "each child in a process of its own"
    assert len({run["work_queue_name"] for run in first}) == 1
    for log in logs:
        assert "extract-table" in log.read_text() or any(run["id"] in log.read_text() for run in first), (
            f"both workers run children: {log.name} ran none"
        )

    # Nothing written since: no child at all, no batch.
    manifests = raw_manifests(pipeline.lake_url)
    wait_for_trusted_counts(pipeline.source_url)
    status, err = finish(fan_out_run(pipeline, api_url, min_rows))
    assert status == 0, err[-3000:]
    assert len(child_runs(api_url)) == len(first), "a no-op fan-out run starts no child:\n" + err[-3000:]
    assert raw_manifests(pipeline.lake_url) == manifests

    # One run, two children that do not complete. The source caps statements at 500 ms and a
    # maintenance transaction locks sales_order and payment: both children's reads time out on every
    # attempt, so the sales_order child fails; the payment child is killed with SIGKILL between two
    # attempts, and its worker reports it crashed.
    pipeline.churn(orders=10)
    manifests, warehouse = raw_manifests(pipeline.lake_url), pipeline.snapshot()
    database = urlsplit(pipeline.source_url).path.strip("/")
    set_statement_timeout(pipeline.source_url, database, "'500ms'")
    maintenance = connect(pipeline.source_url)
    try:
        with maintenance.cursor() as cursor:
            cursor.execute("set statement_timeout = 0")
            cursor.execute("lock table sales_order, payment in access exclusive mode")
        # The maintenance session is busy, so the counts are not trusted: the big tables, with
        # sales_order and payment, get children again.
        parent = fan_out_run(pipeline, api_url, min_rows)
        wait_for(lambda: running_child(api_url, "payment") is not None, timeout=120, what="the payment child to run")
        time.sleep(2)  # into its reads and retries
        victim = running_child(api_url, "payment")
        assert victim is not None
        os.kill(int(victim["infrastructure_pid"].rsplit(":", 1)[-1]), signal.SIGKILL)
        status, err = finish(parent)
    finally:
        maintenance.rollback()
        maintenance.close()
        set_statement_timeout(pipeline.source_url, database, "default")
    assert status == 1, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert "2 extract run(s) did not complete: payment:" in last, last
    assert "Crashed" in last.split("payment:")[1].split(";")[0], last
    assert "Failed" in last.split("sales_order:")[1].split(";")[0], last
    assert "nothing was recorded" in last
    assert raw_manifests(pipeline.lake_url) == manifests, "children that did not complete must leave no batch"
    assert pipeline.snapshot() == warehouse

    # The next run converges: what the children of the failed cycle wrote belongs to no batch. (A
    # run in one process: another eleven child processes would only repeat the first run's check.)
    # The killed child's slot stays leased for up to a minute: the run reads with the other three.
    pipeline.checkpoint()
    status, err = finish(pipeline.run_cli("run", env={"PREFECT_API_URL": api_url}))
    assert status == 0, err[-3000:]
    assert "Waiting for" not in err, "the free slots are taken, not waited for:\n" + err[-3000:]
    assert "ConcurrencySlotAcquisition" not in err, err[-3000:]
    assert len(raw_manifests(pipeline.lake_url)) == len(manifests) + 1
    pipeline.assert_warehouse_matches_source()

    # Children their worker cannot start (here the command that starts them is missing until the
    # first of them has crashed; on ECS, a capacity or throttling error; in the bench, a busy API's
    # 503) never ran: the cycle submits them again and completes.
    command = logs[0].parent / "start-extract.sh"
    prefect(
        api_url,
        "deploy",
        "--prefect-file",
        "deployments/local.prefect.yaml",
        "--name",
        "totesys-extract-table",
        "--job-variable",
        f"command={command}",
        env={"TOTES_HOME": str(REPO)},
    )
    # One design renamed: the only table the run reads, and with a minimum of one row, a child.
    execute(
        pipeline.source_url,
        "update design set design_name = design_name || ' (renamed)', last_updated = now() "
        "where design_id = (select min(design_id) from design)",
    )
    pipeline.checkpoint()
    wait_for_trusted_counts(pipeline.source_url)
    earlier = {run["id"] for run in child_runs(api_url)}
    parent = fan_out_run(pipeline, api_url, 1)

    def not_started() -> bool:
        return any(
            run["id"] not in earlier
            and run["state_type"] == "CRASHED"
            and (run["state"] or {}).get("message", "").startswith(("Failed to submit", "Flow run could not start"))
            for run in child_runs(api_url)
        )

    wait_for(not_started, timeout=120, what="a child its worker could not start")
    command.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m prefect.engine "$@"\n')
    command.chmod(0o755)
    status, err = finish(parent)
    assert status == 0, err[-3000:]
    assert "could not be started" in err and "submitting it again in 2 s (attempt 2 of 3)" in err, err[-3000:]
    runs = [run for run in child_runs(api_url) if run["id"] not in earlier]
    crashed = {run["parameters"]["table"] for run in runs if run["state_type"] == "CRASHED"}
    completed = {run["parameters"]["table"] for run in runs if run["state_type"] == "COMPLETED"}
    assert crashed == completed == {"design"}, runs
    assert {run["state_type"] for run in runs} == {"CRASHED", "COMPLETED"}
    pipeline.assert_warehouse_matches_source()
