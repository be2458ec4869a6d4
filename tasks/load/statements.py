"""The load's SQL, built from our schema (identifiers quoted, never from data), and what its
results say. Pure."""

from __future__ import annotations

from tasks.core.sql import SqlFolder
from tasks.schema import (
    DIMENSION_TABLES,
    FACT_RECORD_IDS,
    STAR_NULLABLE_COLUMNS,
    STAR_TABLES,
    quote_ident,
)

LOAD_SQL = SqlFolder("tasks.load")

# What an inferred dimension member holds in its NOT NULL columns until the real row arrives.
UNKNOWN_MEMBER = "Unknown"


def staging_name(table: str) -> str:
    return f"_totes_staged_{table}"


def merge_statement(table: str) -> str:
    """The merge SQL of one star table, with identifiers from our schema only."""
    spec = STAR_TABLES[table]
    columns = [quote_ident(c) for c in spec.columns]
    fields = {
        "table": quote_ident(table),
        "staging": quote_ident(staging_name(table)),
        "columns": ", ".join(columns),
        "key": ", ".join(quote_ident(k) for k in spec.key),
        "excluded_columns": ", ".join(f"excluded.{c}" for c in columns),
        "target_columns": ", ".join(f"target.{c}" for c in columns),
    }
    if table in DIMENSION_TABLES:
        return LOAD_SQL.read("upsert_dimension").format(**fields)
    return LOAD_SQL.read("insert_new_fact_versions").format(**fields)


def inferred_members_statement(dimension: str) -> str:
    """The SQL inserting placeholder members for referenced ids the dimension lacks: "Unknown" in
    every NOT NULL column, NULL in the others. Identifiers from our schema only."""
    spec = STAR_TABLES[dimension]
    (key,) = spec.key
    others = [c for c in spec.columns if c != key]
    values = ["null" if (dimension, c) in STAR_NULLABLE_COLUMNS else f"'{UNKNOWN_MEMBER}'" for c in others]
    return LOAD_SQL.read("insert_inferred_members").format(
        table=quote_ident(dimension),
        key=quote_ident(key),
        columns=", ".join(quote_ident(c) for c in others),
        values=", ".join(values),
    )


def describe_inferred(inferred: dict[str, list[int]]) -> list[str]:
    """One data-quality warning per dimension that got inferred members."""
    return [
        f"{dimension}: facts refer to {len(ids)} id(s) it does not hold ({', '.join(map(str, ids[:5]))}"
        f"{', ...' if len(ids) > 5 else ''}); loaded against inferred {UNKNOWN_MEMBER!r} members, "
        "filled in when the rows arrive"
        for dimension, ids in inferred.items()
    ]


def mark_deleted_statement(table: str) -> str:
    """The SQL marking a star table's rows whose source rows were hard-deleted (facts: the latest
    version of each key only). Identifiers from our schema only."""
    key = quote_ident(STAR_TABLES[table].key[0])
    if table in FACT_RECORD_IDS:
        return LOAD_SQL.read("mark_deleted_fact").format(
            table=quote_ident(table), key=key, record_id=quote_ident(FACT_RECORD_IDS[table])
        )
    return LOAD_SQL.read("mark_deleted_dimension").format(table=quote_ident(table), key=key)


# History mode: the dimensions whose versions are kept (dim_date's rows never change).
HISTORY_DIMENSIONS = tuple(name for name in DIMENSION_TABLES if name != "dim_date")


def history_name(table: str) -> str:
    return f"{table}_history"


def history_statements(name: str, table: str) -> list[str]:
    """The SQL statements of ``name`` (a history-mode .sql file) for dimension ``table``, with
    identifiers from our schema only."""
    spec = STAR_TABLES[table]
    columns = [quote_ident(c) for c in spec.columns]
    fields = {
        "table": quote_ident(table),
        "history": quote_ident(history_name(table)),
        "key": quote_ident(spec.key[0]),
        "columns": ", ".join(columns),
        "history_columns": ", ".join(f"history.{c}" for c in columns),
        "batch_columns": ", ".join(f"batch.{c}" for c in columns),
        "version_index": quote_ident(f"{history_name(table)}_version"),
        "current_index": quote_ident(f"{history_name(table)}_current"),
    }
    return [statement.format(**fields) for statement in LOAD_SQL.statements(name)]


def truncate_history_statement() -> str:
    """Empty every history table and its batch record (they are built again, batch by batch)."""
    tables = [quote_ident(history_name(t)) for t in HISTORY_DIMENSIONS]
    return "truncate table " + ", ".join([*tables, "_totes_history_batch"])


def history_tables() -> list[str]:
    """The history tables and their batch record."""
    return [*(history_name(t) for t in HISTORY_DIMENSIONS), "_totes_history_batch"]


def rebuilt_tables(*, history: bool) -> list[str]:
    """The tables a rebuild copies from its shadow into the warehouse: the star tables, and in history
    mode the history tables and their batch record."""
    if not history:
        return list(STAR_TABLES)
    return [*STAR_TABLES, *history_tables()]


def truncate_rebuilt_statement(tables: list[str]) -> str:
    """Empty the warehouse's ``tables`` and its batch record, in one statement."""
    names = ", ".join(f"public.{quote_ident(t)}" for t in [*tables, "_totes_loaded_batch"])
    return LOAD_SQL.read("truncate_star").format(tables=names)


def insert_from_shadow_statement(table: str, columns: str) -> str:
    """Copy one table from the shadow into the warehouse. ``columns``: the shadow table's columns, as
    the server quoted them (``select_shadow_columns``)."""
    return LOAD_SQL.read("insert_from_shadow").format(table=quote_ident(table), columns=columns)


def record_id_sequence_statement(table: str) -> tuple[str, tuple[str, str]]:
    """Set a fact's record-id sequence after its highest id: the statement and its parameters."""
    record_id = FACT_RECORD_IDS[table]
    statement = LOAD_SQL.read("set_record_id_sequence").format(
        table=quote_ident(table), record_id=quote_ident(record_id)
    )
    return statement, (f"public.{quote_ident(table)}", record_id)
