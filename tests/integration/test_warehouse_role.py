"""The pipeline loads the warehouse as a role that owns the star schema's tables and nothing else: no
superuser, no CREATEDB or CREATEROLE, no access to the warehouse's other tables."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tasks.core.postgres import connect
from tasks.schema import FEED_TABLES, STAR_TABLES
from tests.integration.conftest import Pipeline, execute, rows_as_text
from tests.integration.test_source_role import as_user


def test_a_loader_role_that_owns_only_the_star_schema_runs_the_pipeline(
    databases, s3_lake_url, prefect_api, monkeypatch
):
    pipeline = Pipeline(databases.source_url, databases.warehouse_url, s3_lake_url, monkeypatch)
    pipeline.seed(scale=0.02)
    database = urlsplit(databases.warehouse_url).path.strip("/")
    role = f"loader_{database[-10:]}"
    execute(
        databases.warehouse_url,
        f'create role "{role}" login nosuperuser nocreatedb nocreaterole',
        f'grant connect on database "{database}" to "{role}"',
        f'grant usage, create on schema public to "{role}"',
        # Someone else's table in the same warehouse: the loader must not see into it.
        "create table finance_ledger (entry_id integer primary key, amount numeric)",
        "insert into finance_ledger values (1, 100.00)",
    )
    loader_url = as_user(databases.warehouse_url, role)
    monkeypatch.setenv("TOTES_WAREHOUSE_URL", loader_url)

    pipeline.run()
    pipeline.churn(orders=10)
    pipeline.run()
    pipeline.assert_warehouse_matches_source()

    owned = set(
        rows_as_text(
            databases.warehouse_url,
            f"select tablename from pg_tables where schemaname = 'public' and tableowner = '{role}'",
        )
    )
    expected = {
        f"({t})" for t in [*STAR_TABLES, *FEED_TABLES, "_totes_loaded_batch", "_totes_feed_file", "_totes_lake"]
    }
    assert owned == expected
    with connect(loader_url) as loader:
        loader.adbc_connection.set_autocommit(True)  # CREATE DATABASE cannot run in a transaction
        for statement in (
            "select * from finance_ledger",
            "drop table finance_ledger",
            "create database x",
            "create role x",
        ):
            with loader.cursor() as cursor, pytest.raises(Exception, match="permission denied|must be owner"):
                cursor.execute(statement)
