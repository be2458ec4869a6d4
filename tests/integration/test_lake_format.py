"""A lake written before the manifests were typed (format 1, by commit ca417f8) still works: loaded
into an empty warehouse, and transformed again from its raw zone alone, it gives exactly the
warehouse that code gave (``tests/fixtures/lake_format_1/expected.json``: counts, delete marks and a
checksum of every star and feed table)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tasks.core.postgres import connect
from tasks.schema import quote_ident

pytestmark = pytest.mark.integration

FIXTURE = Path(__file__).parents[1] / "fixtures" / "lake_format_1"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())


def warehouse_figures(url: str) -> dict[str, dict[str, object]]:
    """Rows, delete marks and checksum of every table the fixture recorded, as it recorded them."""
    figures = {}
    with connect(url) as connection, connection.cursor() as cursor:
        for name, value in EXPECTED["checksum_session_settings"].items():
            cursor.execute(f"set {name} = '{value}'")
        for table, columns in EXPECTED["checksum_columns"].items():
            quoted = ", ".join(quote_ident(c) for c in columns)
            cursor.execute(EXPECTED["checksum_sql"].format(columns=quoted, table=quote_ident(table)))
            (checksum,) = cursor.fetchone()
            cursor.execute(f"select count(*) from {quote_ident(table)}")
            (rows,) = cursor.fetchone()
            deleted = None
            if "_deleted_at" in columns:
                cursor.execute(f"select count(*) from {quote_ident(table)} where _deleted_at is not null")
                (deleted,) = cursor.fetchone()
            figures[table] = {"rows": rows, "deleted": deleted, "checksum": checksum}
    return figures


@pytest.fixture
def old_lake(tmp_path, databases, prefect_api, monkeypatch) -> Path:
    lake = tmp_path / "lake"
    shutil.copytree(FIXTURE / "lake", lake)
    monkeypatch.setenv("TOTES_LAKE_URL", str(lake))
    monkeypatch.setenv("TOTES_SOURCE_URL", databases.source_url)
    monkeypatch.setenv("TOTES_WAREHOUSE_URL", databases.warehouse_url)
    return lake


def load_everything() -> None:
    from flows.etl import rebuild_warehouse
    from tasks.feeds.load import load_feed

    rebuild_warehouse()
    load_feed("exchange_rates")


def test_an_old_lake_loads_into_the_same_warehouse(old_lake, databases):
    load_everything()
    assert warehouse_figures(databases.warehouse_url) == EXPECTED["tables"] | EXPECTED["feed_table"]


def test_an_old_raw_zone_transforms_into_the_same_warehouse(old_lake, databases):
    """The star zone rebuilt by today's transform from format-1 raw manifests equals the old one."""
    shutil.rmtree(old_lake / "star")
    load_everything()
    assert warehouse_figures(databases.warehouse_url) == EXPECTED["tables"] | EXPECTED["feed_table"]
    written = json.loads(next((old_lake / "star" / "_batches").glob("*.json")).read_text())
    assert written["format"] == 2
