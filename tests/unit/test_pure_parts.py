"""Watermarks, batch conformance, settings, fault classification and SQL handling: no I/O."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest
from pydantic import ValidationError

from tasks import schema
from tasks.core import manifests
from tasks.core.lake import batch_sequence, new_batch_id
from tasks.core.retries import is_transient
from tasks.core.sql import split_sql
from tasks.ingest import deletes, delta, watermark
from tasks.schema import SOURCE_TABLES
from tasks.settings import TotesSettings, redact_url, scrub, secret_to_url

NOW = datetime(2024, 2, 23, 12, 0, 0)


class TestNextWatermark:
    def horizon(self, oldest=None, hidden=False):
        return manifests.Horizon(clock_at=NOW, oldest_open_transaction_at=oldest, has_hidden_sessions=hidden)

    def test_no_open_transactions_uses_the_clock_less_the_margin(self):
        assert watermark.next_watermark(
            datetime(2024, 1, 1), self.horizon(), safety_seconds=1, fallback_lag_seconds=900
        ) == NOW - timedelta(seconds=1)

    def test_an_open_transaction_holds_the_watermark_at_its_start(self):
        started = NOW - timedelta(minutes=7)
        assert (
            watermark.next_watermark(
                datetime(2024, 1, 1), self.horizon(started), safety_seconds=0, fallback_lag_seconds=900
            )
            == started
        )

    def test_a_prepared_transaction_holds_the_watermark_a_fixed_lag_before_its_preparation(self):
        prepared = NOW - timedelta(minutes=2)
        horizon = manifests.Horizon(
            clock_at=NOW, oldest_open_transaction_at=None, oldest_prepared_transaction_at=prepared
        )
        assert watermark.next_watermark(
            datetime(2024, 1, 1), horizon, safety_seconds=0, fallback_lag_seconds=600
        ) == prepared - timedelta(seconds=600)
        assert manifests.Horizon.from_json(horizon.to_json()) == horizon

    def test_hidden_sessions_fall_back_to_a_fixed_lag(self):
        assert watermark.next_watermark(
            datetime(2024, 1, 1), self.horizon(hidden=True), safety_seconds=0, fallback_lag_seconds=600
        ) == NOW - timedelta(minutes=10)

    def test_never_moves_backwards(self):
        later = NOW + timedelta(hours=1)
        assert watermark.next_watermark(later, self.horizon(), safety_seconds=0, fallback_lag_seconds=0) == later


def currency_batch(rows):
    return pa.RecordBatch.from_pylist(rows, schema=SOURCE_TABLES["currency"].schema)


class TestBatches:
    def test_known_versions_are_dropped_and_new_ones_kept(self):
        batch = currency_batch(
            [
                {"currency_id": 1, "currency_code": "GBP", "created_at": NOW, "last_updated": NOW},
                {"currency_id": 2, "currency_code": "USD", "created_at": NOW, "last_updated": NOW},
            ]
        )
        kept = delta.drop_known_versions(batch, SOURCE_TABLES["currency"], {(1, NOW, "")})
        assert kept.column("currency_id").to_pylist() == [2]
        assert kept.schema == SOURCE_TABLES["currency"].schema

    def test_a_second_write_under_a_known_version_is_kept_and_the_same_content_dropped(self):
        gbp = {"currency_id": 1, "currency_code": "GBP", "created_at": NOW, "last_updated": NOW}
        (_, _, digest) = next(iter(delta.versions_since(currency_batch([gbp]), SOURCE_TABLES["currency"], NOW)))
        known = {(1, NOW, digest)}
        same = delta.drop_known_versions(currency_batch([gbp]), SOURCE_TABLES["currency"], known)
        assert same.num_rows == 0
        rewritten = delta.drop_known_versions(
            currency_batch([gbp | {"currency_code": "GBX"}]), SOURCE_TABLES["currency"], known
        )
        assert rewritten.column("currency_code").to_pylist() == ["GBX"]

    def test_versions_since_collects_the_overlap(self):
        earlier = NOW - timedelta(seconds=5)
        batch = currency_batch(
            [
                {"currency_id": 1, "currency_code": "GBP", "created_at": NOW, "last_updated": earlier},
                {"currency_id": 2, "currency_code": "USD", "created_at": NOW, "last_updated": NOW},
            ]
        )
        assert {(k, ts) for k, ts, _ in delta.versions_since(batch, SOURCE_TABLES["currency"], NOW)} == {(2, NOW)}

    def test_watermark_state_round_trips_through_json(self):
        state = manifests.RawTableEntry(watermark=NOW, overlap_keys=frozenset({(3, NOW, "a1b2"), (4, NOW, "")}))
        assert manifests.RawTableEntry.from_json(state.to_json()) == state
        assert manifests.RawTableEntry().watermark == manifests.BEGINNING_OF_TIME

    def test_conform_casts_numeric_text_to_exact_decimal(self):
        raw = pa.RecordBatch.from_pydict(
            {
                "payment_type_id": pa.array([1], pa.int32()),
                "payment_type_name": ["SALES_RECEIPT"],
                "created_at": pa.array([NOW], pa.timestamp("us")),
                "last_updated": pa.array([NOW], pa.timestamp("us")),
            }
        )
        conformed, unfit = delta.conform_batch(raw, SOURCE_TABLES["payment_type"])
        assert conformed.schema == SOURCE_TABLES["payment_type"].schema and unfit is None
        money = pa.array(["1234.50", None]).cast(pa.decimal128(10, 2))
        assert money.to_pylist() == [Decimal("1234.50"), None]

    def test_conform_sets_aside_money_that_numeric_10_2_cannot_hold_exactly(self):
        prices = ["2.50", "2.500", "123456789.50", "1.234", "NaN", None, "-0.5"]
        raw = pa.RecordBatch.from_pydict(
            {
                "payment_id": pa.array(range(len(prices)), pa.int32()),
                "payment_amount": prices,
            }
        )
        table = schema.Table(
            "payment",
            pa.schema([("payment_id", pa.int32()), ("payment_amount", pa.decimal128(10, 2))]),
            ("payment_id",),
        )
        conformed, unfit = delta.conform_batch(raw, table)
        assert conformed.column("payment_amount").to_pylist() == [
            Decimal("2.50"),
            Decimal("2.50"),
            None,
            Decimal("-0.50"),
        ]
        assert unfit.column("payment_id").to_pylist() == [2, 3, 4]
        assert (
            unfit.column("_reason").to_pylist()[0] == "payment_amount 123456789.50 does not fit numeric(10,2) exactly"
        )

    def test_conform_sets_aside_a_null_key_and_an_integer_beyond_integer(self):
        table = SOURCE_TABLES["design"]
        raw = pa.RecordBatch.from_pydict(
            {
                "design_id": pa.array([1, None, 3_000_000_000, 4], pa.int64()),
                "design_name": ["a", "b", "c", "d"],
                "file_location": ["/x"] * 4,
                "file_name": ["x.json"] * 4,
                "created_at": pa.array([NOW] * 4, pa.timestamp("us")),
                "last_updated": pa.array([NOW] * 4, pa.timestamp("us")),
            }
        )
        conformed, unfit = delta.conform_batch(raw, table)
        assert conformed.column("design_id").to_pylist() == [1, 4]
        assert unfit.column("design_id").to_pylist() == [None, None]
        assert unfit.column("_reason").to_pylist() == [
            "design_id is NULL: " + delta.NULL_KEY_FIX,
            "design_id 3000000000 does not fit integer",
        ]

    def test_conform_reports_a_missing_column_as_drift(self):
        raw = pa.RecordBatch.from_pydict({"currency_id": pa.array([1], pa.int32())})
        with pytest.raises(ValueError, match="currency has no column 'currency_code'"):
            delta.conform_batch(raw, SOURCE_TABLES["currency"])

    def test_delta_query_quotes_identifiers_and_casts_opaque_types(self):
        sql = delta.delta_query(SOURCE_TABLES["payment"], NOW)
        assert 'from public."payment"' in sql
        assert 'source."payment_amount"::text as "payment_amount"' in sql
        assert "last_updated >= '2024-02-23 12:00:00.000000+00'" in sql
        assert 'source."transaction_type"::text' in delta.delta_query(SOURCE_TABLES["transaction"], NOW)
        with pytest.raises(TypeError):
            watermark.timestamp_literal("2024-01-01'; drop table x; --")

    def test_batch_ids_sort_by_sequence(self):
        batch_id = new_batch_id(12, NOW)
        assert batch_id == "00000012-20240223T120000Z"
        assert batch_sequence(batch_id) == 12


class TestSettings:
    def test_reads_the_three_variables(self, monkeypatch):
        monkeypatch.setenv("TOTES_SOURCE_URL", "postgresql://etl:s3cret@db:5432/totesys")
        monkeypatch.setenv("TOTES_WAREHOUSE_URL", "postgresql://loader:hunter2@dw/warehouse")
        monkeypatch.setenv("TOTES_LAKE_URL", "s3://lake-bucket/prefix")
        settings = TotesSettings()
        assert settings.require_source_url().endswith("/totesys")
        assert "s3cret" not in repr(settings) and "s3cret" not in str(settings.describe())
        assert settings.describe()["source"] == "postgresql://etl:***@db:5432/totesys"
        assert sorted(settings.secrets()) == ["hunter2", "s3cret"]

    @pytest.mark.parametrize(
        ("variable", "value", "message"),
        [
            ("TOTES_SOURCE_URL", "mysql://x@y/db", "postgresql:// URI"),
            ("TOTES_WAREHOUSE_URL", "postgresql://x@y", "name a database"),
            ("TOTES_LAKE_URL", "gs://bucket", "TOTES_LAKE_URL"),
        ],
    )
    def test_rejects_bad_values_loudly(self, monkeypatch, variable, value, message):
        monkeypatch.setenv(variable, value)
        with pytest.raises(ValidationError, match=message):
            TotesSettings()

    def test_missing_url_says_which_variable(self, monkeypatch):
        monkeypatch.delenv("TOTES_SOURCE_URL", raising=False)
        with pytest.raises(ValueError, match="TOTES_SOURCE_URL is not set"):
            TotesSettings(_env_file=None).require_source_url()

    def test_scrub_removes_passwords_from_messages(self, monkeypatch):
        monkeypatch.setenv("TOTES_SOURCE_URL", "postgresql://etl:pa55word@db/totesys")
        text = "connection to postgresql://etl:pa55word@db/totesys failed; password pa55word rejected"
        assert "pa55word" not in scrub(text, TotesSettings())
        assert redact_url("postgresql://u:p@h/d") == "postgresql://u:***@h/d"


class FakeAdbcError(Exception):
    """Stands in for an ADBC error carrying a SQLSTATE (the driver's exceptions need a live handle)."""

    def __init__(self, message: str, sqlstate: str):
        super().__init__(message)
        self.sqlstate = sqlstate


class TestFaults:
    @pytest.mark.parametrize(
        "error",
        [
            ConnectionRefusedError("connection refused"),
            ConnectionResetError("connection reset by peer"),
            FakeAdbcError("terminating connection due to administrator command", "57P01"),
            FakeAdbcError("could not connect to server", "08006"),
            FakeAdbcError("could not serialize access", "40001"),
            OSError("An error occurred (SlowDown) when calling PutObject: Please reduce your request rate"),
            OSError("An error occurred (503) Service Unavailable"),
        ],
    )
    def test_transient(self, error):
        assert is_transient(error)

    @pytest.mark.parametrize(
        "error",
        [
            FakeAdbcError('password authentication failed for user "etl"', "28P01"),
            FakeAdbcError('database "nope" does not exist', "3D000"),
            FakeAdbcError('relation "sales_order" does not exist', "42P01"),
            ValueError("sales_order.agreed_delivery_date: 1 value(s) are not yyyy-mm-dd dates"),
            PermissionError("Access Denied"),
            OSError('connection to server failed: FATAL:  password authentication failed for user "x"'),
        ],
    )
    def test_permanent(self, error):
        assert not is_transient(error)


def test_split_sql_keeps_dollar_quoted_bodies_whole():
    script = "-- a comment\ncreate table a (x int);\n\ncreate function f() returns int as $$\nbegin\n  return 1;\nend\n$$ language plpgsql;\nselect 1;\n"
    statements = split_sql(script)
    assert len(statements) == 3
    assert "return 1;" in statements[1]


def test_run_report_shows_counts_freshness_and_warnings():
    from tasks.core.reports import RunSummary

    summary = RunSummary(
        ingested={"sales_order": 5},
        transformed={"fact_sales_order": 5},
        loaded={"fact_sales_order": 4},
        batches_loaded=["00000002-20240223T120000Z"],
        warnings=["currency code 'XYZ' is not ISO 4217: loaded as 'Unknown'"],
        source_horizon=NOW,
        finished_at=NOW + timedelta(seconds=42),
    )
    markdown = summary.as_markdown()
    assert "| sales_order | 5 |" in markdown
    assert "| fact_sales_order | 5 | 4 |" in markdown
    assert "42 s before this run ended" in markdown
    assert "- currency code 'XYZ'" in markdown
    assert summary.freshness_seconds == 42
    assert "42 s behind" in summary.as_text()


def test_rds_style_secret_becomes_a_url():
    url = secret_to_url(
        json.dumps(
            {"username": "etl", "password": "p@ss:word/1", "host": "db.example.com", "port": 5433, "dbname": "totesys"}
        ),
        variable="TOTES_SOURCE_URL",
    )
    assert url.get_secret_value() == "postgresql://etl:p%40ss%3Aword%2F1@db.example.com:5433/totesys"
    with pytest.raises(ValueError, match="lacks"):
        secret_to_url('{"username": "etl"}', variable="TOTES_SOURCE_URL")


def _model_columns() -> dict[str, dict[str, str]]:
    """The source's columns as information_schema shows a ToteSys made by `totes seed`."""
    from tasks.ingest.drift import SOURCE_TYPES_FOR
    from tasks.schema import SOURCE_TABLES

    def data_type(field):
        return next(sorted(types)[0] for test, types in SOURCE_TYPES_FOR if test(field.type))

    return {name: {f.name: data_type(f) for f in table.schema} for name, table in SOURCE_TABLES.items()}


def test_schema_drift_errors_name_missing_renamed_and_retyped_columns_and_warn_on_new_ones():
    from tasks.ingest.drift import schema_drift

    assert schema_drift(_model_columns()) == ([], [])
    found = _model_columns()
    del found["currency"]
    found["design"]["name"] = found["design"].pop("design_name")
    del found["staff"]["email_address"]
    found["sales_order"]["units_sold"] = "text"
    found["address"]["what3words"] = "text"
    errors, warnings = schema_drift(found)
    assert errors == [
        "source table currency does not exist",
        "source table design lacks column(s) design_name; new column(s) there: name (renamed?)",
        "source table staff lacks column(s) email_address (dropped or renamed?)",
        "source column sales_order.units_sold is text, expected one of bigint, integer, smallint",
    ]
    assert warnings == [
        "schema drift: source table address has new column(s) what3words, not carried into the warehouse"
    ]


class TestDeletesAndInferredMembers:
    def test_key_ranges_differ_only_where_the_key_sets_differ(self):
        import polars as pl

        known = pl.Series([1, 2, 3, 150, 151, 420], dtype=pl.Int32)
        same = deletes.key_buckets(known, 100)
        assert deletes.differing_buckets(same, deletes.key_buckets(known, 100)) == []
        source = deletes.key_buckets(pl.Series([1, 2, 3, 150, 152, 999], dtype=pl.Int32), 100)
        # 151 gone and 152 new (range 1), 420 gone (range 4, now empty), 999 new (range 9).
        assert deletes.differing_buckets(source, same) == [1, 4, 9]

    def test_summaries_add_and_subtract_like_the_key_sets(self):
        import polars as pl

        def summary(keys):
            return deletes.key_buckets(pl.Series(keys, dtype=pl.Int32), 100).sort("bucket")

        known, new, gone = [1, 2, 150, 420], [3, 151, 999], [420, 2]
        grown = deletes.combine_buckets(summary(known), summary(new), sign=1)
        assert grown.sort("bucket").equals(summary(known + new))
        shrunk = deletes.combine_buckets(grown, summary(gone), sign=-1)
        assert shrunk.sort("bucket").equals(summary([1, 3, 150, 151, 999]))  # range 4 is gone, not zero

    def test_the_hash_tells_apart_sets_with_equal_count_and_sum(self):
        import polars as pl

        a = deletes.key_buckets(pl.Series([1, 5, 6], dtype=pl.Int32), 100)
        b = deletes.key_buckets(pl.Series([2, 3, 7], dtype=pl.Int32), 100)
        assert a["key_sum"].to_list() == b["key_sum"].to_list()
        assert deletes.differing_buckets(a, b) == [0]

    def test_inferred_members_fill_not_null_columns_with_unknown_and_quote_identifiers(self):
        from tasks.load.statements import (
            inferred_members_statement,
            mark_deleted_statement,
        )

        sql = inferred_members_statement("dim_location")
        assert 'insert into "dim_location" ("location_id", "address_line_1", "address_line_2"' in sql
        assert "select referenced.id, 'Unknown', null, null, 'Unknown'" in sql
        assert (
            'order by fact."sales_order_id", fact._batch_id desc, fact.last_updated_date desc'
            in mark_deleted_statement("fact_sales_order")
        )
        assert 'where target."design_id" = deleted."design_id"' in mark_deleted_statement("dim_design")


def test_rows_without_last_updated_are_set_aside_once_with_their_reason():
    table = SOURCE_TABLES["currency"]
    rows = pa.table(
        {
            "currency_id": pa.array([7, 8], pa.int32()),
            "currency_code": ["JPY", "CHF"],
            "created_at": [NOW, NOW],
            "last_updated": pa.array([None, None], pa.timestamp("us")),
        }
    )
    first, keys = delta.set_aside_unstamped(rows, table, frozenset())
    assert keys == {7, 8}
    assert first.column("currency_id").to_pylist() == [7, 8]
    assert first.schema.names[-1] == "_reason" and "last_updated is NULL" in first.column("_reason")[0].as_py()
    again, keys = delta.set_aside_unstamped(rows, table, keys)
    assert again is None and keys == {7, 8}
    later, keys = delta.set_aside_unstamped(rows.slice(1), table, frozenset({7, 8}))
    assert later is None and keys == {8}  # 7 was stamped: the delta reads it now


@pytest.mark.parametrize(
    ("keys", "repeated"),
    [
        ([5, 1, 5, 2, 5, 1], [1, 5]),
        ([3, 1, 2], []),
        ([], []),
        ([7], []),
    ],
)
def test_repeated_keys_are_the_keys_read_more_than_once(keys, repeated):
    assert delta.repeated_keys(np.array(keys, dtype=np.int32)).tolist() == repeated


def currency_rows(*rows: tuple[int, str, datetime]) -> pa.Table:
    table = SOURCE_TABLES["currency"]
    return pa.Table.from_pylist(
        [{"currency_id": k, "currency_code": c, "created_at": t, "last_updated": t} for k, c, t in rows],
        schema=table.schema,
    )


def test_a_key_under_one_content_arrives_once_and_one_under_several_is_set_aside_whole_once():
    table = SOURCE_TABLES["currency"]
    first, later = datetime(2024, 1, 1), datetime(2024, 1, 2)
    rows = currency_rows((1, "GBP", first), (2, "USD", first), (1, "GBP", first), (2, "EUR", later), (3, "JPY", first))
    decided = delta.decide_conflicts(rows, None, table, reported=frozenset())
    assert sorted(decided.kept.column("currency_id").to_pylist()) == [1, 3]
    assert decided.conflicting == {2}
    assert decided.set_aside.column("currency_code").to_pylist() == ["USD", "EUR"]
    assert decided.set_aside.column("_reason").to_pylist()[0].startswith("2 different rows share currency_id 2 (")

    again = delta.decide_conflicts(rows, None, table, reported=frozenset({2}))
    assert again.conflicting == {2} and again.set_aside is None, "named once, not on every run"

    repaired = delta.decide_conflicts(currency_rows((2, "EUR", later)), None, table, reported=frozenset({2}))
    assert repaired.conflicting == frozenset() and repaired.kept.column("currency_code").to_pylist() == ["EUR"]


def test_a_settled_key_whose_one_row_cannot_be_read_is_set_aside_for_that():
    table = SOURCE_TABLES["payment_type"]
    unfit = pa.table(
        {
            "payment_type_id": pa.array([4], pa.int32()),
            "payment_type_name": ["X"],
            "created_at": pa.array([NOW], pa.timestamp("us")),
            "last_updated": pa.array([NOW], pa.timestamp("us")),
            "_reason": ["something does not fit"],
        }
    )
    decided = delta.decide_conflicts(table.schema.empty_table(), unfit, table, reported=frozenset({4}))
    assert decided.conflicting == frozenset() and decided.kept.num_rows == 0
    assert decided.set_aside.column("_reason").to_pylist() == ["something does not fit"]


class TestContentIndex:
    """The content index of the deep pass and of the children read again (tasks/ingest/content.py)."""

    table = SOURCE_TABLES["transaction"]

    def part(self, keys, hashes, orders=None):
        from tasks.ingest.content import index_schema

        schema = index_schema(self.table)
        orders = orders if orders is not None else [None] * len(keys)
        return pa.table(
            {
                "transaction_id": keys,
                "sales_order_id": orders,
                "purchase_order_id": [None] * len(keys),
                "_content_hash": hashes,
            },
            schema=schema,
        )

    def test_a_later_part_overrides_and_a_tombstone_drops_the_key(self):
        import polars as pl

        from tasks.ingest.content import fold_index, tombstones

        folded = fold_index(
            [self.part([1, 2, 3], [10, 20, 30]), self.part([2], [21]), tombstones(pl.Series([3]), self.table)],
            self.table,
        )
        assert folded["transaction_id"].to_list() == [1, 2] and folded["_content_hash"].to_list() == [10, 21]

    def test_children_of_a_gone_parent_are_those_last_seen_referencing_it(self):
        import polars as pl

        from tasks.ingest.content import children_of, fold_index

        index = fold_index([self.part([1, 2, 3], [1, 2, 3], orders=[7, 8, 7]), self.part([3], [4])], self.table)
        assert children_of(index, "transaction_id", {"sales_order_id": pl.Series([7])}) == [1]
        assert children_of(index, "transaction_id", {}) == []

    def test_changed_rows_are_those_with_another_hash_or_none_known(self):
        import polars as pl

        from tasks.ingest.content import changed_rows, fold_index

        index = fold_index([self.part([1, 2], [10, 20])], self.table)
        read = pl.DataFrame({"transaction_id": [2, 1, 5], "_content_hash": [20, 11, 50]})
        assert changed_rows(read, index, "transaction_id").to_list() == [False, True, True]

    def test_the_range_sums_are_the_servers_split_of_each_64_bit_hash(self):
        import polars as pl

        from tasks.ingest.content import content_buckets

        hashes = [-1, 2**62 + 7, -(2**63), 123]
        index = pl.DataFrame({"k": [1, 2, 3, 12], "_content_hash": hashes})
        buckets = content_buckets(index, "k", 10).sort("bucket")
        as_server = [(h & 2147483647, (h >> 31) & 2147483647) for h in hashes]  # PostgreSQL's & and >>
        assert buckets.rows() == [
            (0, 3, sum(lo for lo, _ in as_server[:3]), sum(hi for _, hi in as_server[:3])),
            (1, 1, as_server[3][0], as_server[3][1]),
        ]

    def test_folding_keeps_the_last_entry_of_each_key_whatever_the_first_part_s_order(self):
        from tasks.ingest.content import fold_index

        unsorted_with_repeats = self.part([3, 1, 3, 2], [30, 10, 31, 20])
        folded = fold_index([unsorted_with_repeats, self.part([1], [11])], self.table)
        assert folded["transaction_id"].to_list() == [1, 2, 3]
        assert folded["_content_hash"].to_list() == [11, 20, 31]
