"""The warehouse's schema: created or migrated (idempotently) by every stage that writes to it."""

from __future__ import annotations

from tasks.core.postgres import Connection
from tasks.core.sql import SqlFolder

CORE_SQL = SqlFolder("tasks.core")


def take_load_lock(connection: Connection) -> None:
    """Take the transaction-scoped lock every writer of the star schema holds until it commits."""
    with connection.cursor() as cursor:
        cursor.execute(CORE_SQL.read("take_load_lock"))


def migrate_warehouse_schema(connection: Connection) -> None:
    """Create or migrate the warehouse's star schema, feed tables and bookkeeping tables."""
    with connection.cursor() as cursor:
        cursor.execute(CORE_SQL.read("take_load_lock"))
        for statement in CORE_SQL.statements("create_warehouse"):
            cursor.execute(statement)
    connection.commit()
