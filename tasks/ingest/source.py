"""Reads of the source database (ToteSys) over ADBC: its columns, its in-flight horizon, the delta of
one table as a stream of record batches, and the key summaries of the delete check."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import polars as pl
import pyarrow as pa

from tasks.core.manifests import Horizon
from tasks.core.postgres import Connection, fetch_arrow, fetch_rows, read_transaction
from tasks.ingest.delta import INGEST_SQL, conform_batch, delta_query, unstamped_query
from tasks.schema import Table, quote_ident


class SourceReadFailed(RuntimeError):
    """Reading a source table failed; the message names the table and the database (no password)."""


def read_source_columns(connection: Connection) -> dict[str, dict[str, str]]:
    """table -> column -> data_type (information_schema) of the source's tables."""
    found: dict[str, dict[str, str]] = {}
    for table, column, data_type in fetch_rows(connection, INGEST_SQL.read("select_source_columns")):
        found.setdefault(table, {})[column] = data_type
    return found


def read_source_horizon(connection: Connection) -> Horizon:
    """The source's clock and the start of its oldest open transaction, read before any data."""
    ((clock_at, oldest_open, has_hidden),) = fetch_rows(connection, INGEST_SQL.read("read_source_horizon"))
    return Horizon(
        clock_at=_naive(clock_at),
        oldest_open_transaction_at=_naive(oldest_open) if oldest_open else None,
        has_hidden_sessions=bool(has_hidden),
    )


def stream_delta(
    connection: Connection, table: Table, since: datetime
) -> Iterator[tuple[pa.RecordBatch, pa.Table | None]]:
    """Every version of ``table`` stamped at or after ``since``, batch by batch, conformed (with the
    rows that could not be, see :func:`tasks.ingest.delta.conform_batch`)."""
    with read_transaction(connection) as cursor:
        cursor.execute(delta_query(table, since))
        for batch in cursor.fetch_record_batch():
            yield conform_batch(batch, table)


def read_unstamped_rows(connection: Connection, table: Table) -> pa.Table:
    """The rows of ``table`` whose ``last_updated`` is NULL, as the delta selects them (money as text)."""
    return fetch_arrow(connection, unstamped_query(table))


def read_source_buckets(connection: Connection, table: Table, width: int) -> pl.DataFrame:
    """The source's per-range summary of ``table``'s keys (select_key_buckets.sql)."""
    (key,) = table.key
    fields = {"table": quote_ident(table.name), "key": quote_ident(key), "width": int(width)}
    return pl.DataFrame(fetch_arrow(connection, INGEST_SQL.read("select_key_buckets").format(**fields))).cast(pl.Int64)


def read_source_keys(connection: Connection, table: Table, low: int, high: int) -> pl.Series:
    """The source's keys of ``table`` in [low, high)."""
    (key,) = table.key
    fields = {"table": quote_ident(table.name), "key": quote_ident(key)}
    statement = INGEST_SQL.read("select_keys_in_range").format(**fields)
    return pl.Series(key, fetch_arrow(connection, statement, (low, high)).column(key)).cast(pl.Int64)


def _naive(value: datetime) -> datetime:
    return value.replace(tzinfo=None) if value.tzinfo else value
