"""PostgreSQL connections (ADBC) and what their errors say, for every stage that talks to a database."""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import adbc_driver_manager
import adbc_driver_postgresql
import pyarrow as pa
from adbc_driver_manager.dbapi import Connection, Cursor, _SharedDatabase
from adbc_driver_manager.dbapi import Error as DatabaseError

from tasks.settings import redact_url

log = logging.getLogger("totes.postgres")

__all__ = [
    "Connection",
    "ConnectionFailed",
    "Cursor",
    "DatabaseError",
    "ResourceExhausted",
    "connect",
    "execute_for_one",
    "fetch_arrow",
    "fetch_rows",
    "roll_back",
]


class ConnectionFailed(RuntimeError):
    """A database could not be reached or refused us; the message names which one and why."""


def connect(url: str, *, purpose: str = "database") -> Connection:
    """An ADBC connection to PostgreSQL (``autocommit`` off: every statement runs in a transaction).

    Raises:
        ConnectionFailed: naming ``purpose`` (e.g. "source database") and the URL without password;
            the driver's error is kept as the cause, so retry classification still sees it.
    """
    try:
        database = _database(url)
        return Connection(database, adbc_driver_manager.AdbcConnection(database._db))
    except DatabaseError as error:
        msg = f"cannot connect to the {purpose} {redact_url(url)}: {database_error_reason(error)}"
        raise ConnectionFailed(msg) from error


# ADBC's database object reads the server's type catalogue when it is made: ~80 ms on a local socket,
# several times that while other tasks run, against ~5 ms for a connection made from an existing
# one. A run opens a connection per task, so each process keeps one database object per URL for its
# life (a connection shares it: ADBC's own _SharedDatabase, which never closes while we hold it).
_DATABASES: dict[tuple[int, str], _SharedDatabase] = {}
_DATABASES_LOCK = threading.Lock()


def _database(url: str) -> _SharedDatabase:
    """This process's ADBC database object for ``url``, made on first use (not under the lock: two
    databases are made at once, the same one is made once)."""
    key = (os.getpid(), url)  # a forked child makes its own
    with _DATABASES_LOCK:
        if (known := _DATABASES.get(key)) is not None:
            return known
    made = _SharedDatabase(adbc_driver_postgresql.connect(url))
    with _DATABASES_LOCK:
        kept = _DATABASES.setdefault(key, made)
    if kept is not made:
        made.close()
    return kept


_DRIVER_PREFIXES = re.compile(
    r"^(?:[A-Z_]+: )?(?:\[libpq\] )?(?:(?:Failed to (?:connect|prepare query|execute query|create table)[^:]*|Execution error \[\w+\]): )?(?:ERROR: +)?"
)


def database_error_reason(error: BaseException) -> str:
    """The server's own words from an ADBC error: its first line without the driver's prefixes
    (and never the SQL text the driver appends), with the SQLSTATE when there is one, and what to
    change when the server ran out of a resource."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    reason = _DRIVER_PREFIXES.sub("", first).strip()
    sqlstate = getattr(error, "sqlstate", None)
    reason = f"{reason} (SQLSTATE {sqlstate})" if sqlstate else reason
    shortage = resource_shortage(error)
    return f"{reason}; {shortage.fix}" if shortage else reason


@dataclass(frozen=True)
class ResourceShortage:
    """A resource a PostgreSQL server ran out of (SQLSTATE class 53, insufficient resources): its
    SQLSTATE, the server's words for it, what to change, and whether a later attempt may succeed."""

    sqlstate: str
    words: str
    fix: str
    transient: bool = False


# Most specific first. The server's words are matched too: the driver leaves the SQLSTATE out of
# some errors (a failed bulk ingest, a refused connection). Retrying does not help the others:
# the same work meets the same limit (a rebuild filled the lock table again on each of four
# retries). 53300 too_many_connections does: the server's connections are shared with every other
# client, whose sessions come and go, and totes's own are bounded by its connection slots.
RESOURCE_SHORTAGES = (
    ResourceShortage(
        "53200",
        "out of shared memory",
        "the server's lock table is full: raise max_locks_per_transaction (or max_connections) in its "
        "configuration and restart it; it holds max_locks_per_transaction x (max_connections + "
        "max_prepared_transactions) locks for every session together",
    ),
    ResourceShortage(
        "53200",
        "out of memory",
        "lower the server's work_mem or maintenance_work_mem, give it more memory, or lower TOTES_DATABASE_CONCURRENCY",
    ),
    ResourceShortage(
        "53100",
        "no space left on device",
        "free or add disk space on the database server (a rebuild holds a second copy of the star "
        "tables until it swaps it in)",
    ),
    ResourceShortage(
        "53300",
        "too many clients already",
        "raise the server's max_connections, or lower TOTES_DATABASE_CONCURRENCY or other clients' connections",
        transient=True,
    ),
    ResourceShortage(
        "53300",
        "remaining connection slots are reserved",
        "raise the server's max_connections, or lower TOTES_DATABASE_CONCURRENCY or other clients' connections",
        transient=True,
    ),
    ResourceShortage("53400", "", "raise the server setting the message names"),
    ResourceShortage("53000", "", "the server's log says which resource ran out"),
)


def resource_shortage(error: BaseException) -> ResourceShortage | None:
    """The resource a database driver's error (one with a ``sqlstate``, perhaps None) says the server
    ran out of, if it says so."""
    if not hasattr(error, "sqlstate"):
        return None
    sqlstate = getattr(error, "sqlstate", None) or ""
    text = str(error).lower()
    for shortage in RESOURCE_SHORTAGES:
        if shortage.words and shortage.words in text and sqlstate in ("", shortage.sqlstate):
            return shortage
    if sqlstate.startswith("53"):
        return next((s for s in RESOURCE_SHORTAGES if s.sqlstate == sqlstate), RESOURCE_SHORTAGES[-1])
    return None


class ResourceExhausted(RuntimeError):
    """A database server ran out of a resource; the message names the database and what to change."""


@contextmanager
def explaining_resource_errors(purpose: str) -> Iterator[None]:
    """Turn a database error of the block that says the server ran out of a resource into
    :class:`ResourceExhausted`, naming ``purpose`` (e.g. "warehouse database") and what to change;
    the driver's error stays its cause, for the retry decision."""
    try:
        yield
    except DatabaseError as error:
        if resource_shortage(error) is None:
            raise
        msg = f"the {purpose} ran out of a resource: {database_error_reason(error)}"
        raise ResourceExhausted(msg) from error


@contextmanager
def read_transaction(connection: Connection) -> Iterator[Cursor]:
    """A cursor for reads in a transaction of their own, rolled back after: no snapshot or lock
    outlives the read."""
    try:
        with connection.cursor() as cursor:
            yield cursor
    finally:
        roll_back(connection)


def fetch_rows(
    connection: Connection, statement: str, parameters: tuple[Any, ...] | None = None
) -> list[tuple[Any, ...]]:
    """The rows of one read-only statement, run in a transaction of its own."""
    with read_transaction(connection) as cursor:
        cursor.execute(statement, parameters=parameters)
        return cursor.fetchall()


def fetch_arrow(connection: Connection, statement: str, parameters: tuple[Any, ...] | None = None) -> pa.Table:
    """As :func:`fetch_rows`, the rows as one Arrow table."""
    with read_transaction(connection) as cursor:
        cursor.execute(statement, parameters=parameters)
        return cursor.fetch_arrow_table()


# A COPY's record batches hold at most about this many bytes. ADBC encodes a batch whole, then
# writes it: a batch bigger than the socket's buffer leaves the server idle while the client encodes
# the next one, and the client idle while the server reads it (fact_payment at scale 100: 2.4 s in
# batches of 100,000 rows, 1.5 s in batches of 1,000; the same client CPU).
COPY_BATCH_BYTES = 64 * 1024


def in_copy_sized_batches(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """The same rows, in order, in slices of about :data:`COPY_BATCH_BYTES` each (no copy)."""
    for batch in batches:
        if batch.num_rows == 0:
            continue
        # Arrow's bytes per row, plus the 4-byte length COPY puts before each field.
        row_bytes = batch.nbytes / batch.num_rows + 4 * batch.num_columns
        rows = max(16, int(COPY_BATCH_BYTES / row_bytes))
        for start in range(0, batch.num_rows, rows):
            yield batch.slice(start, rows)


def copy_rows(
    cursor: Cursor,
    table: str,
    rows: pa.Table | pa.RecordBatchReader,
    *,
    mode: Literal["append", "create"],
    temporary: bool = False,
) -> int:
    """COPY ``rows`` into ``table`` (ADBC's bulk ingest, ``mode`` as it takes it) in batches sized
    for the socket; returns the rows copied."""
    reader = rows.to_reader() if isinstance(rows, pa.Table) else rows
    sized = pa.RecordBatchReader.from_batches(reader.schema, in_copy_sized_batches(reader))
    return cursor.adbc_ingest(table, sized, mode=mode, temporary=temporary)


def execute_for_one(cursor: Cursor, statement: str, parameters: tuple[Any, ...] | None = None) -> tuple[Any, ...]:
    """Run a statement that returns exactly one row (a count, a ``returning``) in the cursor's
    transaction, and return that row."""
    cursor.execute(statement, parameters=parameters)
    row = cursor.fetchone()
    if row is None:
        msg = f"expected one row from: {statement.strip().splitlines()[0]}"
        raise RuntimeError(msg)
    return row


def roll_back(connection: Connection) -> None:
    """Roll back after a read or a failure, keeping the failure: if the connection itself is gone
    (the server ended the session), the server has already rolled the transaction back."""
    try:
        connection.rollback()
    except DatabaseError:
        log.info("rollback not possible, the connection is gone: the server rolled the transaction back")
