"""The demo's queries of the warehouse: what landed, shown to a person."""

from __future__ import annotations

from typing import Any

from tasks.core.postgres import Connection, fetch_rows
from tasks.core.sql import SqlFolder
from tasks.schema import FEED_TABLES, STAR_TABLES, quote_ident

SANDBOX_SQL = SqlFolder("tasks.sandbox")


def revenue_by_month(connection: Connection, *, months: int) -> list[tuple[Any, ...]]:
    """The demo's star query (see select_revenue_by_month.sql): newest months first."""
    return fetch_rows(connection, SANDBOX_SQL.read("select_revenue_by_month"), (months * 3,))


def exchange_rates_by_file(connection: Connection) -> list[tuple[Any, ...]]:
    """(source file, version, rows, latest USD rate) of fact_exchange_rate: the demo's feed view."""
    return fetch_rows(connection, SANDBOX_SQL.read("select_exchange_rates_by_file"))


def count_rows(connection: Connection) -> dict[str, int]:
    """Rows in each star table and feed table."""
    counts = {}
    for table in [*STAR_TABLES, *FEED_TABLES]:
        # bandit B608: identifier from tasks/schema.py, quoted
        ((counts[table],),) = fetch_rows(connection, f"select count(*) from public.{quote_ident(table)}")  # nosec B608
    return counts
