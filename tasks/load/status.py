"""Where the warehouse stands, for ``totes status``: the batches it has loaded and when it last
did, and per star table its rows, those marked deleted in the source, and its inferred members."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from tasks.core.postgres import Connection, fetch_rows
from tasks.load.merge import loaded_batches
from tasks.load.statements import LOAD_SQL
from tasks.schema import DIMENSION_TABLES, STAR_TABLES, quote_ident


@dataclass(frozen=True)
class StarTableStatus:
    table: str
    rows: int
    deleted: int
    inferred: int


@dataclass(frozen=True)
class WarehouseStatus:
    """``created`` is False until a load has created the star schema (then nothing else is known)."""

    created: bool
    loaded_batches: frozenset[str] = frozenset()
    last_loaded_batch: str | None = None
    last_loaded_at: datetime | None = None
    tables: list[StarTableStatus] = field(default_factory=list)


def read_warehouse_status(connection: Connection) -> WarehouseStatus:
    """The warehouse's loaded batches and star tables (reads only; counts every star table's rows)."""
    ((created,),) = fetch_rows(connection, LOAD_SQL.read("select_star_schema_created"))
    if not created:
        return WarehouseStatus(created=False)
    last = fetch_rows(connection, LOAD_SQL.read("select_last_loaded_batch"))
    last_batch, loaded_at = last[0] if last else (None, None)
    return WarehouseStatus(
        created=True,
        loaded_batches=frozenset(loaded_batches(connection)),
        last_loaded_batch=last_batch,
        last_loaded_at=loaded_at,
        tables=[_star_table_status(connection, table) for table in STAR_TABLES],
    )


def _star_table_status(connection: Connection, table: str) -> StarTableStatus:
    inferred = "count(*) filter (where _inferred)" if table in DIMENSION_TABLES else "0"
    statement = LOAD_SQL.read("count_star_rows").format(table=quote_ident(table), inferred=inferred)
    ((rows, deleted, inferred_rows),) = fetch_rows(connection, statement)
    return StarTableStatus(table=table, rows=int(rows), deleted=int(deleted), inferred=int(inferred_rows))
