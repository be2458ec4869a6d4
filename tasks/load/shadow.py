"""A rebuild's shadow: a copy of the star schema that the rebuild loads from the lake, batch by batch,
beside the warehouse, and then swaps into it in one transaction.

The shadow lives in the rebuilding session's temporary schema (``pg_temp``): no other session sees
it, it needs no privilege beyond the temporary tables every load already uses (a loader role that
may create tables only in ``public`` can rebuild), and it goes with the session however the rebuild
ends, so a failed or killed rebuild leaves nothing behind and the next one starts afresh. Each batch
is loaded into it in a transaction of its own, as a normal load does, so the locks the rebuild holds
(every temporary staging table a batch creates and drops is locked until commit) and the files it
keeps do not grow with the number of batches. The warehouse is untouched until the swap: its
readers see it as it was, unblocked, all that time.

The swap empties the warehouse's tables and copies the shadow's rows into them, in one transaction:
the tables stay the same tables, so views (``current_*``, users' own), grants and comments on them
stay valid. Readers wait for that transaction only.
"""

from __future__ import annotations

from tasks.core.locks import verify_cycle_locks
from tasks.core.postgres import Connection, Cursor, execute_for_one, roll_back
from tasks.core.warehouse import WAREHOUSE_SCHEMA, migrate_warehouse_schema, take_load_lock, use_schema
from tasks.load.history import create_history_tables
from tasks.load.statements import (
    LOAD_SQL,
    history_tables,
    insert_from_shadow_statement,
    rebuilt_tables,
    record_id_sequence_statement,
    truncate_history_statement,
    truncate_rebuilt_statement,
)
from tasks.schema import FACT_RECORD_IDS, quote_ident

# Where the shadow's tables are: the session's own temporary schema.
SHADOW_SCHEMA = "pg_temp"


def create_shadow(connection: Connection, *, history: bool) -> None:
    """The star schema (and in history mode the history tables), empty, in this session's temporary
    schema: the tables, indexes and views the warehouse has, made by the same DDL."""
    migrate_warehouse_schema(connection, schema=SHADOW_SCHEMA)
    if not history:
        return
    try:
        with connection.cursor() as cursor:
            use_schema(cursor, SHADOW_SCHEMA)
            create_history_tables(cursor)
        connection.commit()
    except BaseException:
        roll_back(connection)
        raise


def swap_into_warehouse(connection: Connection, *, history: bool) -> None:
    """Replace the warehouse's star tables (and in history mode its history tables) with the shadow's,
    in one transaction under the load lock: empty them, copy the shadow's rows in, set the facts'
    record-id sequences after the ids copied, and record the shadow's batches as loaded."""
    try:
        take_load_lock(connection)
        with connection.cursor() as cursor:
            use_schema(cursor, WAREHOUSE_SCHEMA)
            if history:
                create_history_tables(cursor)
            tables = rebuilt_tables(history=history)
            cursor.execute(truncate_rebuilt_statement(tables))
            for table in tables:
                _copy_from_shadow(cursor, table)
            for table in FACT_RECORD_IDS:
                statement, parameters = record_id_sequence_statement(table)
                execute_for_one(cursor, statement, parameters)
            cursor.execute(LOAD_SQL.read("insert_loaded_batches_from_shadow"))
        verify_cycle_locks()  # still held, or taken again: a batch loaded meanwhile is loaded again next run
        connection.commit()
    except BaseException:
        roll_back(connection)
        raise


def swap_history_into_warehouse(connection: Connection) -> None:
    """Replace the warehouse's history tables and their batch record with the shadow's (history mode
    switched on for a warehouse already loaded: its history is built beside it, batch by batch, and
    readers see the old history until this commits)."""
    try:
        take_load_lock(connection)
        with connection.cursor() as cursor:
            use_schema(cursor, WAREHOUSE_SCHEMA)
            create_history_tables(cursor)
            tables = history_tables()
            cursor.execute(truncate_history_statement())
            for table in tables:
                _copy_from_shadow(cursor, table)
        connection.commit()
    except BaseException:
        roll_back(connection)
        raise


def _copy_from_shadow(cursor: Cursor, table: str) -> None:
    """Copy one table of the shadow into the warehouse's, just emptied. Its indexes are dropped before
    and built again after, as for a table loaded for the first time (``merge._copy_straight_in``):
    one sort-based build instead of an index insert per row."""
    (columns,) = execute_for_one(cursor, LOAD_SQL.read("select_shadow_columns"), (table,))
    cursor.execute(LOAD_SQL.read("select_index_rebuild"), parameters=(f"{WAREHOUSE_SCHEMA}.{quote_ident(table)}",))
    rebuilds = cursor.fetchall()
    for drop, _ in rebuilds:
        cursor.execute(drop)
    cursor.execute(insert_from_shadow_statement(table, columns))
    for _, create in rebuilds:
        cursor.execute(create)
