"""The source's columns checked against the model (tasks/ingest/drift.py): schema drift, the freeze
policy, and audit columns stamped in a time zone other than UTC. No I/O."""

from __future__ import annotations

import pytest

from tasks.ingest.drift import SOURCE_TYPES_FOR, local_time_stamps, schema_drift
from tasks.schema import SOURCE_TABLES


def model_columns() -> dict[str, dict[str, str]]:
    """The source's columns as information_schema shows a ToteSys made by `totes seed`."""

    def data_type(field):
        return next(sorted(types)[0] for test, types in SOURCE_TYPES_FOR if test(field.type))

    return {name: {f.name: data_type(f) for f in table.schema} for name, table in SOURCE_TABLES.items()}


def test_schema_drift_errors_name_missing_renamed_and_retyped_columns_and_warn_on_new_ones():
    assert schema_drift(model_columns()) == ([], [])
    found = model_columns()
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


def test_a_new_column_warns_unless_its_table_is_frozen():
    found = model_columns()
    found["design"]["colour"] = "text"
    errors, warnings = schema_drift(found)
    assert errors == [] and len(warnings) == 1 and "design has new column(s) colour" in warnings[0]
    errors, warnings = schema_drift(found, frozen=frozenset({"design"}))
    assert warnings == [] and len(errors) == 1 and "policy is freeze" in errors[0]
    assert schema_drift(found, frozen=frozenset({"staff"}))[0] == []


def source_columns(audit_type: str) -> dict[str, dict[str, str]]:
    return {
        name: {column: audit_type if column in ("created_at", "last_updated") else "text" for column in table.columns}
        for name, table in SOURCE_TABLES.items()
    }


@pytest.mark.parametrize(
    ("audit_type", "is_utc", "refused"),
    [
        ("timestamp without time zone", False, True),
        ("timestamp without time zone", True, False),
        ("timestamp with time zone", False, False),
        ("timestamp with time zone", True, False),
    ],
    ids=["timestamp, local", "timestamp, declared utc", "timestamptz, local", "timestamptz, declared utc"],
)
def test_only_timestamp_audit_columns_in_a_zone_other_than_utc_are_refused(audit_type, is_utc, refused):
    problem = local_time_stamps(
        source_columns(audit_type), time_zone="America/New_York", is_utc=is_utc, database="totesys"
    )

    assert (problem is not None) == refused


def test_the_refusal_names_the_zone_the_columns_and_both_fixes():
    found = source_columns("timestamp with time zone")
    found["payment"]["last_updated"] = "timestamp without time zone"

    problem = local_time_stamps(
        found, time_zone="Europe/London", is_utc=False, database="totesys", where="source's primary database"
    )

    assert problem is not None
    assert problem.startswith(
        "the source's primary database's default TimeZone is Europe/London and its audit columns "
        "(payment.last_updated) are timestamp without time zone"
    )
    assert "ALTER DATABASE \"totesys\" SET timezone TO 'UTC'" in problem
    assert "TOTES_SOURCE_STAMPS_ARE_UTC=true" in problem
    assert "\n" not in problem


def test_many_columns_are_named_three_then_counted():
    problem = local_time_stamps(
        source_columns("timestamp without time zone"), time_zone="Asia/Tokyo", is_utc=False, database="d"
    )

    assert problem is not None
    assert f"and {2 * len(SOURCE_TABLES) - 3} more)" in problem
