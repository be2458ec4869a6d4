"""The pure checks that keep the horizon true on any source: the time zone of its stamps, and one
horizon for the writers of two servers (a subscriber and its publisher)."""

from __future__ import annotations

from datetime import datetime

import pytest

from tasks.core.manifests import Horizon
from tasks.ingest.drift import local_time_stamps
from tasks.ingest.watermark import complete_before, earliest
from tasks.schema import SOURCE_TABLES


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


def test_the_earliest_horizon_holds_for_the_writers_of_both_servers():
    publisher = Horizon(
        clock_at=datetime(2024, 5, 1, 6, 5, 49),
        oldest_open_transaction_at=datetime(2024, 5, 1, 6, 5, 40),
        has_hidden_sessions=False,
    )
    subscriber = Horizon(
        clock_at=datetime(2024, 5, 1, 6, 5, 48),
        oldest_open_transaction_at=None,
        has_hidden_sessions=True,
        oldest_prepared_transaction_at=datetime(2024, 5, 1, 6, 0),
    )

    both = earliest(publisher, subscriber)

    assert both == Horizon(
        clock_at=datetime(2024, 5, 1, 6, 5, 48),
        oldest_open_transaction_at=datetime(2024, 5, 1, 6, 5, 40),
        has_hidden_sessions=True,
        oldest_prepared_transaction_at=datetime(2024, 5, 1, 6, 0),
    )
    bound = complete_before(both, fallback_lag_seconds=60)
    assert bound <= min(complete_before(h, fallback_lag_seconds=60) for h in (publisher, subscriber))
