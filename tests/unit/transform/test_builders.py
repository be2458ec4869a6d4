"""Builders of the star tables (tasks/transform/builders.py), on small hand-built frames."""

from __future__ import annotations

from datetime import date, time
from decimal import Decimal

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tasks.schema import STAR_TABLES
from tasks.transform import builders
from tests.unit.transform.conftest import T0, T1, address, counterparty, department, sales_order, source, staff


def star(table: str, rows: list[tuple]) -> pl.DataFrame:
    """A frame with the columns and types of star table ``table``, one tuple a row."""
    schema = pl.DataFrame(STAR_TABLES[table].schema.empty_table()).schema
    return pl.DataFrame(rows, schema=schema, orient="row")


class TestFacts:
    def test_sales_order_one_row_per_version_with_split_timestamps(self):
        frame = source("sales_order", [sales_order(1, T0), sales_order(1, T1, units_sold=1600), sales_order(1, T0)])

        fact = builders.build_fact_sales_order(frame)

        assert fact.columns == STAR_TABLES["fact_sales_order"].columns
        assert fact.height == 2  # the re-read of version T0 collapses
        first = fact.row(0, named=True)
        assert first["created_date"] == date(2024, 2, 1)
        assert first["created_time"] == time(9, 30, 15, 123000)
        assert first["last_updated_time"] == time(9, 30, 15, 123000)
        assert first["sales_staff_id"] == 7
        assert first["unit_price"] == Decimal("2.49")
        assert first["agreed_delivery_date"] == date(2024, 2, 10)
        assert fact["units_sold"].to_list() == [1500, 1600]

    def test_money_stays_exact_decimal(self):
        fact = builders.build_fact_sales_order(source("sales_order", [sales_order(1, T0, unit_price=Decimal("3.10"))]))
        assert fact.schema["unit_price"] == pl.Decimal(10, 2)
        assert fact["unit_price"].to_list() == [Decimal("3.10")]

    @pytest.mark.parametrize("bad", ["2024-13-45", "yesterday", "2024/02/10", ""])
    def test_unparseable_text_date_names_table_column_and_key(self, bad):
        frame = source("sales_order", [sales_order(1, T0), sales_order(42, T0, agreed_delivery_date=bad)])
        with pytest.raises(builders.TransformError, match=r"sales_order\.agreed_delivery_date.*42"):
            builders.build_fact_sales_order(frame)

    def test_payment_drops_account_numbers_and_parses_payment_date(self):
        frame = source(
            "payment",
            [
                {
                    "payment_id": 9,
                    "transaction_id": 4,
                    "counterparty_id": 2,
                    "payment_amount": Decimal("1000.01"),
                    "currency_id": 2,
                    "payment_type_id": 1,
                    "paid": True,
                    "payment_date": "2024-02-20",
                    "company_ac_number": 12345678,
                    "counterparty_ac_number": 87654321,
                    "created_at": T0,
                    "last_updated": T1,
                }
            ],
        )
        fact = builders.build_fact_payment(frame)
        assert fact.columns == STAR_TABLES["fact_payment"].columns
        assert "company_ac_number" not in fact.columns
        assert fact.row(0, named=True)["payment_date"] == date(2024, 2, 20)

    def test_purchase_order_empty_input_gives_empty_fact(self):
        fact = builders.build_fact_purchase_order(source("purchase_order", []))
        assert fact.height == 0
        assert fact.columns == STAR_TABLES["fact_purchase_order"].columns


class TestDimensions:
    def test_location_takes_latest_version_and_keeps_nulls(self):
        frame = source("address", [address(1, T0, phone="old"), address(1, T1, phone="new"), address(2)])
        dim = builders.build_dim_location(frame)
        assert dim.columns == STAR_TABLES["dim_location"].columns
        assert dim.sort("location_id")["phone"].to_list() == ["new", "0113 000000"]
        assert dim["district"].null_count() == 2

    def test_staff_joins_latest_department(self):
        dim = builders.build_dim_staff(
            source("staff", [staff(1, 10)]),
            source("department", [department(10, "Sales", "Leeds"), department(10, "Sales", None, T1)]),
        )
        expected = pl.DataFrame(
            {
                "staff_id": [1],
                "first_name": ["Ana"],
                "last_name": ["Glover"],
                "department_name": ["Sales"],
                "location": [None],
                "email_address": ["ana.glover@terrifictotes.com"],
            },
            schema={
                "staff_id": pl.Int32,
                "first_name": pl.String,
                "last_name": pl.String,
                "department_name": pl.String,
                "location": pl.String,
                "email_address": pl.String,
            },
        )
        assert_frame_equal(dim, expected)

    def test_counterparty_joins_legal_address(self):
        dim = builders.build_dim_counterparty(
            source("counterparty", [counterparty(5, 1)]), source("address", [address(1, district="Avon")])
        )
        row = dim.row(0, named=True)
        assert dim.columns == STAR_TABLES["dim_counterparty"].columns
        assert row["counterparty_legal_address_line_1"] == "1 Mill Street"
        assert row["counterparty_legal_district"] == "Avon"
        assert row["counterparty_legal_phone_number"] == "0113 000000"

    def test_currency_names_come_from_iso_4217(self):
        frame = source(
            "currency",
            [
                {"currency_id": 1, "currency_code": "GBP", "created_at": T0, "last_updated": T0},
                {"currency_id": 2, "currency_code": "USD", "created_at": T0, "last_updated": T0},
                {"currency_id": 3, "currency_code": "EUR", "created_at": T0, "last_updated": T0},
                {"currency_id": 4, "currency_code": "XYZ", "created_at": T0, "last_updated": T0},
            ],
        )
        dim = builders.build_dim_currency(frame)
        assert dim.sort("currency_id")["currency_name"].to_list() == ["Pound Sterling", "US Dollar", "Euro", "Unknown"]
        assert builders.unknown_currency_codes(frame) == ["XYZ"]

    def test_dim_date_iso_weekday_and_english_names(self):
        dim = builders.build_dim_date(date(2024, 2, 25), date(2024, 3, 4))
        assert dim.columns == STAR_TABLES["dim_date"].columns
        sunday = dim.filter(pl.col("date_id") == date(2024, 2, 25)).row(0, named=True)
        assert (sunday["day_of_week"], sunday["day_name"], sunday["month_name"], sunday["quarter"]) == (
            7,
            "Sunday",
            "February",
            1,
        )
        monday = dim.filter(pl.col("date_id") == date(2024, 2, 26)).row(0, named=True)
        assert (monday["day_of_week"], monday["day_name"]) == (1, "Monday")
        assert dim.height == 9  # leap day included

    def test_dim_date_rejects_reversed_range(self):
        with pytest.raises(builders.TransformError, match="empty"):
            builders.build_dim_date(date(2024, 3, 1), date(2024, 2, 1))


DESIGN = {"file_location": "/usr", "file_name": "a.json", "created_at": T0}
TRANSACTION = {"created_at": T0, "last_updated": T0}


@pytest.mark.parametrize(
    ("build", "table", "rows", "dimension", "expected"),
    [
        (
            builders.build_dim_design,
            "design",
            [
                {"design_id": 1, "design_name": "Wooden", "last_updated": T0, **DESIGN},
                {"design_id": 1, "design_name": "Bronze", "last_updated": T1, **DESIGN},
            ],
            "dim_design",
            [(1, "Bronze", "/usr", "a.json")],
        ),
        (
            builders.build_dim_payment_type,
            "payment_type",
            [{"payment_type_id": 3, "payment_type_name": "PURCHASE_PAYMENT", "created_at": T0, "last_updated": T0}],
            "dim_payment_type",
            [(3, "PURCHASE_PAYMENT")],
        ),
        (
            builders.build_dim_transaction,
            "transaction",
            [
                {"transaction_id": 1, "transaction_type": "SALE", "sales_order_id": 5, **TRANSACTION},
                {"transaction_id": 2, "transaction_type": "PURCHASE", "purchase_order_id": 8, **TRANSACTION},
            ],
            "dim_transaction",
            [(1, "SALE", 5, None), (2, "PURCHASE", None, 8)],
        ),
    ],
    ids=["design: latest version per id", "payment type", "transaction: keeps null order ids"],
)
def test_one_source_dimension(build, table, rows, dimension, expected):
    dim = build(source(table, rows))
    assert_frame_equal(dim.sort(dim.columns[0]), star(dimension, expected))


class TestRejections:
    @pytest.mark.parametrize(
        ("rows", "valid", "reasons"),
        [
            (
                [
                    sales_order(1, T0),
                    sales_order(2, T0, units_sold=None),
                    sales_order(3, T0, agreed_payment_date="2024-13-45"),
                ],
                [1],
                [(2, "units_sold is NULL"), (3, "agreed_payment_date 2024-13-45 is not a yyyy-mm-dd date")],
            ),
            (
                [
                    sales_order(1, T0, units_sold=0),
                    sales_order(2, T0, units_sold=-5),
                    sales_order(3, T0, unit_price=Decimal("-0.01")),
                    sales_order(4, T0, unit_price=Decimal("0.00")),  # free of charge: allowed
                ],
                [4],
                [
                    (1, "units_sold 0 is not a positive quantity"),
                    (2, "units_sold -5 is not a positive quantity"),
                    (3, "unit_price -0.01 is negative"),
                ],
            ),
        ],
        ids=["null in a not-null column and unparseable date", "quantity below one and negative price"],
    )
    def test_invalid_rows_are_rejected_with_reasons(self, rows, valid, reasons):
        valid_rows, rejected = builders.split_invalid_rows(source("sales_order", rows), "sales_order")
        assert valid_rows["sales_order_id"].to_list() == valid
        assert_frame_equal(
            rejected.select("sales_order_id", "_reason").sort("sales_order_id"),
            pl.DataFrame(reasons, schema={"sales_order_id": pl.Int32, "_reason": pl.String}, orient="row"),
        )
        assert f"sales_order: {len(reasons)} row(s) rejected" in builders.describe_rejections("sales_order", rejected)

    def test_rows_sharing_a_key_and_last_updated_are_rejected_unless_identical(self):
        frame = source(
            "sales_order",
            [
                sales_order(1, T0),
                sales_order(1, T0),  # repeated exactly: kept once
                sales_order(2, T0, units_sold=10),
                sales_order(2, T0, units_sold=20),  # which is true?
                sales_order(3, T0),
                sales_order(3, T1),  # two versions: both fine
            ],
        )
        valid, rejected = builders.split_invalid_rows(frame, "sales_order")
        assert sorted(valid["sales_order_id"].to_list()) == [1, 3, 3]
        assert rejected["sales_order_id"].to_list() == [2, 2]
        assert rejected["_reason"][0].startswith("2 different rows share sales_order_id 2 and last_updated")

    def test_nullable_columns_are_not_rejected(self):
        valid, rejected = builders.split_invalid_rows(source("address", [address(1)]), "address")
        assert (valid.height, rejected.height) == (1, 0)

    def test_orphans_are_split_from_rows_with_a_parent(self):
        staff_rows = source("staff", [staff(1, 10), staff(2, 99)])
        departments = source("department", [department(10, "Sales", "Leeds")])
        kept, orphans = builders.split_orphans(
            staff_rows, departments, foreign_key="department_id", parent_key="department_id", table="department"
        )
        assert kept["staff_id"].to_list() == [1]
        assert orphans.row(0, named=True)["_reason"] == "department_id 99 names no department row"


def _payments(*rows: tuple[date | None, date | None, date | None]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=["created_date", "last_updated_date", "payment_date"], orient="row")


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        ({}, None),
        ({"fact_payment": _payments()}, None),
        (
            {"fact_payment": _payments((date(2024, 1, 5), date(2024, 1, 9), date(2023, 12, 30)))},
            (date(2023, 12, 30), date(2024, 1, 9)),
        ),
        # A null date (no payment date yet) bounds nothing; a column of nulls alone neither.
        (
            {"fact_payment": _payments((date(2024, 1, 5), date(2024, 1, 5), None), (None, None, None))},
            (date(2024, 1, 5), date(2024, 1, 5)),
        ),
        (
            {
                "fact_payment": _payments((date(2024, 1, 5), date(2024, 1, 6), date(2024, 3, 1))),
                "fact_sales_order": pl.DataFrame(
                    {
                        "created_date": [date(2022, 11, 3)],
                        "last_updated_date": [date(2022, 11, 4)],
                        "agreed_payment_date": [date(2025, 1, 1)],
                        "agreed_delivery_date": [None],
                    },
                    schema_overrides={"agreed_delivery_date": pl.Date},
                ),
            },
            (date(2022, 11, 3), date(2025, 1, 1)),
        ),
    ],
)
def test_the_referenced_date_range_spans_every_date_column_of_every_fact(facts, expected):
    assert builders.referenced_date_range(facts) == expected
