"""A table nobody has written since a run read it is not read again: no delta, no scan of its keys for
deletes. The server counts every write (``pg_stat_user_tables``: inserts, updates, deletes, and a
new file for a TRUNCATE); a table whose counts have not moved is left alone, its watermark where it
was. The counts are trusted only while every other session of the source has been idle for 11 s (a
backend publishes its counts when it goes idle) and at most ``TOTES_UNCHANGED_TABLE_RECHECK_SECONDS``
after the table's last read. Measured here by the server's own scan counters of the source tables.

(On the code before, every run scanned every source table: the delta and the delete check's key
ranges, ~2 s of a no-op run at scale 100.)"""

from __future__ import annotations

import time

from tasks.core.postgres import connect
from tasks.ingest.source import read_source_activity
from tasks.schema import SOURCE_TABLES
from tests.integration.conftest import execute, scalar

SCANS = "select relname::text, seq_scan + coalesce(idx_scan, 0) from pg_stat_user_tables where schemaname = 'public'"


def scans(url: str) -> dict[str, int]:
    """How many times the server has scanned each source table."""
    time.sleep(1)  # a closed session's counts are published as it exits
    with connect(url) as connection, connection.cursor() as cursor:
        cursor.execute(SCANS)
        return {name: int(count) for name, count in cursor.fetchall() if name in SOURCE_TABLES}


def read_tables(pipeline) -> set[str]:
    """The source tables a run read (the test's own expectation of the warehouse, which reads the
    source, is taken before the count starts)."""
    from flows.etl import totesys_etl

    pipeline.checkpoint()
    before = scans(pipeline.source_url)
    totesys_etl()
    after = scans(pipeline.source_url)
    return {name for name in SOURCE_TABLES if after[name] != before[name]}


def test_only_the_tables_written_since_their_last_read_are_read(pipeline, monkeypatch):
    pipeline.seed(scale=0.02)
    time.sleep(1)  # the seeding session's counts, published as it exits
    pipeline.run()
    assert read_tables(pipeline) == set(), "a no-op run read tables nobody wrote"

    execute(
        pipeline.source_url,
        "update design set design_name = 'Renamed', last_updated = (now() at time zone 'UTC') where design_id = 1",
    )
    assert read_tables(pipeline) == {"design"}
    assert scalar(pipeline.warehouse_url, "select design_name from dim_design where design_id = 1") == "Renamed"

    # A delete, and a TRUNCATE (which moves no counter but gives the table a new file).
    execute(pipeline.source_url, "delete from payment where payment_id = (select min(payment_id) from payment)")
    assert read_tables(pipeline) == {"payment"}
    execute(pipeline.source_url, "truncate payment")
    assert read_tables(pipeline) == {"payment"}
    assert scalar(pipeline.warehouse_url, "select count(*) from current_fact_payment") == 0
    pipeline.checkpoint()
    pipeline.assert_warehouse_matches_source()

    # Another session busy on the source: its counts may not be published yet, so everything is read.
    busy = connect(pipeline.source_url)
    try:
        with busy.cursor() as cursor:
            cursor.execute("select 1")  # idle in transaction
            cursor.fetchall()
        assert read_tables(pipeline) == set(SOURCE_TABLES)
        with connect(pipeline.source_url) as reader:
            because = read_source_activity(reader).untrusted_because or ""
        assert because.startswith("another session was busy in the last 11 s: session "), because
        assert "was idle in transaction at" in because, because
    finally:
        busy.close()

    # And every table is read again once its last read is older than the recheck.
    monkeypatch.setenv("TOTES_UNCHANGED_TABLE_RECHECK_SECONDS", "1")
    time.sleep(1.5)
    assert read_tables(pipeline) == set(SOURCE_TABLES)
    monkeypatch.setenv("TOTES_UNCHANGED_TABLE_RECHECK_SECONDS", "0")
    assert read_tables(pipeline) == set(SOURCE_TABLES), "0 reads every table every run"


def keys_checked_at(pipeline, table: str):
    """When the newest batch says the table's keys were last scanned for deletes."""
    from tasks.core.lake import RAW, Lake

    lake = Lake.from_url(pipeline.lake_url)
    return lake.read_raw_manifest(lake.list_batches(RAW)[-1]).tables[table].keys_checked_at


def restored_design(design_id: int) -> str:
    """A design inserted with 2020 stamps, as a restore from a backup would: no delta reads it."""
    return (
        "insert into design (design_id, created_at, design_name, file_location, file_name, last_updated) "
        f"values ({design_id}, '2020-01-01', 'Restored', '/designs', 'old.json', '2020-01-01')"
    )


def test_a_table_written_with_no_delete_counted_is_not_scanned_for_deletes(pipeline):
    """The delete check reads every key of a table (most of an incremental run). When the server
    counted no delete since the table's last read, and as many inserts as the delta found new keys,
    the key set is known without it; when it counted deletes besides, each range's count finds them;
    any other count hashes every key as ever."""
    pipeline.seed(scale=0.02)
    time.sleep(1)
    pipeline.run()
    scanned = keys_checked_at(pipeline, "design")
    assert scanned is not None

    stamp = "(now() at time zone 'UTC')"
    execute(
        pipeline.source_url, f"update design set design_name = 'Renamed', last_updated = {stamp} where design_id = 1"
    )
    execute(
        pipeline.source_url,
        "insert into design (design_id, created_at, design_name, file_location, file_name, last_updated) "
        f"values (900001, {stamp}, 'New', '/designs', 'new.json', {stamp})",
    )
    time.sleep(1)
    pipeline.run()
    assert keys_checked_at(pipeline, "design") == scanned, "no delete counted: the keys were scanned anyway"

    # An update that changes a key counts no delete, but the delta finds a key no insert explains:
    # the keys are scanned, and the old key is found gone.
    execute(
        pipeline.source_url, f"update design set design_id = 900002, last_updated = {stamp} where design_id = 900001"
    )
    time.sleep(1)
    pipeline.run()
    rescanned = keys_checked_at(pipeline, "design")
    assert rescanned is not None
    assert rescanned > scanned
    assert scalar(pipeline.warehouse_url, "select count(*) from current_dim_design where design_id = 900001") == 0

    # A key changed without a new stamp (as ON UPDATE CASCADE does): an update no read explains.
    execute(pipeline.source_url, "update design set design_id = 900004 where design_id = 900002")
    time.sleep(1)
    pipeline.run()
    assert keys_checked_at(pipeline, "design") > rescanned
    rescanned = keys_checked_at(pipeline, "design")
    assert scalar(pipeline.warehouse_url, "select count(*) from current_dim_design where design_id = 900004") == 1

    # A row inserted with an old stamp (restored from a backup): no delta reads it, the scan does.
    execute(pipeline.source_url, restored_design(900003))
    time.sleep(1)
    pipeline.run()
    assert keys_checked_at(pipeline, "design") > rescanned
    assert scalar(pipeline.warehouse_url, "select count(*) from current_dim_design where design_id = 900003") == 1

    # Deletes alone, every other count explained: each range's count of keys finds them, with no
    # hash of every key; the scan that checks the counters themselves stays due when it was.
    rescanned = keys_checked_at(pipeline, "design")
    execute(pipeline.source_url, "delete from design where design_id = 900003")
    time.sleep(1)
    pipeline.run()
    assert keys_checked_at(pipeline, "design") == rescanned, "only deletes counted: every key was hashed"
    assert scalar(pipeline.warehouse_url, "select count(*) from current_dim_design where design_id = 900003") == 0

    # A delete and a row restored with an old stamp in the same range (a count alone would balance):
    # the insert no delta read leaves more than deletes unexplained, so every key is hashed.
    execute(pipeline.source_url, "delete from design where design_id = 900004", restored_design(900005))
    time.sleep(1)
    pipeline.run()
    assert keys_checked_at(pipeline, "design") > rescanned
    assert scalar(pipeline.warehouse_url, "select count(*) from current_dim_design where design_id = 900004") == 0
    assert scalar(pipeline.warehouse_url, "select count(*) from current_dim_design where design_id = 900005") == 1
    pipeline.checkpoint()
    pipeline.assert_warehouse_matches_source()
