"""Reading the source's delta (tasks/ingest/delta.py): the query, the versions already known, rows
conformed to the model or set aside with their reason, and keys read under several contents. No I/O."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest

from tasks import schema
from tasks.ingest import delta
from tasks.schema import SOURCE_TABLES
from tests.unit.ingest.conftest import NOW


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
    ids=["repeats", "none repeated", "no keys", "one key"],
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
