"""Locks that die with their holder: PostgreSQL session-level advisory locks, held on a connection
of their own for as long as the work they guard.

A process that is killed (SIGKILL, OOM, a closed laptop) loses its connections, and the server
releases their locks at once: nothing a dead run held can wedge the runs after it, whatever Prefect
API (a server, Prefect Cloud, the temporary local one, none) the runs use.

- The **cycle lock** makes one ETL cycle (or one files cycle) at a time write a lake and its
  warehouse: two runs would otherwise plan batches with the same sequence number.
- **Database slots** bound the connections all totes runs open on one database at once, where
  Prefect's global concurrency limits cannot (see :mod:`tasks.core.concurrency`).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Literal

from tasks.core.postgres import (
    Connection,
    DatabaseError,
    connect,
    database_error_reason,
    execute_for_one,
    fetch_rows,
    roll_back,
)
from tasks.core.retries import call_retrying, is_transient
from tasks.core.sql import SqlFolder
from tasks.settings import redact_url

CORE_SQL = SqlFolder("tasks.core")

# The two-int4 advisory key space is apart from the bigint one of the load lock. "tote" in ASCII.
TOTES_LOCK_CLASS = 0x746F7465
Cycle = Literal["etl", "files"]
_CYCLE_KEYS: dict[Cycle, int] = {"etl": 1, "files": 2}
_FIRST_SLOT_KEY = 1000

# How often a waiting run tries again, and how often it says in its log that it still waits.
_POLL_SECONDS = 1.0
_REPORT_EVERY_SECONDS = 30.0


class LockNotTaken(RuntimeError):
    """Another totes run held a lock for longer than this run was willing to wait."""


class CycleLockLost(RuntimeError):
    """The cycle lock's session ended while the run held it and another run has written or holds it
    now: this one records nothing more. Never retried (a retry would record what it must not)."""

    transient = False


def run_logger() -> logging.Logger | logging.LoggerAdapter:
    """The flow or task run's logger (lines reach the Prefect UI), else the module's."""
    try:
        from prefect import get_run_logger

        return get_run_logger()
    except Exception:  # noqa: BLE001 - outside a Prefect run there is no run logger
        return logging.getLogger("totes.locks")


@dataclass(frozen=True)
class Holder:
    """Who holds an advisory lock, as the server sees it."""

    pid: int
    application: str
    since: str

    def describe(self) -> str:
        return f"{self.application or 'an unnamed session'} (server pid {self.pid}, connected since {self.since})"


def _holders(connection: Connection, key: int) -> list[Holder]:
    try:
        with connection.cursor() as cursor:
            cursor.execute(CORE_SQL.read("read_lock_holders"), parameters=(TOTES_LOCK_CLASS, key))
            rows = cursor.fetchall()
    finally:
        roll_back(connection)
    return [Holder(pid=int(pid), application=str(app or ""), since=str(since)) for pid, app, since in rows]


def _describe_holders(connection: Connection, keys: list[int]) -> str:
    try:
        holders = sorted({holder.describe() for key in keys for holder in _holders(connection, key)})
    except DatabaseError as error:  # the waiting session ended: the next try to take the lock reconnects
        return f"held by a session not named ({database_error_reason(error)})"
    return "held by " + "; ".join(holders) if holders else "held by a session this role cannot see"


def _try_lock(connection: Connection, key: int) -> bool:
    with connection.cursor() as cursor:
        (taken,) = execute_for_one(cursor, CORE_SQL.read("try_advisory_lock"), (TOTES_LOCK_CLASS, key))
    # A session-level lock outlives the transaction that took it: end that transaction, so the
    # connection waits idle (no snapshot held) while the work it guards runs.
    connection.commit()
    return bool(taken)


def _holding_connection(url: str, purpose: str, role: str) -> Connection:
    """A named connection for advisory locks; a transient failure while it is opened and set up (the
    server restarting) is retried with back-off."""
    return call_retrying(lambda: _set_up_holding_connection(url, purpose, role), purpose=purpose)


def _set_up_holding_connection(url: str, purpose: str, role: str) -> Connection:
    connection = connect(url, purpose=purpose)
    try:
        with connection.cursor() as cursor:
            # Named so that a waiting run can say who holds the lock (host and process id).
            cursor.execute(f"set application_name = '{_application_name(role)}'")
        connection.commit()
    except DatabaseError:
        _close(connection)
        raise
    try:
        with connection.cursor() as cursor:
            cursor.execute(CORE_SQL.read("keep_lock_session"))
        connection.commit()
    except DatabaseError:
        roll_back(connection)  # before PostgreSQL 14 there is no idle_session_timeout to turn off
    return connection


class _CycleLockSession:
    """The connection that takes a cycle lock. Until the lock is held, a session the server ends (a
    warehouse restarting as the run starts, an idle cut while it waits) is replaced by a new one."""

    def __init__(self, url: str, cycle: Cycle) -> None:
        self.url, self.cycle = url, cycle
        self.connection = self._open()

    def _open(self) -> Connection:
        return _holding_connection(self.url, "warehouse database", f"{self.cycle} cycle")

    def try_lock(self) -> bool:
        try:
            return _try_lock(self.connection, _CYCLE_KEYS[self.cycle])
        except DatabaseError as error:
            if not is_transient(error):
                raise
            run_logger().warning(
                "The session that was to take the %s cycle lock ended before it held it (%s); connecting again",
                self.cycle,
                database_error_reason(error),
            )
            _close(self.connection)
            self.connection = self._open()
            return _try_lock(self.connection, _CYCLE_KEYS[self.cycle])


def _application_name(role: str) -> str:
    host = "".join(c for c in socket.gethostname() if c.isalnum() or c in ".-")[:30]
    return f"totes {role} on {host} pid {os.getpid()}"


def wait_for(
    take: Callable[[], bool], describe: Callable[[], str], *, what: str, wait_seconds: float, refusal: str
) -> None:
    """Call ``take`` until it succeeds, saying in the log what the run waits for (at once, then every
    30 s); raise :class:`LockNotTaken` with ``refusal`` after ``wait_seconds``."""
    if take():
        return
    started = time.monotonic()
    reported = started
    run_logger().warning("Waiting for %s: %s", what, describe())
    while not take():
        waited = time.monotonic() - started
        if waited >= wait_seconds:
            msg = (
                f"{refusal} (gave up after {waited:.0f} s; TOTES_LOCK_WAIT_SECONDS sets how long to wait): {describe()}"
            )
            raise LockNotTaken(msg)
        if time.monotonic() - reported >= _REPORT_EVERY_SECONDS:
            reported = time.monotonic()
            run_logger().warning("Still waiting (%.0f s) for %s: %s", waited, what, describe())
        time.sleep(_POLL_SECONDS)
    run_logger().info("Took %s after %.1f s", what, time.monotonic() - started)


# Cycle locks this process holds, and how many times: the ETL cycle runs its stages' bodies in
# its own flow run, and each stage takes the lock too when it runs alone.
_held: dict[tuple[str, Cycle], int] = {}
_held_guard = threading.Lock()
# The connection holding each of them, and a mutex: tasks in other threads check it is still held.
_holding: dict[tuple[str, Cycle], tuple[Connection, threading.Lock]] = {}


def verify_cycle_locks() -> bool:
    """Check that every cycle lock this process holds is still held, before a manifest is recorded
    or a load commits; return True if one had been lost and was taken again.

    The lock lives with its session: an idle cut by a proxy, a failover, a restart of the warehouse
    or ``pg_terminate_backend`` ends it silently, and another run may have taken it meanwhile. A
    lost lock is taken again at once if it is free (a restarted warehouse: the run goes on), and
    the caller must then check that nobody recorded anything in between (``ingest`` checks that
    its batch number is still free; star manifests and loads are keyed by the batch, so a second
    writer's would be refused anyway).

    Raises:
        CycleLockLost: the lock was lost and another session holds it now: another run is writing,
            so this one records nothing more.
    """
    with _held_guard:
        holding = dict(_holding)
    retaken = False
    for entry, (connection, mutex) in holding.items():
        url, cycle = entry
        lost = f"the {cycle} cycle lock of the warehouse {redact_url(url)}"
        with mutex:
            try:
                ((still_held,),) = fetch_rows(
                    connection, CORE_SQL.read("select_lock_still_held"), (TOTES_LOCK_CLASS, _CYCLE_KEYS[cycle])
                )
            except DatabaseError as error:
                still_held, why = False, f"its session ended ({database_error_reason(error)})"
            else:
                why = "it is no longer held by this run's session"
            if still_held:
                continue
            _close(connection)
            fresh = _holding_connection(url, "warehouse database", f"{cycle} cycle")
            if not _try_lock(fresh, _CYCLE_KEYS[cycle]):
                holders = _describe_holders(fresh, [_CYCLE_KEYS[cycle]])
                _close(fresh)
                msg = (
                    f"{lost} was lost ({why}) and another run holds it now ({holders}): this run recorded "
                    "nothing more; the next run starts where the last recorded batch ended"
                )
                raise CycleLockLost(msg)
        with _held_guard:
            if entry in _holding:
                _holding[entry] = (fresh, mutex)
        run_logger().warning(
            "%s was lost (%s) and is taken again; checking that no other run wrote meanwhile", lost, why
        )
        retaken = True
    return retaken


@contextmanager
def cycle_lock(warehouse_url: str, cycle: Cycle, *, wait_seconds: float) -> Iterator[None]:
    """Hold the warehouse's lock of ``cycle`` ("etl" or "files") while the block runs.

    Another run holding it is waited for (the log names it) for up to ``wait_seconds``. The lock is
    reentrant within a process.

    Raises:
        LockNotTaken: the other run held it longer; the message names it.
        ConnectionFailed: the warehouse cannot be reached.
    """
    entry = (warehouse_url, cycle)
    with _held_guard:
        if _held.get(entry):
            _held[entry] += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield
        finally:
            with _held_guard:
                _held[entry] -= 1
        return
    session = _CycleLockSession(warehouse_url, cycle)
    try:
        wait_for(
            session.try_lock,
            lambda: _describe_holders(session.connection, [_CYCLE_KEYS[cycle]]),
            what=f"the {cycle} cycle lock of the warehouse {redact_url(warehouse_url)} (another totes run is in its cycle)",
            wait_seconds=wait_seconds,
            refusal=f"another totes {cycle} cycle is running on the warehouse {redact_url(warehouse_url)}",
        )
        with _held_guard:
            _held[entry] = 1
            _holding[entry] = (session.connection, threading.Lock())
        try:
            yield
        finally:
            with _held_guard:
                del _held[entry]
                # The lock may have been taken again on another connection (verify_cycle_locks).
                held_on, _ = _holding.pop(entry)
            _close(held_on)
    finally:
        _close(session.connection)


def _close(connection: Connection) -> None:
    """Close a lock connection: its locks go with it (on the server, with the session)."""
    with suppress(DatabaseError):
        connection.close()


@contextmanager
def database_slots_held_by_database(
    url: str, *, purpose: str, wanted: int, slots: int, wait_seconds: float
) -> Iterator[int]:
    """Hold up to ``wanted`` of the ``slots`` connection slots of a database, as advisory locks on
    that database; yield how many were taken (at least one, waited for if none is free)."""
    connection = _holding_connection(url, purpose, "slots")
    taken: list[int] = []

    def take() -> bool:
        for slot in range(slots):
            if len(taken) >= wanted:
                break
            if _try_lock(connection, _FIRST_SLOT_KEY + slot):
                taken.append(slot)
        return bool(taken)

    try:
        try:
            wait_for(
                take,
                lambda: (
                    f"all {slots} slots are "
                    + _describe_holders(connection, [_FIRST_SLOT_KEY + s for s in range(slots)])
                ),
                what=f"a connection slot of the {purpose} {redact_url(url)} (TOTES_DATABASE_CONCURRENCY={slots})",
                wait_seconds=wait_seconds,
                refusal=f"no connection slot of the {purpose} {redact_url(url)} came free",
            )
        except DatabaseError as error:
            msg = f"cannot take a connection slot of the {purpose} {redact_url(url)}: {database_error_reason(error)}"
            raise LockNotTaken(msg) from error
        yield len(taken)
    finally:
        _close(connection)


def slots_held_on(connection: Connection) -> int:
    """How many of a database's connection slots totes runs hold as advisory locks on it now."""
    ((held,),) = fetch_rows(connection, CORE_SQL.read("count_slot_locks"), (TOTES_LOCK_CLASS, _FIRST_SLOT_KEY))
    return int(held)
