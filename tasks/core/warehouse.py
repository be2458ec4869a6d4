"""The warehouse's schema: created or migrated (idempotently) by every stage that writes to it."""

from __future__ import annotations

from tasks.core.postgres import Connection, Cursor
from tasks.core.sql import SqlFolder

CORE_SQL = SqlFolder("tasks.core")

# The schema of the star tables, the feed tables and totes' bookkeeping.
WAREHOUSE_SCHEMA = "public"


def take_load_lock(connection: Connection) -> None:
    """Take the transaction-scoped lock every writer of the star schema holds until it commits."""
    with connection.cursor() as cursor:
        _take_load_lock(cursor)


def _take_load_lock(cursor: Cursor) -> None:
    cursor.execute(CORE_SQL.read("take_load_lock"))
    # Read its row: the driver runs a SELECT as a COPY whose error (out of shared memory, say) is
    # reported when the rows are read, or else as "current transaction is aborted" by the next statement.
    cursor.fetchall()


def use_schema(cursor: Cursor, schema: str) -> None:
    """Resolve the unqualified table names of the cursor's transaction in ``schema`` (one of our own
    names: ``WAREHOUSE_SCHEMA``, or ``pg_temp`` for a rebuild's shadow copy), until it ends."""
    cursor.execute(CORE_SQL.read("set_search_path"), parameters=(schema,))
    cursor.fetchall()


def migrate_warehouse_schema(connection: Connection, *, schema: str = WAREHOUSE_SCHEMA) -> None:
    """Create or migrate the warehouse's star schema, feed tables and bookkeeping tables in
    ``schema`` (a rebuild creates them in its shadow, ``pg_temp``)."""
    with connection.cursor() as cursor:
        _take_load_lock(cursor)
        use_schema(cursor, schema)
        for statement in CORE_SQL.statements("create_warehouse"):
            cursor.execute(statement)
    connection.commit()
