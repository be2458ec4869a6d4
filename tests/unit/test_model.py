"""Builders of the star tables and the batch that composes them, on small hand-built frames."""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tasks.schema import SOURCE_TABLES, STAR_TABLES
from tasks.transform import builders
from tasks.transform.batch import BatchFrames, CarriedState, collect_batch

T0 = datetime(2024, 2, 1, 9, 30, 15, 123000)
T1 = datetime(2024, 2, 2, 10, 0, 0, 500000)


def source(table: str, rows: list[dict]) -> pl.DataFrame:
    """A frame with the raw-zone schema of ``table``; columns not given are NULL."""
    schema = SOURCE_TABLES[table].schema
    frame = pl.from_arrow(schema.empty_table())
    if not rows:
        return frame
    filled = [{name: row.get(name) for name in schema.names} for row in rows]
    return pl.DataFrame(filled, schema=frame.schema)


def sales_order(order_id: int, last_updated: datetime, **values) -> dict:
    return {
        "sales_order_id": order_id,
        "design_id": 3,
        "staff_id": 7,
        "counterparty_id": 2,
        "units_sold": 1500,
        "unit_price": Decimal("2.49"),
        "currency_id": 1,
        "agreed_delivery_date": "2024-02-10",
        "agreed_payment_date": "2024-02-12",
        "agreed_delivery_location_id": 5,
        "created_at": T0,
        "last_updated": last_updated,
        **values,
    }


def address(address_id: int, last_updated: datetime = T0, **values) -> dict:
    return {
        "address_id": address_id,
        "address_line_1": f"{address_id} Mill Street",
        "address_line_2": None,
        "district": None,
        "city": "Leeds",
        "postal_code": "LS1 1AA",
        "country": "England",
        "phone": "0113 000000",
        "created_at": T0,
        "last_updated": last_updated,
        **values,
    }


def counterparty(counterparty_id: int, legal_address_id: int, last_updated: datetime = T0) -> dict:
    return {
        "counterparty_id": counterparty_id,
        "counterparty_legal_name": f"Company {counterparty_id}",
        "legal_address_id": legal_address_id,
        "created_at": T0,
        "last_updated": last_updated,
    }


def staff(staff_id: int, department_id: int, last_updated: datetime = T0) -> dict:
    return {
        "staff_id": staff_id,
        "first_name": "Ana",
        "last_name": "Glover",
        "department_id": department_id,
        "email_address": "ana.glover@terrifictotes.com",
        "created_at": T0,
        "last_updated": last_updated,
    }


def department(department_id: int, name: str, location: str | None, last_updated: datetime = T0) -> dict:
    return {
        "department_id": department_id,
        "department_name": name,
        "location": location,
        "manager": "Someone",
        "created_at": T0,
        "last_updated": last_updated,
    }


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

    def test_staff_with_unknown_department_is_left_out_naming_the_keys(self):
        tables, _, built = collect_batch(
            BatchFrames(tables={"staff": [source("staff", [staff(1, 99)])]}), CarriedState()
        )
        assert tables["dim_staff"].height == 0
        assert any("staff_id 1: department_id 99 names no department row" in w for w in built.warnings)

    def test_counterparty_joins_legal_address(self):
        dim = builders.build_dim_counterparty(
            source("counterparty", [counterparty(5, 1)]), source("address", [address(1, district="Avon")])
        )
        row = dim.row(0, named=True)
        assert dim.columns == STAR_TABLES["dim_counterparty"].columns
        assert row["counterparty_legal_address_line_1"] == "1 Mill Street"
        assert row["counterparty_legal_district"] == "Avon"
        assert row["counterparty_legal_phone_number"] == "0113 000000"

    def test_counterparty_with_missing_address_is_left_out(self):
        frames = BatchFrames(tables={"counterparty": [source("counterparty", [counterparty(5, 404)])]})
        tables, _, built = collect_batch(frames, CarriedState())
        assert tables["dim_counterparty"].height == 0
        assert any("legal_address_id 404 names no address row" in w for w in built.warnings)

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


def carried(**tables: list[dict]) -> CarriedState:
    """The carried state of a previous batch: the given join-state rows."""
    return CarriedState(join_state={name: source(name, rows) for name, rows in tables.items()})


def frames(**tables: list[dict]) -> BatchFrames:
    """A raw batch of the given new versions, one chunk per table."""
    return BatchFrames(tables={name: [source(name, rows)] for name, rows in tables.items()})


class TestBuildBatch:
    def test_address_change_rebuilds_every_counterparty_using_it(self):
        state = carried(
            address=[address(1), address(2)],
            counterparty=[counterparty(10, 1), counterparty(11, 2), counterparty(12, 1)],
        )

        star, _, _ = collect_batch(frames(address=[address(1, T1, phone="changed")]), state)

        assert star["dim_location"]["location_id"].to_list() == [1]
        rebuilt = star["dim_counterparty"].sort("counterparty_id")
        assert rebuilt["counterparty_id"].to_list() == [10, 12]
        assert set(rebuilt["counterparty_legal_phone_number"]) == {"changed"}
        assert star["fact_sales_order"].height == 0

    def test_department_change_rebuilds_its_staff_only(self):
        state = carried(
            department=[department(1, "Sales", "Leeds"), department(2, "HR", "Leeds")],
            staff=[staff(1, 1), staff(2, 2), staff(3, 1)],
        )
        star, _, _ = collect_batch(frames(department=[department(1, "Sales", "Manchester", T1)]), state)
        dim = star["dim_staff"].sort("staff_id")
        assert dim["staff_id"].to_list() == [1, 3]
        assert set(dim["location"]) == {"Manchester"}

    def test_dim_date_extends_contiguously_from_the_covered_range(self):
        state = CarriedState(date_range=(date(2023, 1, 1), date(2023, 1, 31)))
        star, _, built = collect_batch(frames(sales_order=[sales_order(1, T0)]), state)
        dates = star["dim_date"]["date_id"]
        assert built.date_range == (date(2023, 1, 1), date(2024, 2, 12))
        assert dates.min() == date(2023, 1, 1)
        assert dates.max() == date(2024, 2, 12)
        assert dates.len() == (date(2024, 2, 12) - date(2023, 1, 1)).days + 1

    def test_no_new_dates_means_no_dim_date_rows(self):
        state = CarriedState(date_range=(date(2020, 1, 1), date(2030, 1, 1)))
        star, _, _ = collect_batch(frames(sales_order=[sales_order(1, T0)]), state)
        assert star["dim_date"].height == 0

    def test_unknown_currency_is_a_warning_not_a_failure(self):
        currency = [{"currency_id": 4, "currency_code": "ABC", "created_at": T0, "last_updated": T0}]
        star, _, built = collect_batch(frames(currency=currency), CarriedState())
        assert star["dim_currency"]["currency_name"].to_list() == ["Unknown"]
        assert built.warnings and "ABC" in built.warnings[0]

    def test_every_star_table_is_built_with_its_spec_columns(self):
        star, set_aside, built = collect_batch(BatchFrames(), CarriedState())
        assert list(star) == list(STAR_TABLES)
        for name, frame in star.items():
            assert frame.columns == STAR_TABLES[name].columns, name
            assert frame.height == 0
        assert set_aside == {} and built.warnings == []

    def test_carried_state_keeps_the_latest_row_and_says_which_tables_changed(self):
        state = carried(address=[address(1), address(2)], department=[department(1, "Sales", "Leeds")])
        _, _, built = collect_batch(frames(address=[address(2, T1, city="York")]), state)
        after = built.join_state["address"].sort("address_id")
        assert after["address_id"].to_list() == [1, 2]
        assert after.filter(pl.col("address_id") == 2)["city"].to_list() == ["York"]
        # Unchanged tables are None: the previous batch's files still hold them.
        assert built.join_state["department"] is None
        assert built.join_state["staff"] is None

    def test_big_tables_are_built_chunk_by_chunk(self):
        chunks = [
            source("sales_order", [sales_order(1, T0)]),
            source("sales_order", [sales_order(2, T0), sales_order(1, T1)]),
        ]
        star, _, _ = collect_batch(BatchFrames(tables={"sales_order": iter(chunks)}), CarriedState())
        assert sorted(star["fact_sales_order"]["sales_order_id"].to_list()) == [1, 1, 2]

    def test_an_orphan_stays_in_the_carried_state_and_is_built_when_its_parent_arrives(self):
        _, _, first = collect_batch(frames(staff=[staff(7, 5)]), CarriedState())
        assert first.join_state["staff"]["staff_id"].to_list() == [7]
        assert any("left out of the warehouse until their parent row arrives" in w for w in first.warnings)
        state = CarriedState(join_state={name: rows for name, rows in first.join_state.items() if rows is not None})
        star, _, second = collect_batch(frames(department=[department(5, "Finance", "Leeds", T1)]), state)
        assert star["dim_staff"]["staff_id"].to_list() == [7]
        assert star["dim_staff"]["department_name"].to_list() == ["Finance"]
        assert second.warnings == []

    def test_deletes_become_star_marks_and_leave_the_child_state(self):
        deleted_at = datetime(2024, 2, 3)
        marks = {
            "staff": pl.DataFrame(
                {"staff_id": [2], "_deleted_at": [deleted_at]},
                schema={"staff_id": pl.Int32, "_deleted_at": pl.Datetime("us")},
            ),
            "department": pl.DataFrame(
                {"department_id": [1], "_deleted_at": [deleted_at]},
                schema={"department_id": pl.Int32, "_deleted_at": pl.Datetime("us")},
            ),
        }
        state = carried(department=[department(1, "Sales", "Leeds")], staff=[staff(1, 1), staff(2, 1)])
        star, _, built = collect_batch(
            BatchFrames(
                tables={"department": [source("department", [department(1, "Sales", "York", T1)])]}, deleted=marks
            ),
            state,
        )
        assert built.deleted["dim_staff"]["staff_id"].to_list() == [2]
        assert "dim_department" not in built.deleted  # department has no star table of its own
        assert built.join_state["staff"]["staff_id"].to_list() == [1]
        # The parent stays for lookups; its change rebuilds only the staff not deleted.
        assert built.join_state["department"]["department_id"].to_list() == [1]
        assert star["dim_staff"]["staff_id"].to_list() == [1]

    def test_facts_naming_unknown_dimension_ids_are_built_for_the_load_to_infer(self):
        star, _, built = collect_batch(
            frames(sales_order=[sales_order(1, T0, staff_id=404, currency_id=99)]), CarriedState()
        )
        fact = star["fact_sales_order"]
        assert fact["sales_staff_id"].to_list() == [404]
        assert fact["currency_id"].to_list() == [99]
        assert star["dim_staff"].height == 0 and built.warnings == []

    def test_invalid_rows_are_set_aside_with_warnings(self):
        rows = [sales_order(1, T0), sales_order(2, T0, units_sold=0)]
        star, set_aside, built = collect_batch(
            BatchFrames(tables={"sales_order": [source("sales_order", rows)]}), CarriedState()
        )
        assert star["fact_sales_order"]["sales_order_id"].to_list() == [1]
        assert set_aside["sales_order"]["sales_order_id"].to_list() == [2]
        assert "sales_order: 1 row(s) rejected" in built.warnings[0]


class TestOneSourceDimensions:
    def test_design_latest_version_per_id(self):
        rows = [
            {
                "design_id": 1,
                "design_name": "Wooden",
                "file_location": "/usr",
                "file_name": "a.json",
                "created_at": T0,
                "last_updated": T0,
            },
            {
                "design_id": 1,
                "design_name": "Bronze",
                "file_location": "/usr",
                "file_name": "a.json",
                "created_at": T0,
                "last_updated": T1,
            },
        ]
        dim = builders.build_dim_design(source("design", rows))
        assert dim.columns == STAR_TABLES["dim_design"].columns
        assert dim.rows() == [(1, "Bronze", "/usr", "a.json")]

    def test_payment_type(self):
        rows = [{"payment_type_id": 3, "payment_type_name": "PURCHASE_PAYMENT", "created_at": T0, "last_updated": T0}]
        assert builders.build_dim_payment_type(source("payment_type", rows)).rows() == [(3, "PURCHASE_PAYMENT")]

    def test_transaction_keeps_null_order_ids(self):
        rows = [
            {
                "transaction_id": 1,
                "transaction_type": "SALE",
                "sales_order_id": 5,
                "purchase_order_id": None,
                "created_at": T0,
                "last_updated": T0,
            },
            {
                "transaction_id": 2,
                "transaction_type": "PURCHASE",
                "sales_order_id": None,
                "purchase_order_id": 8,
                "created_at": T0,
                "last_updated": T0,
            },
        ]
        dim = builders.build_dim_transaction(source("transaction", rows)).sort("transaction_id")
        assert dim.rows() == [(1, "SALE", 5, None), (2, "PURCHASE", None, 8)]


class TestRejections:
    def test_null_in_a_not_null_column_and_unparseable_dates_are_rejected_with_reasons(self):
        frame = source(
            "sales_order",
            [
                sales_order(1, T0),
                sales_order(2, T0, units_sold=None),
                sales_order(3, T0, agreed_payment_date="2024-13-45"),
            ],
        )
        valid, rejected = builders.split_invalid_rows(frame, "sales_order")
        assert valid["sales_order_id"].to_list() == [1]
        reasons = dict(rejected.select("sales_order_id", "_reason").iter_rows())
        assert reasons == {2: "units_sold is NULL", 3: "agreed_payment_date 2024-13-45 is not a yyyy-mm-dd date"}
        assert "sales_order: 2 row(s) rejected" in builders.describe_rejections("sales_order", rejected)

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

    def test_quantities_below_one_and_negative_prices_are_rejected(self):
        frame = source(
            "sales_order",
            [
                sales_order(1, T0, units_sold=0),
                sales_order(2, T0, units_sold=-5),
                sales_order(3, T0, unit_price=Decimal("-0.01")),
                sales_order(4, T0, unit_price=Decimal("0.00")),  # free of charge: allowed
            ],
        )
        valid, rejected = builders.split_invalid_rows(frame, "sales_order")
        assert valid["sales_order_id"].to_list() == [4]
        assert dict(rejected.select("sales_order_id", "_reason").iter_rows()) == {
            1: "units_sold 0 is not a positive quantity",
            2: "units_sold -5 is not a positive quantity",
            3: "unit_price -0.01 is negative",
        }

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
