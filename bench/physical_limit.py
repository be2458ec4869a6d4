"""(d) The physical limit: every warehouse table's SQL streamed from the source with
``COPY (SELECT …) TO STDOUT (FORMAT binary)`` straight into ``COPY … FROM STDIN (FORMAT binary)`` on
the warehouse. No lake, no transform engine, no merge: what PostgreSQL itself can stream.

The SQL of each star table is the independent expectation the integration tests check the warehouse
against (``tests/integration/expected/``); dim_date is the contiguous range of referenced dates.

Usage: python -m bench.physical_limit SOURCE_URL WAREHOUSE_URL   (prints one JSON line)
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import psycopg
from psycopg import sql

from tasks.schema import STAR_TABLES

EXPECTED = Path(__file__).resolve().parents[1] / "tests" / "integration" / "expected"


def star_table_queries() -> dict[str, str]:
    """Each star table's rows, computed from ToteSys by SQL alone."""
    queries = {}
    for table in STAR_TABLES:
        if table == "dim_date":
            referenced = (EXPECTED / "referenced_dates.sql").read_text()
            attributes = (EXPECTED / "dim_date_attributes.sql").read_text()
            days = (
                "(select generate_series(min(r.d), max(r.d), interval '1 day')::date as date_id "
                # bandit B608: our own SQL file
                f"from ({referenced}) as r)"  # nosec B608
            )
            queries[table] = attributes.replace("from dim_date as d", f"from {days} as d")
        else:
            queries[table] = (EXPECTED / f"{table}.sql").read_text()
    return queries


def column_types(source: psycopg.Connection, query: str) -> list[tuple[str, str]]:
    """(name, SQL type) of each output column of ``query``, as PostgreSQL describes them."""
    with source.cursor() as cursor:
        cursor.execute(sql.SQL("create temporary view bench_limit_shape as {}").format(sql.SQL(query)))
        cursor.execute(
            "select attname, format_type(atttypid, atttypmod) from pg_attribute "
            "where attrelid = 'bench_limit_shape'::regclass and attnum > 0 order by attnum"
        )
        columns = cursor.fetchall()
        cursor.execute("drop view bench_limit_shape")
    return columns


def copy_table(source: psycopg.Connection, warehouse: psycopg.Connection, table: str, query: str) -> int:
    columns = column_types(source, query)
    target = sql.Identifier(f"limit_{table}")
    with warehouse.cursor() as cursor:
        cursor.execute(sql.SQL("drop table if exists {}").format(target))
        cursor.execute(
            sql.SQL("create table {} ({})").format(
                target,
                sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t)) for n, t in columns),
            )
        )
    with source.cursor() as out_cursor, warehouse.cursor() as in_cursor:
        copy_out = sql.SQL("copy ({}) to stdout (format binary)").format(sql.SQL(query))
        copy_in = sql.SQL("copy {} from stdin (format binary)").format(target)
        with out_cursor.copy(copy_out) as reader, in_cursor.copy(copy_in) as writer:
            for chunk in reader:
                writer.write(chunk)
        in_cursor.execute(sql.SQL("select count(*) from {}").format(target))
        (rows,) = in_cursor.fetchone()
    warehouse.commit()
    return rows


def main(source_url: str, warehouse_url: str) -> None:
    started = time.perf_counter()
    rows = {}
    with psycopg.connect(source_url) as source, psycopg.connect(warehouse_url) as warehouse:
        for table, query in star_table_queries().items():
            rows[table] = copy_table(source, warehouse, table, query)
    print(json.dumps({"rows": sum(rows.values()), "tables": rows, "seconds": time.perf_counter() - started}))


if __name__ == "__main__":
    main(*sys.argv[1:3])
