"""A rebuild at production length: a lake of many batches rebuilds with a lock count that does not
grow with the batches (the lock table scaled down, where one transaction for every batch ran out
of shared memory); readers of the warehouse keep the old one, unblocked, until the rebuilt one is
swapped in; user views and grants on the star tables survive; a rebuild that fails, midway or in
its swap, leaves the warehouse as it was, and the next one succeeds. And a warehouse whose lock table
fills up fails the load at once, saying what to change (SQLSTATE class 53 is not retried)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from bench.rebuild import PeakLocks, clone_batches
from tasks.core.postgres import Connection, DatabaseError, connect, database_error_reason
from tasks.schema import STAR_TABLES
from tests.integration.conftest import Pipeline, execute, rows_as_text, scalar


def locks_held(url: str, connection: Connection) -> int:
    """How many locks the backend of ``connection`` holds now (asked from another connection)."""
    with connection.cursor() as cursor:
        cursor.execute("select pg_backend_pid()")
        (pid,) = cursor.fetchone()
    return int(scalar(url, "select count(*) from pg_locks where pid = $1", pid))


@contextmanager
def after_each_rebuild_batch(
    monkeypatch: pytest.MonkeyPatch, check: Callable[[int, Connection], None]
) -> Iterator[None]:
    """Call ``check(batches merged so far, the rebuild's connection)`` after each batch the rebuild
    merges (and has committed)."""
    import tasks.load.tasks as load_tasks

    merged = 0
    load_batch = load_tasks.load_batch

    def load_and_check(connection: Connection, *args, **kwargs):
        nonlocal merged
        loaded = load_batch(connection, *args, **kwargs)
        merged += 1
        check(merged, connection)
        return loaded

    with monkeypatch.context() as patched:
        patched.setattr(load_tasks, "load_batch", load_and_check)
        yield


@contextmanager
def inside_each_rebuild_batch(monkeypatch: pytest.MonkeyPatch, check: Callable[[int], None]) -> Iterator[None]:
    """Call ``check(batches so far)`` in the middle of each batch the rebuild merges: its rows merged,
    its transaction still open."""
    import tasks.load.merge as merge

    merging = 0
    mark_deleted = merge.mark_deleted

    def check_and_mark(*args, **kwargs):
        nonlocal merging
        merging += 1
        check(merging)
        return mark_deleted(*args, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(merge, "mark_deleted", check_and_mark)
        yield


@pytest.fixture
def scaled_down(databases, own_postgres, tmp_path, prefect_api, monkeypatch) -> Pipeline:
    """A pipeline whose warehouse is on a server with its lock table scaled down to about a twentieth
    of a default server's (10 x (20 connections + 22 of the server's own processes) locks against
    64 x (100 + 22)), and a local-folder lake."""
    own_postgres.configure(max_locks_per_transaction=10, max_connections=20)
    own_postgres.create_database("warehouse")
    return Pipeline(databases.source_url, own_postgres.url("warehouse"), str(tmp_path / "lake"), monkeypatch)


def test_a_rebuild_of_many_batches_holds_no_more_locks_at_the_end_than_at_the_start(scaled_down, monkeypatch):
    """102 batches with the lock table scaled down (the code before ran out of shared memory after
    six): between two batches the rebuild holds no lock, so none piles up."""
    from flows.etl import rebuild_warehouse

    pipeline = scaled_down
    pipeline.seed(scale=0.02)
    pipeline.run()
    pipeline.churn(orders=10)
    pipeline.run()
    clone_batches(pipeline.lake_url, 100)
    held: list[int] = []

    started = time.perf_counter()
    with (
        after_each_rebuild_batch(
            monkeypatch, lambda _, connection: held.append(locks_held(pipeline.warehouse_url, connection))
        ),
        PeakLocks(pipeline.warehouse_url) as watch,
    ):
        summary = rebuild_warehouse()
    seconds = time.perf_counter() - started

    print(f"rebuild of {len(held)} batches: {seconds:.1f} s, at most {watch.peak} locks, between batches {max(held)}")
    assert len(summary.batches_loaded) == 102
    assert max(held) <= 2, held  # its own read of its pid, perhaps; the code before: 70 more per batch
    pipeline.assert_warehouse_matches_source()


def read_now(url: str, query: str) -> object:
    """One value read by a reader that waits for no lock more than a second: the error's text if it
    had to."""
    with connect(url) as connection, connection.cursor() as cursor:
        cursor.execute("select set_config('lock_timeout', '1s', false)")
        try:
            cursor.execute(query)
        except DatabaseError as error:
            return f"blocked: {database_error_reason(error)}"
        return cursor.fetchone()[0]


def test_readers_keep_the_old_warehouse_unblocked_until_the_swap_and_their_views_and_grants_survive(
    pipeline, monkeypatch
):
    from flows.etl import rebuild_warehouse

    pipeline.seed(scale=0.02)
    pipeline.run()
    pipeline.churn(orders=10)
    pipeline.run()
    clone_batches(pipeline.lake_url, 20)
    url = pipeline.warehouse_url
    role = f"analyst_{uuid.uuid4().hex[:8]}"
    execute(
        url,
        # An analyst's view and grants on the star tables, and a comment.
        "create view orders_per_staff as select staff.staff_id, count(*) as orders from current_fact_sales_order as f "
        "join current_dim_staff as staff on staff.staff_id = f.sales_staff_id group by staff.staff_id",
        f'create role "{role}"',
        f'grant select on fact_sales_order, current_fact_sales_order, orders_per_staff to "{role}"',
        "comment on table fact_sales_order is 'one row per version of a sales order'",
        # Damage, so that the old warehouse and the rebuilt one differ.
        "delete from fact_sales_order where sales_order_id % 3 = 0",
    )
    old = scalar(url, "select count(*) from fact_sales_order")
    tables = [*STAR_TABLES, "orders_per_staff"]
    oids = {table: scalar(url, "select $1::regclass::oid", table) for table in tables}
    seen: list[object] = []

    def read(merging: int) -> None:
        if merging in (1, 11, 22):  # inside the first batch's transaction, a middle one's, the last's
            seen.append(read_now(url, "select count(*) from fact_sales_order"))

    with inside_each_rebuild_batch(monkeypatch, read):
        rebuild_warehouse()

    assert seen == [old] * 3
    assert scalar(url, "select count(*) from fact_sales_order") > old
    pipeline.assert_warehouse_matches_source()
    assert {table: scalar(url, "select $1::regclass::oid", table) for table in tables} == oids
    assert scalar(url, f"select has_table_privilege('{role}', 'orders_per_staff', 'select')")
    assert scalar(url, "select obj_description('fact_sales_order'::regclass)") == "one row per version of a sales order"
    assert scalar(url, "select sum(orders)::bigint from orders_per_staff") == scalar(
        url, "select count(*) from current_fact_sales_order"
    )
    # The next cycle carries on: new fact versions take record ids after the rebuilt ones.
    pipeline.churn(orders=10)
    pipeline.run()
    pipeline.assert_warehouse_matches_source()
    execute(url, f'drop owned by "{role}"', f'drop role "{role}"')  # roles outlive the test's database


REFUSE_PAYMENTS = (
    "create function refuse_payments() returns trigger language plpgsql as "
    "$$ begin raise exception 'payments refused by the test'; end $$"
)


def test_a_rebuild_that_fails_midway_or_in_its_swap_leaves_the_warehouse_as_it_was(pipeline, monkeypatch):
    from flows.etl import rebuild_warehouse

    pipeline.seed(scale=0.02)
    pipeline.run()
    pipeline.churn(orders=10)
    pipeline.run()
    clone_batches(pipeline.lake_url, 10)
    url = pipeline.warehouse_url
    execute(
        url,
        REFUSE_PAYMENTS,
        "delete from fact_payment where payment_id % 3 = 0",
        "update dim_location set phone = 'damaged'",
        "delete from _totes_loaded_batch where batch_id like '00000002-%'",
    )
    damaged = pipeline.snapshot() | {"_totes_loaded_batch": rows_as_text(url, "select * from _totes_loaded_batch")}

    def current() -> dict:
        return pipeline.snapshot() | {"_totes_loaded_batch": rows_as_text(url, "select * from _totes_loaded_batch")}

    # Midway: the shadow's fact_payment refuses rows from the sixth batch on (a permanent failure).
    def refuse_in_the_shadow(merged: int, connection: Connection) -> None:
        if merged == 5:
            with connection.cursor() as cursor:
                cursor.execute(
                    "create trigger refuse before insert or update on pg_temp.fact_payment "
                    "for each row execute function refuse_payments()"
                )
            connection.commit()

    with (
        after_each_rebuild_batch(monkeypatch, refuse_in_the_shadow),
        pytest.raises(Exception, match="payments refused"),
    ):
        rebuild_warehouse()
    assert current() == damaged

    # In the swap: the warehouse's own fact_payment refuses the rows copied in.
    execute(url, "create trigger refuse before insert on fact_payment for each row execute function refuse_payments()")
    with pytest.raises(Exception, match="payments refused"):
        rebuild_warehouse()
    execute(url, "drop trigger refuse on fact_payment")
    assert current() == damaged

    # Midway, the rebuild's session ends (what a failover does to it): the task's retry starts over.
    killed: list[dict] = []

    def end_the_session(merged: int, connection: Connection) -> None:
        if merged == 5 and not killed:
            with connection.cursor() as cursor:
                cursor.execute("select pg_backend_pid()")
                (pid,) = cursor.fetchone()
            connection.rollback()
            assert scalar(url, "select pg_terminate_backend($1::integer)", pid)
            killed.append(current())

    with after_each_rebuild_batch(monkeypatch, end_the_session):
        summary = rebuild_warehouse()
    assert killed == [damaged]
    assert len(summary.batches_loaded) == 12
    pipeline.assert_warehouse_matches_source()
    assert scalar(url, "select count(*) from _totes_loaded_batch") == 12


def fill_the_lock_table(connection: Connection) -> None:
    """Take session-level advisory locks until the server's lock table is full: they stay taken
    (whatever becomes of the transaction) until the session ends."""
    with connection.cursor() as cursor:
        for key in range(7_000_000, 7_100_000):
            try:
                cursor.execute("select pg_advisory_lock($1::bigint)", parameters=(key,))
            except DatabaseError as error:
                assert "out of shared memory" in str(error)
                break
        else:
            pytest.fail("the lock table never filled")
    connection.rollback()


def test_a_warehouse_out_of_shared_memory_fails_the_load_at_once_saying_what_to_change(scaled_down, monkeypatch):
    """SQLSTATE class 53 is not retried (the code before retried it four times, 30 s of back-off
    into the same wall), and the one line the command prints says what to change."""
    import tasks.load.tasks as load_tasks
    from flows.cli.main import _one_line

    pipeline = scaled_down
    pipeline.seed(scale=0.02)
    pipeline.run()
    pipeline.churn(orders=10)
    attempts: list[float] = []
    load_batch = load_tasks.load_batch
    with connect(pipeline.warehouse_url) as hog:

        def load_with_the_lock_table_full(*args, **kwargs):
            attempts.append(time.perf_counter())
            fill_the_lock_table(hog)
            try:
                return load_batch(*args, **kwargs)
            finally:
                with hog.cursor() as cursor:
                    cursor.execute("select pg_advisory_unlock_all()")
                hog.rollback()

        with monkeypatch.context() as patched, pytest.raises(Exception) as raised:
            patched.setattr(load_tasks, "load_batch", load_with_the_lock_table_full)
            pipeline.run()

    line = _one_line(raised.value, None)
    assert line.startswith(
        "ResourceExhausted: the warehouse database ran out of a resource: out of shared memory (SQLSTATE 53200); "
        "the server's lock table is full: raise max_locks_per_transaction"
    ), line
    # Once as the transform builds the batch, once from the lake: no retry (a retry is a third call).
    assert len(attempts) == 2, attempts
    pipeline.run()  # the lock table free again: the next run loads the batch
    pipeline.assert_warehouse_matches_source()
