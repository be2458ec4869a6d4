"""The watermark and the horizon it is bound by (tasks/ingest/watermark.py): no I/O."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from tasks.core.manifests import FileSet, Horizon, RawTableEntry
from tasks.ingest.watermark import (
    CountedWrites,
    complete_before,
    earliest,
    kept_unread,
    key_scan_for,
    next_watermark,
    timestamp_literal,
    unchanged_tables,
    writes_since,
    writes_since_keys_checked,
)
from tests.unit.ingest.conftest import NOW

EARLIER = datetime(2024, 1, 1)


def horizon_with(oldest: datetime | None = None, hidden: bool = False, prepared: datetime | None = None) -> Horizon:
    return Horizon(
        clock_at=NOW,
        oldest_open_transaction_at=oldest,
        has_hidden_sessions=hidden,
        oldest_prepared_transaction_at=prepared,
    )


@pytest.mark.parametrize(
    ("previous", "horizon", "safety_seconds", "fallback_lag_seconds", "expected"),
    [
        (EARLIER, horizon_with(), 1, 900, NOW - timedelta(seconds=1)),
        (EARLIER, horizon_with(oldest=NOW - timedelta(minutes=7)), 0, 900, NOW - timedelta(minutes=7)),
        (
            EARLIER,
            horizon_with(prepared=NOW - timedelta(minutes=2)),
            0,
            600,
            NOW - timedelta(minutes=2) - timedelta(seconds=600),
        ),
        (EARLIER, horizon_with(hidden=True), 0, 600, NOW - timedelta(minutes=10)),
        (NOW + timedelta(hours=1), horizon_with(), 0, 0, NOW + timedelta(hours=1)),
    ],
    ids=[
        "no open transactions: the clock less the margin",
        "an open transaction holds it at its start",
        "a prepared transaction holds it a fixed lag before its preparation",
        "hidden sessions fall back to a fixed lag",
        "never moves backwards",
    ],
)
def test_next_watermark(previous, horizon, safety_seconds, fallback_lag_seconds, expected):
    assert (
        next_watermark(previous, horizon, safety_seconds=safety_seconds, fallback_lag_seconds=fallback_lag_seconds)
        == expected
    )


def test_a_timestamp_literal_is_built_from_a_datetime_only():
    with pytest.raises(TypeError):
        timestamp_literal("2024-01-01'; drop table x; --")


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


def test_only_tables_with_no_write_counted_since_a_recent_read_are_left_unread():
    read = RawTableEntry(activity="7:0:0:1:1", read_at=NOW - timedelta(minutes=5))
    previous = {
        "currency": read,  # same signature, read 5 minutes ago
        "staff": RawTableEntry(activity="7:0:0:1:1", read_at=NOW - timedelta(hours=2)),  # due its recheck
        "payment": RawTableEntry(activity="6:0:0:1:1", read_at=read.read_at),  # written since
        "design": None,  # never read
        "address": read,  # the server counts nothing for it now
    }
    horizon = Horizon(
        clock_at=NOW,
        oldest_open_transaction_at=None,
        activity={name: "7:0:0:1:1" for name in ("currency", "staff", "payment", "design")},
    )
    assert unchanged_tables(previous, horizon, recheck_seconds=3600) == ["currency"]
    assert unchanged_tables(previous, horizon, recheck_seconds=0) == []


def test_a_table_left_unread_keeps_its_watermark_keys_and_index_and_adds_nothing():
    before = RawTableEntry(
        data=FileSet(["raw/currency/batch=1/part-0.parquet"], 3),
        watermark=NOW - timedelta(hours=1),
        keys=FileSet(["raw/_keys/currency/1.parquet"], 3),
        deleted=FileSet(["raw/_deleted/currency/1.parquet"], 1),
        activity="7:0:0:1:1",
    )
    kept = kept_unread(before)
    assert (kept.data.rows, kept.deleted, kept.rejected) == (0, None, None)
    assert (kept.watermark, kept.keys, kept.activity) == (before.watermark, before.keys, before.activity)


@pytest.mark.parametrize(
    ("before", "now", "expected"),
    [
        ("10:5:1:16384:1700", "13:9:1:16384:1700", CountedWrites(3, 4, 0)),
        ("10:5:1:16384:1700", "10:5:1:16384:1700", CountedWrites(0, 0, 0)),
        ("10:5:1:16384:1700", "0:0:0:16384:1700", None),  # the table's counters were reset
        ("10:5:1:16384:1700", "13:9:1:16999:1700", None),  # a new file: TRUNCATE
        ("10:5:1:16384:1700", "13:9:1:16384:1800", None),  # the statistics were reset
        (None, "13:9:1:16384:1700", None),
        ("10:5:1:16384:1700", None, None),  # not to be trusted now
        ("garbled", "13:9:1:16384:1700", None),
    ],
)
def test_the_writes_counted_between_two_signatures_only_when_they_compare(before, now, expected):
    assert writes_since(before, now) == expected


@pytest.mark.parametrize(
    ("checked_minutes_ago", "recheck_seconds", "expected"),
    [
        (5, 3600, CountedWrites(3, 4, 0)),
        (None, 3600, None),  # never scanned (a lake written before): scan now
        (61, 3600, None),  # the last scan is due again
        (5, 0, None),  # 0: every run scans
    ],
)
def test_the_counts_stand_in_for_the_key_scan_only_until_the_next_scan_is_due(
    checked_minutes_ago, recheck_seconds, expected
):
    checked = None if checked_minutes_ago is None else NOW - timedelta(minutes=checked_minutes_ago)
    previous = RawTableEntry(activity="10:5:1:16384:1700", keys_checked_at=checked)
    horizon = Horizon(clock_at=NOW, oldest_open_transaction_at=None, activity={"design": "13:9:1:16384:1700"})
    counted = writes_since_keys_checked(previous, horizon, "design", recheck_seconds=recheck_seconds)
    assert counted == expected


@pytest.mark.parametrize(
    ("counted", "new_keys", "fresh_versions", "expected"),
    [
        (None, 0, 0, "hashes"),  # counts not trusted, or not comparable
        (CountedWrites(0, 0, 0), 0, 0, "none"),  # nothing written
        (CountedWrites(3, 2, 0), 3, 5, "none"),  # three inserts read as new keys, two updates as versions
        (CountedWrites(3, 2, 4), 3, 5, "counts"),  # the same, and four deletes to find
        (CountedWrites(0, 0, 1), 0, 0, "counts"),  # a delete alone
        (CountedWrites(1, 0, 1), 0, 0, "hashes"),  # an insert not read: a row with an old stamp
        (CountedWrites(0, 1, 1), 1, 1, "hashes"),  # a key changed by an update: a new key, no insert
        (CountedWrites(0, 2, 1), 0, 1, "hashes"),  # an update no version explains (ON UPDATE CASCADE, twice)
        (CountedWrites(2, 0, 0), 1, 1, "hashes"),  # a rolled-back insert
    ],
)
def test_what_the_delete_check_reads_follows_what_the_counts_leave_unexplained(
    counted, new_keys, fresh_versions, expected
):
    assert key_scan_for(counted, new_keys=new_keys, fresh_versions=fresh_versions) == expected
