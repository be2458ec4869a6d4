"""The development source: create a ToteSys database, fill it, and make it change.

* :func:`seed_generated` fills it with deterministic, realistic data (generated_totesys.py),
  bulk-loaded with ADBC ingest (COPY).
* :func:`seed_from_dump` loads a real pg_dump of ToteSys (``../shared/data``, read by
  totesys_dump.py) into the canonical schema.
* :func:`churn` applies one round of business activity.
"""

from __future__ import annotations

import logging
from pathlib import Path

import adbc_driver_postgresql.dbapi as adbc_postgres
import pyarrow as pa

from tasks.core.postgres import copy_rows, fetch_rows
from tasks.core.sql import SqlFolder
from tasks.sandbox.generated_totesys import generate_tables
from tasks.sandbox.totesys_dump import read_dump_blocks
from tasks.schema import SOURCE_ENUM_COLUMNS, SOURCE_TABLES, quote_ident

SANDBOX_SQL = SqlFolder("tasks.sandbox")

log = logging.getLogger("totes.source")

# Loaded in this order so that a reader never sees a row before the rows it refers to.
LOAD_ORDER = (
    "address",
    "counterparty",
    "currency",
    "department",
    "design",
    "staff",
    "sales_order",
    "purchase_order",
    "payment_type",
    "transaction",
    "payment",
)


class SourceError(RuntimeError):
    """The source database is not in a state the command can work with."""


def _execute_script(connection: adbc_postgres.Connection, name: str) -> None:
    with connection.cursor() as cursor:
        for statement in SANDBOX_SQL.statements(name):
            cursor.execute(statement)


def existing_tables(connection: adbc_postgres.Connection) -> list[str]:
    statement = (
        "select table_name from information_schema.tables where table_schema = 'public' and table_name = any($1)"
    )
    return sorted(row[0] for row in fetch_rows(connection, statement, (list(SOURCE_TABLES),)))


def create_schema(connection: adbc_postgres.Connection, *, replace: bool) -> None:
    """Create the ToteSys tables (the source model), refusing to touch existing ones unless ``replace``."""
    found = existing_tables(connection)
    if found and not replace:
        msg = (
            f"the source already has ToteSys tables ({', '.join(found)}); "
            "run `totes seed --replace` to drop and recreate them"
        )
        raise SourceError(msg)
    if found:
        log.warning("Dropping the existing ToteSys tables: %s", ", ".join(found))
        _execute_script(connection, "drop_totesys_tables")
    _execute_script(connection, "create_totesys_tables")
    _execute_script(connection, "set_utc_time_zone")
    connection.commit()


def finish_schema(connection: adbc_postgres.Connection, *, delta_indexes: bool) -> None:
    """After the bulk load: foreign keys, unique indexes, sequences, statistics."""
    _execute_script(connection, "create_totesys_constraints")
    if delta_indexes:
        _execute_script(connection, "create_totesys_delta_indexes")
    with connection.cursor() as cursor:
        for table in SOURCE_TABLES.values():
            (key,) = table.key
            cursor.execute(
                SANDBOX_SQL.read("reset_sequence").format(table=table.name, key=key, quoted_key=quote_ident(key))
            )
    connection.commit()
    with connection.cursor() as cursor:
        cursor.execute("analyze")
    connection.commit()


def ingest_rows(connection: adbc_postgres.Connection, table: str, data: pa.Table) -> int:
    """COPY rows (with the table's exact Arrow schema) into a source table."""
    return copy_rows(connection.cursor(), table, data.cast(SOURCE_TABLES[table].schema), mode="append")


def seed_generated(
    connection: adbc_postgres.Connection,
    scale: float,
    *,
    seed: int = 2024,
    replace: bool = False,
    delta_indexes: bool = False,
) -> dict[str, int]:
    """Create the schema and bulk-load generated data; returns rows per table."""
    create_schema(connection, replace=replace)
    counts = {}
    for table, data in generate_tables(scale, seed=seed):
        counts[table] = ingest_rows(connection, table, data)
        log.debug("seeded %s: %d rows", table, counts[table])
    connection.commit()
    finish_schema(connection, delta_indexes=delta_indexes)
    return counts


# --- the real database, from a pg_dump -------------------------------------------------------------


def _cast_expression(table: str, column: str, arrow_type: pa.DataType) -> str:
    quoted = quote_ident(column)
    enum = SOURCE_ENUM_COLUMNS.get((table, column))
    if enum:
        return f"staged.{quoted}::{quote_ident(enum)}"
    if pa.types.is_integer(arrow_type):
        # The dump writes some integer ids as 6926.0.
        return f"staged.{quoted}::numeric::integer"
    if pa.types.is_decimal(arrow_type):
        return f"staged.{quoted}::numeric(10, 2)"
    if pa.types.is_timestamp(arrow_type):
        return f"staged.{quoted}::timestamp(3)"
    if pa.types.is_boolean(arrow_type):
        return f"staged.{quoted}::boolean"
    return f"staged.{quoted}"


def seed_from_dump(
    connection: adbc_postgres.Connection, path: Path, *, replace: bool = False, delta_indexes: bool = False
) -> dict[str, int]:
    """Create the schema and load a real ToteSys pg_dump into it with the canonical types."""
    if not path.exists():
        msg = f"dump file {path} does not exist"
        raise SourceError(msg)
    create_schema(connection, replace=replace)
    counts: dict[str, int] = {}
    with connection.cursor() as cursor:
        for table, columns, rows in read_dump_blocks(path):
            if table not in SOURCE_TABLES:
                continue
            schema = SOURCE_TABLES[table].schema
            unknown = set(columns) - set(schema.names)
            if unknown:
                msg = f"dump table {table} has columns the spec does not know: {sorted(unknown)}"
                raise SourceError(msg)
            staging = f"_totes_import_{table}"
            text = pa.table({c: pa.array([r[i] for r in rows], pa.string()) for i, c in enumerate(columns)})
            copy_rows(cursor, staging, text, mode="create", temporary=True)
            cursor.execute(
                SANDBOX_SQL.read("insert_imported_rows").format(
                    table=quote_ident(table),
                    columns=", ".join(quote_ident(c) for c in columns),
                    casts=", ".join(_cast_expression(table, c, schema.field(c).type) for c in columns),
                    staging=quote_ident(staging),
                )
            )
            counts[table] = len(rows)
            log.info("imported %s: %d rows", table, len(rows))
    connection.commit()
    missing = set(SOURCE_TABLES) - set(counts)
    if missing:
        msg = f"dump {path} has no COPY data for {sorted(missing)}"
        raise SourceError(msg)
    finish_schema(connection, delta_indexes=delta_indexes)
    return counts


# --- churn -----------------------------------------------------------------------------------------


def churn(connection: adbc_postgres.Connection, *, orders: int) -> None:
    """One round of business activity, in one transaction: ``orders`` new sales orders (and half as
    many purchase orders) with their transactions and payments, payments flipping to paid, order
    amendments, a counterparty's address and a department changing, new designs, and one unpaid
    sales order cancelled (its payment, transaction and order hard-deleted)."""
    if orders < 1:
        msg = f"--orders must be at least 1 (got {orders})"
        raise SourceError(msg)
    found = existing_tables(connection)
    if len(found) < len(SOURCE_TABLES):
        msg = "the source has no ToteSys schema: run `totes seed` first"
        raise SourceError(msg)
    with connection.cursor() as cursor:
        for statement in SANDBOX_SQL.statements("churn_source"):
            cursor.execute(statement, parameters=(orders,))
    connection.commit()
