"""Parsing one feed file (tasks/feeds/parsing.py): the built-in CSV feed, and JSON lines and Parquet
feeds declared in a feeds file of the test's own; a bad file is refused naming the line and column."""

from __future__ import annotations

import io
import json
import re
from datetime import date
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.feeds.declarations import Feed, load_feeds
from tasks.feeds.parsing import FeedFileError, parse_feed_file
from tasks.sandbox.sample_feeds import exchange_rates_csv

HEADER = b"rate_date,currency_code,rate_to_gbp\n"

RATES_TO_GBP = """target_table = "fact_exchange_rate"
natural_key = ["rate_date", "currency_id"]
columns = { rate_date = "date", currency_code = "string", rate_to_gbp = "decimal(18,8)" }
lookups.currency_id = { column = "currency_code", table = "dim_currency", match = "currency_code" }
"""
FEEDS_TOML = f"""
[feeds.rates_jsonl]
directory = "jsonl"
pattern = "*.jsonl"
format = "jsonl"
{RATES_TO_GBP}
[feeds.rates_parquet]
directory = "parquet"
format = "parquet"
{RATES_TO_GBP}"""


@pytest.fixture(scope="module")
def rates():
    return load_feeds()["exchange_rates"]


@pytest.fixture
def declared(tmp_path: Path) -> dict[str, Feed]:
    """The feeds of FEEDS_TOML, read from a feeds file as ``TOTES_FEEDS_FILE`` names one."""
    feeds_file = tmp_path / "feeds.toml"
    feeds_file.write_text(FEEDS_TOML)
    return load_feeds(feeds_file)


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


def test_quoted_fields_keep_commas_quotes_and_newlines(declared):
    record = {"rate_date": "2024-01-01", "currency_code": 'E"U\nR,', "rate_to_gbp": 1.10000001}
    table = parse_feed_file(declared["rates_jsonl"], "f.jsonl", json.dumps(record).encode(), version="v")
    # A JSON number is read as written: never through a float.
    assert table.column("rate_to_gbp").to_pylist() == [Decimal("1.10000001")]
    assert table.column("currency_code").to_pylist() == ['E"U\nR,']


GOOD_LINE = json.dumps({"rate_date": "2024-01-01", "currency_code": "EUR", "rate_to_gbp": "1.1"})


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "f.jsonl line 2: not valid JSON"),
        ("[1, 2]", "f.jsonl line 2: each line must be a JSON object"),
        ('{"rate_date": "2024-01-02", "currency_code": "EUR"}', "line 2: missing column(s) rate_to_gbp"),
        (
            '{"rate_date": "2024-01-02", "currency_code": "EUR", "rate_to_gbp": true}',
            "line 2, column rate_to_gbp: 'true' is not a valid decimal",
        ),
    ],
    ids=["not json", "not an object", "missing column", "not a decimal"],
)
def test_json_lines_errors_name_the_line(declared, line, message):
    data = f"{GOOD_LINE}\n{line}\n".encode()
    with pytest.raises(FeedFileError, match=re.escape(message)):
        parse_feed_file(declared["rates_jsonl"], "f.jsonl", data, version="v")


def parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


GOOD_RATES = pa.table({"rate_date": [date(2024, 1, 1)], "currency_code": ["EUR"], "rate_to_gbp": [Decimal("1.25")]})


def test_a_parquet_file_parses(declared):
    assert parse_feed_file(declared["rates_parquet"], "f.parquet", parquet(GOOD_RATES), version="v").num_rows == 1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"PAR1 this is not parquet", "not a readable Parquet file"),
        (
            parquet(GOOD_RATES.set_column(2, "rate_to_gbp", pa.array([0.1234567891]))),
            "f.parquet line 1, column rate_to_gbp: '0.1234567891' is not a valid",
        ),
        (parquet(GOOD_RATES.drop_columns(["currency_code"])), "missing column"),
    ],
    ids=["not parquet", "too many decimals", "missing column"],
)
def test_parquet_files_are_checked_like_text(declared, data, message):
    with pytest.raises(FeedFileError, match=message):
        parse_feed_file(declared["rates_parquet"], "f.parquet", data, version="v")
