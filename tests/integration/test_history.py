"""History mode (``TOTES_DIMENSION_HISTORY``): ``dim_<name>_history`` holds every version of each
dimension row with its validity; switched on for a warehouse already loaded it is built from the
lake, so it covers the past; changes through a joined table (a department renamed: its staff) are
versions; deleted rows end their version; a rebuild from the lake reproduces it exactly."""

from __future__ import annotations

from collections import defaultdict

from tasks.core.lake import STAR, Lake
from tasks.core.postgres import connect
from tasks.load.history import batch_time
from tasks.load.statements import HISTORY_DIMENSIONS
from tasks.schema import STAR_TABLES, quote_ident
from tests.integration.conftest import execute, rows_as_text


def history(url: str, table: str) -> list[tuple]:
    key = quote_ident(STAR_TABLES[table].key[0])
    with connect(url) as connection, connection.cursor() as cursor:
        cursor.execute(f"select * from {quote_ident(table + '_history')} order by {key}, valid_from, _batch_id")
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def check_versions(url: str, table: str) -> dict[int, list[dict]]:
    """Every key's versions follow one another without gap or overlap, and its current version is
    the dimension's row (a deleted key has none); returns the versions per key."""
    spec = STAR_TABLES[table]
    key = spec.key[0]
    per_key: dict[int, list[dict]] = defaultdict(list)
    for version in history(url, table):
        per_key[version[key]].append(version)
    for versions in per_key.values():
        for earlier, later in zip(versions, versions[1:], strict=False):
            assert earlier["valid_to"] == later["valid_from"] and not earlier["is_current"], versions
        assert sum(v["is_current"] for v in versions) <= 1
        assert versions[-1]["is_current"] == (versions[-1]["valid_to"] is None), versions
    columns = ", ".join(quote_ident(c) for c in spec.columns)
    current = rows_as_text(url, f"select {columns} from {quote_ident(table + '_history')} where is_current")
    live = rows_as_text(url, f"select {columns} from {quote_ident(table)} where _deleted_at is null and not _inferred")
    assert current == live, table
    return per_key


def test_history_built_from_the_lake_kept_by_each_load_and_reproduced_by_a_rebuild(pipeline, monkeypatch):
    from flows.etl import rebuild_warehouse

    pipeline.seed(scale=0.02)
    pipeline.run()
    pipeline.churn(orders=20)  # an address change, an order cancelled (deletes), ...
    execute(  # ... and a department renamed: a change that reaches dim_staff through the join
        pipeline.source_url,
        "update department set department_name = 'Renamed', last_updated = (now() at time zone 'UTC') "
        "where department_id = (select min(department_id) from staff)",
    )
    pipeline.run()

    # Switched on for a warehouse already loaded: built from the two batches in the lake.
    monkeypatch.setenv("TOTES_DIMENSION_HISTORY", "true")
    pipeline.run()
    batches = Lake.from_url(pipeline.lake_url).list_batches(STAR)
    staff = check_versions(pipeline.warehouse_url, "dim_staff")
    assert min(v["valid_from"] for versions in staff.values() for v in versions) == batch_time(batches[0])
    moved = [versions for versions in staff.values() if len(versions) > 1]
    assert moved, "the department change reached no staff row's history"
    assert all(v[0]["department_name"] != "Renamed" == v[1]["department_name"] for v in moved)
    assert {versions[1]["valid_from"] for versions in moved} == {batch_time(batches[1])}

    # Kept by each load, deletes included, then off for a while (its batch is built in when back on).
    for _ in range(2):
        pipeline.churn(orders=20)
        pipeline.run()
    transactions = check_versions(pipeline.warehouse_url, "dim_transaction")
    ended = [v[-1] for v in transactions.values() if not v[-1]["is_current"]]
    assert ended, "a cancelled order's transaction ended no version"
    monkeypatch.setenv("TOTES_DIMENSION_HISTORY", "false")
    pipeline.churn(orders=20)
    pipeline.run()
    monkeypatch.setenv("TOTES_DIMENSION_HISTORY", "true")
    pipeline.run()
    for table in HISTORY_DIMENSIONS:
        check_versions(pipeline.warehouse_url, table)
    kept = {table: history(pipeline.warehouse_url, table) for table in HISTORY_DIMENSIONS}

    # A rebuild from the lake alone gives the same history, row for row.
    rebuild_warehouse()
    assert {table: history(pipeline.warehouse_url, table) for table in HISTORY_DIMENSIONS} == kept
    pipeline.assert_warehouse_matches_source()
