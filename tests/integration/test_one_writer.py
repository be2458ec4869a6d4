"""One writer at a time, crash-proof: concurrent runs wait for each other's cycle lock, a killed run
leaves nothing that wedges the next, and two writers can never both create one lake manifest."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter

import pytest

from tasks.core.lake import Lake, LakeError, batch_sequence
from tasks.core.postgres import connect


def test_two_writers_of_one_manifest_on_s3_one_wins(s3_lake_url, monkeypatch):
    """Eight writers PUT one manifest at the same moment: exactly one creates it (a check followed by
    a PUT lets several through), the others are refused by S3 itself."""
    outcomes: Counter[str] = Counter()
    start = threading.Barrier(8)

    def write(writer: int) -> None:
        lake = Lake.from_url(s3_lake_url)
        start.wait()
        try:
            lake.write_manifest("raw", "00000001-20240101T000000Z", {"writer": writer})
            outcomes["created"] += 1
        except LakeError:
            outcomes["refused"] += 1

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes == Counter(created=1, refused=7)


def _raw_sequences(lake_url: str) -> list[int]:
    lake = Lake.from_url(lake_url)
    return [batch_sequence(batch) for batch in lake.list_batches("raw")]


def test_two_runs_at_once_take_turns_and_the_warehouse_matches_the_source(pipeline, prefect_api):
    """A schedule tick and a manual run at once: the second waits for the first's cycle lock (and
    says so, naming the first), then runs; batches get distinct, consecutive sequence numbers.

    The test holds the warehouse's load lock for a moment, so that the first run is still in its
    cycle when the second starts (the order is made sure, not left to process start-up times)."""
    pipeline.seed(scale=0.05)
    pipeline.checkpoint()
    env = {"PREFECT_API_URL": prefect_api}
    with connect(pipeline.warehouse_url) as blocker:
        with blocker.cursor() as cursor:
            cursor.execute("select pg_advisory_lock(500086105459)")  # the load lock (tasks/core/sql)
        blocker.commit()
        first = pipeline.run_cli("run", env=env)
        first_log = lines_until(first, "Ingest: done in")  # then it loads: blocked
        second = pipeline.run_cli("run", env=env)
        second_log = lines_until(second, "Waiting for the etl cycle lock")
    first_out = first.communicate(timeout=600)
    second_out = second.communicate(timeout=600)
    assert first.returncode == 0, first_out[1][-3000:]
    assert second.returncode == 0, second_out[1][-3000:]
    assert "held by totes etl cycle on" in second_log[-1]
    assert "Waiting for" not in "".join(first_log) + first_out[1]
    sequences = _raw_sequences(pipeline.lake_url)
    assert sequences == list(range(1, len(sequences) + 1)), sequences
    pipeline.assert_warehouse_matches_source()


def lines_until(child: subprocess.Popen, trigger: str, *, within: float = 300) -> list[str]:
    """The child's log lines up to the first that contains ``trigger`` (fails if it never comes, or
    not ``within`` seconds: the child is killed then, rather than wait on it for ever)."""
    seen = []
    watchdog = threading.Timer(within, child.kill)
    watchdog.start()
    try:
        for line in child.stderr:
            seen.append(line)
            if trigger in line:
                return seen
    finally:
        watchdog.cancel()
    child.wait(timeout=60)
    pytest.fail(f"the run ended ({child.returncode}) without logging {trigger!r}:\n" + "".join(seen)[-3000:])


def test_runs_without_a_prefect_api_share_one_local_server_and_a_killed_run_wedges_nothing(
    pipeline, local_prefect_home
):
    """``totes run`` without PREFECT_API_URL, as a new user runs it. The first run starts totes's
    local Prefect server in the background and the next run finds it again, without starting another.
    A run killed with SIGKILL, while it holds the cycle lock and a database's connection slots,
    neither makes the next run wait nor hangs it, and the warehouse converges. A server that has
    died is started again by the next run. ``totes local-api stop`` ends it."""
    from flows.cli.local_api import healthy

    pipeline.seed(scale=0.02)
    env = {"PREFECT_HOME": str(local_prefect_home), "PREFECT_API_URL": None, "TOTES_DATABASE_CONCURRENCY": "1"}
    state = local_prefect_home / "totes-local-api.json"

    def complete_run() -> str:
        pipeline.checkpoint()
        child = pipeline.run_cli("run", env=env)
        try:
            _, err = child.communicate(timeout=240)
        except Exception:
            child.kill()
            raise
        assert child.returncode == 0, err[-3000:]
        assert "Waiting for" not in err
        return err

    assert "Starting a local Prefect server in the background" in complete_run()
    first_server = json.loads(state.read_text())
    assert "Starting a local Prefect server" not in complete_run(), "the second run must find the first's server"
    assert json.loads(state.read_text()) == first_server

    pipeline.churn(orders=5)
    child = pipeline.run_cli("run", env=env, verbose=True, start_new_session=True)
    lines_until(child, "[read-source-horizon-")  # it holds the cycle lock and the source's only slot
    time.sleep(0.2)
    os.killpg(child.pid, signal.SIGKILL)  # the run's whole process group: the server is not in it
    child.communicate(timeout=60)
    assert child.returncode == -9, "the run ended before it could be killed"
    assert healthy(first_server["url"]), "killing a run must not take the local server down"
    complete_run()
    pipeline.assert_warehouse_matches_source()

    os.killpg(first_server["pid"], signal.SIGKILL)  # the server dies between runs
    assert "Starting a local Prefect server in the background" in complete_run()
    second_server = json.loads(state.read_text())
    assert second_server["pid"] != first_server["pid"]

    stopped = pipeline.run_cli("local-api", "stop", env=env)
    out, err = stopped.communicate(timeout=60)
    assert stopped.returncode == 0, err
    assert f"stopped the server at {second_server['url']}" in out
    assert not healthy(second_server["url"])


def test_a_run_that_cannot_get_the_lock_in_time_names_the_holder(pipeline, prefect_api, monkeypatch):
    """With TOTES_LOCK_WAIT_SECONDS=0 a run that finds the cycle running exits with a last line naming
    who holds the lock, and touches nothing."""
    from tasks.core.locks import cycle_lock

    pipeline.seed(scale=0.02)
    with cycle_lock(pipeline.warehouse_url, "etl", wait_seconds=0):
        child = pipeline.run_cli("run", env={"PREFECT_API_URL": prefect_api, "TOTES_LOCK_WAIT_SECONDS": "0"})
        _, err = child.communicate(timeout=300)
    assert child.returncode != 0
    last = err.strip().splitlines()[-1]
    assert last.startswith("totes run: failed: LockNotTaken: another totes etl cycle is running on the warehouse"), last
    assert "held by totes etl cycle on" in last
    assert Lake.from_url(pipeline.lake_url).list_batches("raw") == [], "nothing may be planned without the lock"


def test_a_session_that_ends_before_it_holds_the_cycle_lock_is_replaced(pipeline):
    """A run that waits for the cycle lock while the warehouse ends its session (a restart, an idle
    cut) connects again and takes the lock once it is free, saying so in one line; before, the run
    failed with "no connection to the server"."""
    from tasks.core.locks import cycle_lock

    taken = threading.Event()
    failures: list[BaseException] = []

    def take() -> None:
        try:
            with cycle_lock(pipeline.warehouse_url, "etl", wait_seconds=120):
                taken.set()
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            failures.append(error)

    with connect(pipeline.warehouse_url) as holder:
        with holder.cursor() as cursor:
            cursor.execute("select pg_advisory_lock(1953461349, 1)")
            cursor.fetchall()
        holder.commit()
        waiter = threading.Thread(target=take)
        waiter.start()
        waiting = _wait_for_lock_holder(pipeline.warehouse_url, granted=False)
        with holder.cursor() as cursor:
            cursor.execute("select pg_terminate_backend($1::int4)", parameters=(waiting,))
            cursor.fetchall()
        holder.commit()
        time.sleep(2)  # the waiter polls every second: it meets the ended session while the lock is held
        assert not taken.is_set()
    waiter.join(timeout=60)
    assert failures == []
    assert taken.is_set()


@pytest.fixture
def quick_lease_expiry(monkeypatch):
    """The Prefect server started next revokes expired leases every second (default: 15 s)."""
    monkeypatch.setenv("PREFECT_SERVER_SERVICES_REPOSSESSOR_LOOP_SECONDS", "1")


def test_a_killed_run_s_slots_come_back_with_a_prefect_server(pipeline, quick_lease_expiry, prefect_server):
    """With a real Prefect server (``prefect server start``), the slots are the database's global
    concurrency limit. A run killed while it holds the source's only slot leaves it taken until its
    one-minute lease expires: the next run says what it waits for, then takes it and completes."""
    pipeline.seed(scale=0.02)
    env = {"PREFECT_API_URL": prefect_server, "TOTES_DATABASE_CONCURRENCY": "1"}
    child = pipeline.run_cli("run", env=env, verbose=True)
    lines_until(child, "[read-source-horizon-")
    child.kill()
    child.communicate(timeout=60)

    pipeline.checkpoint()
    rerun = pipeline.run_cli("run", env=env)
    waiting = lines_until(rerun, "Waiting for 1 slot(s) of the Prefect global concurrency limit")
    assert "totes-db-" in waiting[-1]
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-3000:]
    # Its own line says what it waits for: none of Prefect's ERROR lines for each attempt that timed out.
    assert "ConcurrencySlotAcquisition" not in err and " ERROR " not in err, err[-3000:]
    pipeline.assert_warehouse_matches_source()


@pytest.mark.parametrize("taken_meanwhile", [False, True], ids=["free-again", "taken-by-another"])
def test_a_run_whose_cycle_lock_session_ends_takes_it_again_or_records_nothing(pipeline, prefect_api, taken_meanwhile):
    """The cycle lock lives with its session: an idle cut by a proxy, a failover, a restart of the
    warehouse ends it silently, and another run could take it and plan the same batch number with
    other seconds. The writer checks the lock before it records a manifest or commits a load: lost
    and free, it is taken again and the run goes on (after checking that no other run recorded a
    batch meanwhile); lost and held by another session, the run fails with one line and records
    nothing, and the next run converges. (On the code before, the run recorded its batch whoever
    held the lock.)"""
    pipeline.seed(scale=0.02)
    pipeline.checkpoint()
    other = connect(pipeline.warehouse_url)
    try:
        with connect(pipeline.source_url) as blocker:
            with blocker.cursor() as cursor:
                cursor.execute("lock table design in access exclusive mode")  # holds the extract of design
            run = pipeline.run_cli("run", env={"PREFECT_API_URL": prefect_api})
            holder = _wait_for_lock_holder(pipeline.warehouse_url)
            with connect(pipeline.warehouse_url) as admin, admin.cursor() as cursor:
                cursor.execute("select pg_terminate_backend($1::int4)", parameters=(holder,))
                cursor.fetchall()
            if taken_meanwhile:  # another session takes the etl cycle lock (tasks/core/locks.py's key)
                with other.cursor() as cursor:
                    cursor.execute("select pg_advisory_lock(1953461349, 1)")
                    cursor.fetchall()
                other.commit()
            blocker.rollback()
        _, err = run.communicate(timeout=300)
    finally:
        other.close()  # its lock goes with it
    assert "Traceback" not in err, err
    batches = Lake.from_url(pipeline.lake_url).list_batches("raw")
    if taken_meanwhile:
        assert run.returncode == 1, err
        assert "CycleLockLost: the etl cycle lock of the warehouse" in err and "another run holds it now" in err, err
        assert batches == [], "a run without its lock recorded a batch"
        pipeline.run()
    else:
        assert run.returncode == 0, err
        assert "is taken again; checking that no other run wrote meanwhile" in err, err
        assert len(batches) == 1
    pipeline.assert_warehouse_matches_source()


def _wait_for_lock_holder(warehouse_url: str, *, granted: bool = True) -> int:
    """The server pid of the session holding (or, ``granted=False``, about to take) the warehouse's etl
    cycle lock. Its session is named before it takes the lock: waiting for the name alone let the
    test end a session that did not hold the lock yet."""
    held = (
        "exists (select from pg_locks l where l.pid = a.pid and l.locktype = 'advisory' and l.granted "
        "and l.classid = 1953461349 and l.objid = 1 and l.objsubid = 2)"
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with connect(warehouse_url) as connection, connection.cursor() as cursor:
            cursor.execute(
                "select a.pid from pg_stat_activity a where a.application_name like 'totes etl cycle%' "
                f"and a.datname = current_database() and {'' if granted else 'not '}{held}"
            )
            found = cursor.fetchall()
        if found:
            return int(found[0][0])
        time.sleep(0.2)
    pytest.fail("no run took the cycle lock")
