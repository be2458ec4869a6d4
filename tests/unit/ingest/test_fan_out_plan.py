"""Which tables get a fan-out child (tasks/ingest/fan_out_plan.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tasks.core.manifests import Horizon, RawTableEntry
from tasks.ingest.fan_out_plan import estimated_rows_to_read, plan_fan_out, reads_biggest_first

NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)
READ = RawTableEntry(activity="1000:50:3:16384:1700000000", read_at=NOW - timedelta(minutes=5))


@pytest.mark.parametrize(
    ("previous", "activity", "expected"),
    [
        (None, "1000:50:3:16384:1700000000", 9_000),  # never read: all of it
        (READ, "1000:50:3:16384:1700000000", 0),  # nobody wrote it since
        (READ, "1400:150:3:16384:1700000000", 500),  # 400 inserted + 100 updated since
        (READ, "1000:50:9:16384:1700000000", 0),  # only deletes: no row to read
        (READ, None, 9_000),  # counts not to be trusted now
        (RawTableEntry(), "1000:50:3:16384:1700000000", 9_000),  # read before counts were kept
        (READ, "1400:150:3:99999:1700000000", 9_000),  # a new file (TRUNCATE): counts start again
        (READ, "10:0:0:16384:1800000000", 9_000),  # statistics reset
    ],
    ids=["first read", "unchanged", "written", "deletes only", "untrusted", "no signature", "new file", "reset"],
)
def test_estimated_rows_to_read(previous, activity, expected):
    assert estimated_rows_to_read(previous, activity, 9_000, NOW, 3600) == expected


def test_an_unchanged_table_is_estimated_whole_once_its_recheck_is_due():
    stale = RawTableEntry(activity=READ.activity, read_at=NOW - timedelta(hours=2))
    # The counters still say nothing moved: the check reads it, but only its delta (none).
    assert estimated_rows_to_read(stale, READ.activity, 9_000, NOW, 3600) == 0


@pytest.mark.parametrize(
    ("min_rows", "children"),
    [(0, {"sales_order", "payment", "currency"}), (1_000, {"sales_order"}), (10**9, set())],
)
def test_plan_fan_out_gives_children_to_the_tables_worth_them(min_rows, children):
    horizon = Horizon(
        clock_at=NOW,
        oldest_open_transaction_at=None,
        activity={"sales_order": "5000:0:0:1:1", "payment": "10:0:0:2:1", "currency": "3:0:0:3:1"},
        table_rows={"sales_order": 5000, "payment": 100_000, "currency": 3},
    )
    previous = {
        "payment": RawTableEntry(activity="10:0:0:2:1", read_at=NOW - timedelta(minutes=1)),
        "currency": RawTableEntry(activity="1:0:0:3:1", read_at=NOW - timedelta(minutes=1)),
    }
    plan = plan_fan_out(
        previous, horizon, ["sales_order", "payment", "currency"], min_rows=min_rows, recheck_seconds=3600
    )
    assert plan.estimated_rows == {"sales_order": 5000, "payment": 0, "currency": 2}
    assert plan.children == children
    assert plan.here() == [name for name in ["sales_order", "payment", "currency"] if name not in children]
    assert f"{len(children)} table(s) on the work pool" in plan.describe()


def test_reads_go_biggest_first_and_big_ones_weigh_two():
    assert reads_biggest_first({"currency": 3, "payment": 4_000_000, "design": 5_000, "sales_order": 1_000_000}) == [
        ("payment", 2),
        ("sales_order", 2),
        ("design", 1),
        ("currency", 1),
    ]


def test_the_deep_pass_reads_big_tables_one_at_a_time():
    weights = dict(reads_biggest_first({"payment": 4_000_000, "sales_order": 1_000_000, "staff": 9}, big_weight=3))
    assert weights == {"payment": 3, "sales_order": 3, "staff": 1}
