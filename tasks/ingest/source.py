"""Reads of the source database (ToteSys) over ADBC: its columns, its in-flight horizon, the delta of
one table as a stream of record batches, and the key summaries of the delete check."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from tasks.core.manifests import Horizon
from tasks.core.postgres import Connection, connect, fetch_arrow, fetch_rows, read_transaction
from tasks.ingest.content import index_rows, with_keyed_content
from tasks.ingest.deletes import COUNTED_BY_RANGE_FROM_ROWS, ranges_to_count
from tasks.ingest.delta import (
    INGEST_SQL,
    by_key_query,
    conform_batch,
    content_buckets_query,
    delta_query,
    range_query,
    stamped_query,
    unstamped_query,
)
from tasks.ingest.pii import PiiPolicy, mask_pii
from tasks.schema import SOURCE_TABLES, Table, quote_ident
from tasks.settings import load_settings


class SourceReadFailed(RuntimeError):
    """Reading a source table failed; the message names the table and the database (no password)."""


def read_source_columns(connection: Connection) -> dict[str, dict[str, str]]:
    """table -> column -> data_type (information_schema) of the source's tables."""
    found: dict[str, dict[str, str]] = {}
    for table, column, data_type in fetch_rows(connection, INGEST_SQL.read("select_source_columns")):
        found.setdefault(table, {})[column] = data_type
    return found


@dataclass(frozen=True)
class DefaultTimeZone:
    """The TimeZone a new session of a database gets (what a writer's ``now()`` is stored in)."""

    time_zone: str
    is_utc: bool  # the same wall time as UTC all year
    database_name: str


def read_default_time_zone(connection: Connection) -> DefaultTimeZone:
    """The database's default TimeZone (not the one a session pinned: see read_default_time_zone.sql)."""
    ((time_zone, is_utc, database_name),) = fetch_rows(connection, INGEST_SQL.read("read_default_time_zone"))
    return DefaultTimeZone(time_zone, bool(is_utc), database_name)


@dataclass(frozen=True)
class SourceActivity:
    """What the server counts of the source tables (read_source_activity.sql): per table, the
    signature of its writes (equal signatures at two runs mean no row was written between them;
    absent where the counters cannot be trusted now) and its estimated number of rows."""

    signatures: dict[str, str]
    estimated_rows: dict[str, int]
    untrusted_because: str | None = None


def read_source_activity(connection: Connection) -> SourceActivity:
    """The server's counts of the source tables' writes and sizes, now, and, if they cannot be
    trusted now, why (in the server's words: which session was busy)."""
    names = "{" + ",".join(SOURCE_TABLES) + "}"
    rows = fetch_rows(connection, INGEST_SQL.read("read_source_activity"), (names,))
    return SourceActivity(
        signatures={name: signature for name, signature, _, _ in rows if signature is not None},
        estimated_rows={name: int(estimate) for name, _, estimate, _ in rows},
        untrusted_because=next((str(why) for *_, why in rows if why is not None), None),
    )


class SourceNotReadable(RuntimeError):
    """The source role cannot SELECT some source tables; the message names them and the grant."""


def check_source_grants(connection: Connection) -> None:
    """Refuse, before anything is read, a source role that cannot SELECT every source table.

    Raises:
        SourceNotReadable: naming the tables, the role and the grant that fixes it.
    """
    names = "{" + ",".join(SOURCE_TABLES) + "}"
    lacking = fetch_rows(connection, INGEST_SQL.read("select_unreadable_source_tables"), (names,))
    if lacking:
        tables, role = ", ".join(row[0] for row in lacking), lacking[0][1]
        msg = (
            f"the source role {role} cannot SELECT source table(s) {tables}: "
            f"grant select on {tables} to {role}; nothing was read"
        )
        raise SourceNotReadable(msg)


class SourceIsStandby(RuntimeError):
    """The source is a standby and totes cannot take a safe horizon from its primary."""


@dataclass(frozen=True)
class HorizonReading:
    """The horizon as one server saw it, and what kind of server it is."""

    horizon: Horizon
    is_standby: bool
    wal_position: str | None  # the primary's WAL insert position when it was read


def read_source_horizon(connection: Connection) -> HorizonReading:
    """The server's clock, its oldest open and prepared transactions, read before any data."""
    ((clock_at, oldest_open, has_hidden, oldest_prepared, is_standby, wal_position),) = fetch_rows(
        connection, INGEST_SQL.read("read_source_horizon")
    )
    horizon = Horizon(
        clock_at=_naive(clock_at),
        oldest_open_transaction_at=_naive(oldest_open) if oldest_open else None,
        has_hidden_sessions=bool(has_hidden),
        oldest_prepared_transaction_at=_naive(oldest_prepared) if oldest_prepared else None,
    )
    return HorizonReading(horizon=horizon, is_standby=bool(is_standby), wal_position=wal_position)


def wait_for_replay(standby: Connection, wal_position: str, *, wait_seconds: float) -> float:
    """Wait until the standby has replayed the primary's WAL up to ``wal_position`` (then it shows
    every transaction the primary had committed); return the seconds waited.

    Raises:
        SourceIsStandby: replay did not get there within ``wait_seconds``.
    """
    started = time.monotonic()
    while True:
        ((has_replayed, replayed),) = fetch_rows(standby, INGEST_SQL.read("read_replay_position"), (wal_position,))
        waited = time.monotonic() - started
        if has_replayed:
            return waited
        if waited >= wait_seconds:
            msg = (
                f"the source standby has replayed the primary's WAL only to {replayed}, short of {wal_position} "
                f"after {waited:.0f} s: reading it now would miss committed rows; nothing was read"
            )
            raise SourceIsStandby(msg)
        time.sleep(0.2)


def connect_source(url: str, *, purpose: str = "source database") -> Connection:
    """A connection to the source whose rows print as text the same way on every run (every read
    hashes each row's text; see ``content.py``)."""
    connection = connect(url, purpose=purpose)
    with connection.cursor() as cursor:
        cursor.execute(INGEST_SQL.read("pin_session_settings"))
        cursor.fetchall()
    connection.commit()
    return connection


@dataclass(frozen=True)
class SourceRows:
    """Rows read from the source: those conformed to the raw zone's schema, those that could not be
    (with ``_reason``, see :func:`tasks.ingest.delta.conform_batch`), and the content index rows of
    both (key, foreign keys, the hash of the row its table's ``PiiPolicy.content_scheme`` says)."""

    rows: pa.RecordBatch
    rejected: pa.Table | None
    index: pa.Table

    @classmethod
    def read(cls, batch: pa.RecordBatch, table: Table, pii: PiiPolicy) -> SourceRows:
        """Rows as read, PII masked first: the rows set aside keep only masked values too, and the
        content index holds keys, foreign keys and a hash of the row: the server's, or for a table
        with PII columns totes' hash of the masked row, keyed if it hashes a column (the server's
        hashes the values as they are: see ``content.py``)."""
        masked = mask_pii(batch, table.name, pii)
        rows, rejected = conform_batch(masked, table)
        keyed = pii.content_scheme(table.name) != "source"
        index = index_rows(with_keyed_content(masked, table, pii.content_key(table.name)) if keyed else batch, table)
        return cls(rows, rejected, index)

    def without(self, keys: pa.Array, key: str) -> SourceRows:
        """These rows without the given keys."""
        rejected = self.rejected
        if rejected is not None:
            rejected = rejected.filter(pc.invert(pc.fill_null(pc.is_in(rejected.column(key), keys), False)))
        return SourceRows(
            self.rows.filter(pc.invert(pc.is_in(self.rows.column(key), keys))),
            rejected,
            self.index.filter(pc.invert(pc.is_in(self.index.column(key), keys))),
        )

    def only(self, keys: pa.Array, key: str) -> SourceRows:
        """These rows restricted to the given keys."""
        rejected = self.rejected.filter(pc.is_in(self.rejected.column(key), keys)) if self.rejected else None
        return SourceRows(
            self.rows.filter(pc.is_in(self.rows.column(key), keys)),
            rejected,
            self.index.filter(pc.is_in(self.index.column(key), keys)),
        )


def stream_delta(connection: Connection, table: Table, since: datetime) -> Iterator[SourceRows]:
    """Every version of ``table`` stamped at or after ``since``, batch by batch."""
    pii = source_pii_policy()
    with read_transaction(connection) as cursor:
        cursor.execute(delta_query(table, since))
        for batch in cursor.fetch_record_batch():
            yield SourceRows.read(batch, table, pii)


def read_rows_in_range(connection: Connection, table: Table, low: int, high: int) -> Iterator[SourceRows]:
    """The stamped rows of ``table`` with a key in [low, high), read as the delta's are."""
    pii = source_pii_policy()
    for batch in fetch_arrow(connection, range_query(table), (low, high)).to_batches():
        yield SourceRows.read(batch, table, pii)


def read_rows_by_key(connection: Connection, table: Table, keys: list[int]) -> Iterator[SourceRows]:
    """The stamped rows of ``table`` with one of these keys, read as the delta's are."""
    if not keys:
        return
    wanted = "{" + ",".join(str(int(k)) for k in keys) + "}"
    pii = source_pii_policy()
    for batch in fetch_arrow(connection, by_key_query(table), (wanted,)).to_batches():
        yield SourceRows.read(batch, table, pii)


def stream_every_row(connection: Connection, table: Table) -> Iterator[tuple[SourceRows, pa.Table]]:
    """Every stamped row of ``table`` with a key, batch by batch, read as the delta's are; beside
    each batch, its content index rows under the ``source`` scheme (the server's hash of the row as
    it is, held in memory only), to compare with an index written under it. For the deep pass of a
    table whose index is keyed, and the rewrite of an index (see ``reconcile.py``)."""
    pii = source_pii_policy()
    with read_transaction(connection) as cursor:
        cursor.execute(stamped_query(table))
        for batch in cursor.fetch_record_batch():
            yield SourceRows.read(batch, table, pii), index_rows(batch, table)


def read_content_buckets(connection: Connection, table: Table, width: int) -> pl.DataFrame:
    """The source's per-range summary of ``table``'s row hashes (select_content_buckets.sql)."""
    return pl.DataFrame(fetch_arrow(connection, content_buckets_query(table, width))).cast(pl.Int64)


def read_unstamped_rows(connection: Connection, table: Table) -> pa.Table:
    """The rows of ``table`` whose ``last_updated`` is NULL, as the delta selects them (money as text)."""
    return mask_pii(fetch_arrow(connection, unstamped_query(table)), table.name, source_pii_policy())


def source_pii_policy() -> PiiPolicy:
    """The deployment's PII policy (``TOTES_PII_COLUMNS``), applied to every row read."""
    settings = load_settings()
    hashes = "hash" in settings.pii_columns.values()
    return PiiPolicy.of(settings.pii_columns, settings.require_pii_hash_key() if hashes else None)


def read_source_buckets(connection: Connection, table: Table, width: int, *, hashed: bool = True) -> pl.DataFrame:
    """The source's per-range summary of ``table``'s keys (select_key_buckets.sql), or without the
    hash of every key, at about half the cost (select_key_counts.sql), or a third when the key leads
    an index (select_key_counts_by_range.sql)."""
    (key,) = table.key
    fields = {"table": quote_ident(table.name), "key": quote_ident(key), "width": int(width)}
    if not hashed:
        layout = fetch_rows(
            connection, INGEST_SQL.read("read_key_index_layout").format(**fields), (key, COUNTED_BY_RANGE_FROM_ROWS)
        )
        ((indexed, rows_estimate, key_min, key_max),) = layout
        ranges = ranges_to_count(
            indexed=bool(indexed),
            key_min=None if key_min is None else int(key_min),
            key_max=None if key_max is None else int(key_max),
            rows_estimate=int(rows_estimate),
            width=int(width),
        )
        if ranges is not None:
            statement = INGEST_SQL.read("select_key_counts_by_range").format(**fields)
            return pl.DataFrame(fetch_arrow(connection, statement, ranges)).cast(pl.Int64)
    statement = INGEST_SQL.read("select_key_buckets" if hashed else "select_key_counts").format(**fields)
    return pl.DataFrame(fetch_arrow(connection, statement)).cast(pl.Int64)


def read_source_keys(connection: Connection, table: Table, low: int, high: int) -> pl.Series:
    """The source's keys of ``table`` in [low, high)."""
    (key,) = table.key
    fields = {"table": quote_ident(table.name), "key": quote_ident(key)}
    statement = INGEST_SQL.read("select_keys_in_range").format(**fields)
    return pl.Series(key, fetch_arrow(connection, statement, (low, high)).column(key)).cast(pl.Int64)


def _naive(value: datetime) -> datetime:
    return value.replace(tzinfo=None) if value.tzinfo else value
