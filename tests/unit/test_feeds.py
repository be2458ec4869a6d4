"""The pure parts of the file feeds: the declaration, parsing one file, and the convergence plans."""

from __future__ import annotations

import io
import json
import re
from datetime import date
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.core.manifests import FetchedFile
from tasks.feeds.declarations import FeedConfigError, load_feeds
from tasks.feeds.parsing import FeedFileError, parse_feed_file
from tasks.feeds.plans import (
    MTIME_TRUST_SECONDS,
    RemoteFile,
    files_to_download,
    plan_load,
    plan_staging,
    settled_files,
    too_recent_to_trust,
)
from tasks.sandbox.sample_feeds import exchange_rates_csv

HEADER = b"rate_date,currency_code,rate_to_gbp\n"


@pytest.fixture(scope="module")
def rates():
    return load_feeds()["exchange_rates"]


def parse(feed, data: bytes, name: str = "f.csv") -> pa.Table:
    return parse_feed_file(feed, name, data, version="v1")


def test_the_built_in_feed_parses_a_rates_file_exactly(rates):
    data = exchange_rates_csv([date(2024, 2, 1)], {"GBP": Decimal(1), "USD": Decimal("1.26340001")})
    table = parse(rates, data)
    assert table.schema == rates.file_schema
    assert table.column("rate_to_gbp").to_pylist() == [Decimal("1.00000000"), Decimal("1.26340001")]
    assert table.column("_source_line").to_pylist() == [2, 3]
    assert set(table.column("_source_version").to_pylist()) == {"v1"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "f.csv: the file is empty"),
        (b"  \n", "f.csv: the file is empty"),
        (HEADER, "f.csv: the file has no rows"),
        (b"rate_date,currency_code\n2024-01-01,EUR\n", "f.csv line 1: missing column(s) rate_to_gbp"),
        (b"rate_date,currency_code,rate_to_gbp,extra\n", "unexpected column(s) extra"),
        (b"rate_date,rate_date,currency_code,rate_to_gbp\n", "repeated column(s) rate_date"),
        (HEADER + b"2024-13-45,EUR,1\n", "f.csv line 2, column rate_date: '2024-13-45' is not a valid date"),
        (HEADER + b"01/02/2024,EUR,1\n", "'01/02/2024' is not a valid date (expected YYYY-MM-DD)"),
        (HEADER + b"2024-01-01,EUR,abc\n", "line 2, column rate_to_gbp: 'abc' is not a valid decimal(18,8)"),
        (HEADER + b"2024-01-01,EUR,NaN\n", "'NaN' is not a valid decimal(18,8) (not a finite number)"),
        (HEADER + b"2024-01-01,EUR,1.123456789\n", "more than 8 decimal places would be lost"),
        (HEADER + b"2024-01-01,EUR,12345678901\n", "more than 10 digits before the point"),
        (HEADER + b"2024-01-01,,1\n", "line 2, column currency_code: a value is required"),
        (HEADER + b"2024-01-01,EUR\n", "f.csv line 2: 2 field(s) where the header has 3"),
        (HEADER + b"2024-01-01,EUR,1,2\n", "f.csv line 2: 4 field(s) where the header has 3"),
        (
            HEADER + b"2024-01-01,EUR,1\n2024-01-01,EUR,2\n",
            "f.csv line 3: duplicate key (rate_date=2024-01-01, currency_code=EUR), first on line 2",
        ),
        (HEADER + b"2024-01-01,\xe9UR,1\n", "f.csv line 2: byte 0xe9 is not valid utf-8 (bad encoding)"),
        (HEADER + b'2024-01-01,"EUR,1\n', "f.csv line 2: malformed CSV"),
        (HEADER + b"2024-01-01,EUR,1\x00\n", "f.csv line 2: a NUL byte (0x00), which no text column can hold"),
    ],
)
def test_a_bad_csv_file_is_refused_naming_the_line_column_and_problem(rates, data, message):
    with pytest.raises(FeedFileError) as refused:
        parse(rates, data)
    assert message in str(refused.value)


def test_csv_tolerates_a_bom_crlf_blank_lines_and_padding(rates):
    data = b"\xef\xbb\xbfrate_date , currency_code,rate_to_gbp\r\n2024-01-01, EUR ,1.5\r\n\r\n"
    table = parse(rates, data)
    assert table.column("currency_code").to_pylist() == ["EUR"]
    assert table.column("rate_to_gbp").to_pylist() == [Decimal("1.50000000")]


def test_quoted_fields_keep_commas_quotes_and_newlines(tmp_path):
    feeds_file = tmp_path / "feeds.toml"
    feeds_file.write_text(FEEDS_TOML)
    feed = load_feeds(feeds_file)["rates_jsonl"]
    record = {"rate_date": "2024-01-01", "currency_code": 'E"U\nR,', "rate_to_gbp": 1.10000001}
    table = parse_feed_file(feed, "f.jsonl", json.dumps(record).encode(), version="v")
    # A JSON number is read as written: never through a float.
    assert table.column("rate_to_gbp").to_pylist() == [Decimal("1.10000001")]
    assert table.column("currency_code").to_pylist() == ['E"U\nR,']


FEEDS_TOML = """
[feeds.rates_jsonl]
directory = "jsonl"
pattern = "*.jsonl"
format = "jsonl"
target_table = "fact_exchange_rate"
natural_key = ["rate_date", "currency_id"]
columns = { rate_date = "date", currency_code = "string", rate_to_gbp = "decimal(18,8)" }
lookups.currency_id = { column = "currency_code", table = "dim_currency", match = "currency_code" }

[feeds.rates_parquet]
directory = "parquet"
format = "parquet"
target_table = "fact_exchange_rate"
natural_key = ["rate_date", "currency_id"]
columns = { rate_date = "date", currency_code = "string", rate_to_gbp = "decimal(18,8)" }
lookups.currency_id = { column = "currency_code", table = "dim_currency", match = "currency_code" }
"""


def test_json_lines_errors_name_the_line(tmp_path):
    feeds_file = tmp_path / "feeds.toml"
    feeds_file.write_text(FEEDS_TOML)
    feed = load_feeds(feeds_file)["rates_jsonl"]
    good = json.dumps({"rate_date": "2024-01-01", "currency_code": "EUR", "rate_to_gbp": "1.1"})
    for data, message in [
        (f"{good}\n{{not json\n".encode(), "f.jsonl line 2: not valid JSON"),
        (f"{good}\n[1, 2]\n".encode(), "f.jsonl line 2: each line must be a JSON object"),
        (
            f'{good}\n{{"rate_date": "2024-01-02", "currency_code": "EUR"}}\n'.encode(),
            "line 2: missing column(s) rate_to_gbp",
        ),
        (
            f'{good}\n{{"rate_date": "2024-01-02", "currency_code": "EUR", "rate_to_gbp": true}}\n'.encode(),
            "line 2, column rate_to_gbp: 'true' is not a valid decimal",
        ),
    ]:
        with pytest.raises(FeedFileError, match=re.escape(message)):
            parse_feed_file(feed, "f.jsonl", data, version="v")


def test_parquet_files_are_checked_like_text(tmp_path):
    feeds_file = tmp_path / "feeds.toml"
    feeds_file.write_text(FEEDS_TOML)
    feed = load_feeds(feeds_file)["rates_parquet"]

    def parquet(table: pa.Table) -> bytes:
        sink = io.BytesIO()
        pq.write_table(table, sink)
        return sink.getvalue()

    good = pa.table({"rate_date": [date(2024, 1, 1)], "currency_code": ["EUR"], "rate_to_gbp": [Decimal("1.25")]})
    assert parse_feed_file(feed, "f.parquet", parquet(good), version="v").num_rows == 1
    with pytest.raises(FeedFileError, match="not a readable Parquet file"):
        parse_feed_file(feed, "f.parquet", b"PAR1 this is not parquet", version="v")
    with pytest.raises(FeedFileError, match="f.parquet line 1, column rate_to_gbp: '0.1234567891' is not a valid"):
        parse_feed_file(
            feed, "f.parquet", parquet(good.set_column(2, "rate_to_gbp", pa.array([0.1234567891]))), version="v"
        )
    with pytest.raises(FeedFileError, match="missing column"):
        parse_feed_file(feed, "f.parquet", parquet(good.drop_columns(["currency_code"])), version="v")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('target_table = "fact_sales_order"', "is not a feed table"),
        ('target_table = "fact_exchange_rate"\nnatural_key = ["nope"]', "natural_key must be columns"),
        (
            'columns = { rate_date = "date", currency_code = "string", rate_to_gbp = "float" }',
            "unknown column type 'float'",
        ),
        (
            'columns = { rate_date = "string", currency_code = "string", rate_to_gbp = "decimal(18,8)" }',
            "'rate_date' is string but fact_exchange_rate.rate_date is date32",
        ),
        (
            'columns = { "Rate Date" = "date", currency_code = "string", rate_to_gbp = "decimal(18,8)" }',
            "is not a plain lower-case identifier",
        ),
        (
            'lookups.currency_id = { column = "currency_code", table = "pg_authid", match = "rolname" }',
            "is not a warehouse dimension",
        ),
        (
            'lookups.currency_id = { column = "currency_code", table = "dim_currency", match = "code; drop" }',
            "dim_currency has no column 'code; drop'",
        ),
        ("lookups = {}", "no file column or lookup provides fact_exchange_rate.currency_id"),
        ('directory = "../etc"', "directory must not contain '..'"),
        ("surprise = 1", "Extra inputs are not permitted"),
    ],
)
def test_a_bad_feed_declaration_is_refused_with_the_setting_named(tmp_path, body, message):
    base = {
        "directory": '"x"',
        "format": '"csv"',
        "target_table": '"fact_exchange_rate"',
        "natural_key": '["rate_date", "currency_id"]',
        "columns": '{ rate_date = "date", currency_code = "string", rate_to_gbp = "decimal(18,8)" }',
        "lookups.currency_id": '{ column = "currency_code", table = "dim_currency", match = "currency_code" }',
    }
    overridden = {line.split("=", 1)[0].strip() for line in body.splitlines()}
    lines = [
        f"{k} = {v}"
        for k, v in base.items()
        if k not in overridden and not (k.startswith("lookups") and "lookups" in overridden)
    ]
    (tmp_path / "feeds.toml").write_text("[feeds.f]\n" + "\n".join(lines) + "\n" + body + "\n")
    with pytest.raises(FeedConfigError, match=re.escape(message)):
        load_feeds(tmp_path / "feeds.toml")


def test_only_files_with_a_new_size_or_mtime_are_downloaded():
    seen = {"a.csv": FetchedFile(10, 100, "h", "v1"), "b.csv": FetchedFile(10, 100, "h", "v1")}
    listing = [RemoteFile("a.csv", 10, 100), RemoteFile("b.csv", 10, 101), RemoteFile("c.csv", 1, 1)]
    assert [r.name for r in files_to_download(listing, seen)] == ["b.csv", "c.csv"]


def test_a_file_seen_too_soon_after_a_change_is_downloaded_again_unless_it_is_being_written():
    seen = {
        "fresh.csv": FetchedFile(10, 100, "h", "v1", recheck=True),
        "settled.csv": FetchedFile(10, 100, "h", "v1"),
        "writing.csv": FetchedFile(10, 100, "h", "v1", recheck=True),
    }
    listing = [RemoteFile(name, 10, 100) for name in seen]
    assert [r.name for r in files_to_download(listing, seen, settling={"writing.csv"})] == ["fresh.csv"]
    assert too_recent_to_trust(100, now=100 + MTIME_TRUST_SECONDS - 1)
    assert not too_recent_to_trust(100, now=100 + MTIME_TRUST_SECONDS)


def test_files_still_being_written_wait_and_keep_their_last_seen_version():
    seen = {"old.csv": FetchedFile(10, 100, "h", "v1")}
    listing = [RemoteFile("old.csv", 12, 995), RemoteFile("new.csv", 5, 990), RemoteFile("done.csv", 5, 900)]
    ready, waiting = settled_files(listing, seen, now=1000, min_age_seconds=30)
    assert [r.name for r in waiting] == ["old.csv", "new.csv"]
    assert ready == [RemoteFile("old.csv", 10, 100), RemoteFile("done.csv", 5, 900)]
    assert files_to_download(ready, seen) == [RemoteFile("done.csv", 5, 900)]


def test_staging_plan_keeps_good_versions_until_a_good_one_replaces_them():
    plan = plan_staging(
        latest={"same": "v1", "new": "v2", "bad": "v3", "fresh": "v1"},
        staged={"same": ["v1"], "new": ["v1"], "bad": ["v2"], "gone": ["v1"]},
        quarantined={("bad", "v3")},
        keep_removed=False,
    )
    assert plan.parse == [("fresh", "v1"), ("new", "v2")]
    assert plan.held_back == [("bad", "v3")]
    # "new"'s old version goes only after v2 is staged (by the stage task), not in the plan.
    assert plan.drop == [("gone", "v1")]
    assert plan_staging({}, {"gone": ["v1"]}, set(), keep_removed=True).drop == []


def test_staging_plan_repairs_two_versions_left_by_a_crash():
    plan = plan_staging({"f": "v2"}, {"f": ["v1", "v2"]}, set(), keep_removed=False)
    assert plan.parse == [] and plan.drop == [("f", "v1")]
    held = plan_staging({"f": "v3"}, {"f": ["v1", "v2"]}, {("f", "v3")}, keep_removed=False)
    assert held.drop == [("f", "v1")] and held.held_back == [("f", "v3")]


def test_load_plan_converges_the_loaded_set_to_the_staged_set():
    plan = plan_load(staged={"a": "v1", "b": "v2", "c": "v1"}, loaded={"a": "v1", "b": "v1", "d": "v1"})
    assert plan.remove == ["d"] and plan.load == {"b": "v2", "c": "v1"}
    assert plan_load({"a": "v1"}, {"a": "v1"}).empty
