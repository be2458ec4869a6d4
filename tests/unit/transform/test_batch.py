"""The batch that composes the star tables (tasks/transform/batch.py), through ``collect_batch``, on
small hand-built frames and carried state."""

from __future__ import annotations

from datetime import date, datetime

import polars as pl
import pytest

from tasks.schema import STAR_TABLES
from tasks.transform.batch import BatchFrames, CarriedState, collect_batch
from tests.unit.transform.conftest import T0, T1, address, counterparty, department, sales_order, source, staff


def carried(**tables: list[dict]) -> CarriedState:
    """The carried state of a previous batch: the given join-state rows."""
    return CarriedState(join_state={name: source(name, rows) for name, rows in tables.items()})


def frames(**tables: list[dict]) -> BatchFrames:
    """A raw batch of the given new versions, one chunk per table."""
    return BatchFrames(tables={name: [source(name, rows)] for name, rows in tables.items()})


@pytest.mark.parametrize(
    ("table", "row", "dimension", "warning"),
    [
        ("staff", staff(1, 99), "dim_staff", "staff_id 1: department_id 99 names no department row"),
        ("counterparty", counterparty(5, 404), "dim_counterparty", "legal_address_id 404 names no address row"),
    ],
    ids=["staff with an unknown department", "counterparty with a missing address"],
)
def test_a_dimension_row_without_its_parent_is_left_out_naming_the_keys(table, row, dimension, warning):
    tables, _, built = collect_batch(frames(**{table: [row]}), CarriedState())
    assert tables[dimension].height == 0
    assert any(warning in w for w in built.warnings)


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
