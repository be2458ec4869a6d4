"""Asset keys (tasks/core/asset_keys.py): one key per place, the same from every process, never a
credential, and none of the characters Prefect refuses. No I/O."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.core.asset_keys import STAR_SOURCES, AssetKeys, database_key, folder_key
from tasks.schema import SOURCE_TABLES, STAR_TABLES


@pytest.mark.parametrize(
    ("url", "key"),
    [
        (
            "postgresql://etl:s3cret@db.example.com:6432/totesys?sslmode=require",
            "postgresql://db.example.com:6432/totesys",
        ),
        ("postgresql://postgres:@/src?host=/tmp/pg", "postgresql://localhost/src"),  # a Unix socket
        ("postgresql://u@warehouse/dw", "postgresql://warehouse/dw"),
    ],
)
def test_a_database_key_names_the_host_port_and_database_only(url, key):
    assert database_key(url) == key


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("s3://bucket/lake/", "s3://bucket/lake"),
        ("file:///srv/lake", "file:///srv/lake"),
        ("/srv/my lake", "file:///srv/my_20lake"),  # a space, written %20: Prefect refuses % in a key
    ],
)
def test_a_folder_key_is_a_url_without_the_characters_prefect_refuses(url, key):
    assert folder_key(url) == key


def test_a_relative_lake_folder_gets_its_absolute_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert folder_key("lake") == Path(tmp_path / "lake").resolve().as_uri()


def test_the_lineage_runs_source_raw_star_warehouse_and_feeds_have_their_own():
    keys = AssetKeys.of(
        source_url="postgresql://u:p@src:5432/totesys",
        lake_url="s3://bucket/lake",
        warehouse_url="postgresql://u:p@wh/dw",
        files_url="s3://bucket/files",
        sftp_url="sftp://user:pw@sftp.example.com:2222/drop",
    )
    assert keys.source_table("sales_order") == "postgresql://src:5432/totesys/sales_order"
    assert keys.raw("sales_order") == "s3://bucket/lake/raw/sales_order"
    assert keys.star("fact_sales_order") == "s3://bucket/lake/star/fact_sales_order"
    assert keys.warehouse_table("fact_sales_order") == "postgresql://wh/dw/fact_sales_order"
    assert keys.feed_directory("/rates/") == "sftp://sftp.example.com:2222/drop/rates"
    assert keys.feed_files("rates") == "s3://bucket/files/raw/rates"
    assert "pw" not in keys.feed_directory("rates") and "p@" not in keys.source_table("x")


def test_a_flow_that_does_not_read_the_source_has_no_source_keys():
    keys = AssetKeys.of(source_url=None, lake_url="s3://b/l", warehouse_url="postgresql://wh/dw", files_url="s3://b/f")
    with pytest.raises(ValueError, match="no source URL"):
        keys.source_table("sales_order")


def test_every_star_table_names_the_source_tables_it_is_built_from():
    assert set(STAR_SOURCES) == set(STAR_TABLES)
    assert all(set(sources) <= set(SOURCE_TABLES) for sources in STAR_SOURCES.values())
