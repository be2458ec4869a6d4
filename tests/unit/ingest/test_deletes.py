"""Finding hard-deleted rows (tasks/ingest/deletes.py): key ranges summarised by count, sum and hash,
compared between the source and the lake. No I/O."""

from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal, assert_series_equal

from tasks.ingest import deletes


def summary(keys: list[int]) -> pl.DataFrame:
    return deletes.key_buckets(pl.Series(keys, dtype=pl.Int32), 100).sort("bucket")


def test_key_ranges_differ_only_where_the_key_sets_differ():
    known = pl.Series([1, 2, 3, 150, 151, 420], dtype=pl.Int32)
    same = deletes.key_buckets(known, 100)
    assert deletes.differing_buckets(same, deletes.key_buckets(known, 100)) == []
    source = deletes.key_buckets(pl.Series([1, 2, 3, 150, 152, 999], dtype=pl.Int32), 100)
    # 151 gone and 152 new (range 1), 420 gone (range 4, now empty), 999 new (range 9).
    assert deletes.differing_buckets(source, same) == [1, 4, 9]


def test_summaries_add_and_subtract_like_the_key_sets():
    known, new, gone = [1, 2, 150, 420], [3, 151, 999], [420, 2]
    grown = deletes.combine_buckets(summary(known), summary(new), sign=1)
    assert_frame_equal(grown.sort("bucket"), summary(known + new))
    shrunk = deletes.combine_buckets(grown, summary(gone), sign=-1)
    assert_frame_equal(shrunk.sort("bucket"), summary([1, 3, 150, 151, 999]))  # range 4 is gone, not zero


def test_the_hash_tells_apart_sets_with_equal_count_and_sum():
    a = deletes.key_buckets(pl.Series([1, 5, 6], dtype=pl.Int32), 100)
    b = deletes.key_buckets(pl.Series([2, 3, 7], dtype=pl.Int32), 100)
    assert_series_equal(a["key_sum"], b["key_sum"])
    assert deletes.differing_buckets(a, b) == [0]


@pytest.mark.parametrize(
    ("values", "known", "absent"),
    [
        ([1, 4, 7, 10], [2, 4, 6, 10], [1, 7]),
        ([], [1, 2], []),
        ([3, 5], [], [3, 5]),
        ([0, 99], [1, 2, 3], [0, 99]),  # below the first and beyond the last known key
    ],
)
def test_keys_absent_from_a_sorted_key_set(values, known, absent):
    found = deletes.absent_from_sorted(pl.Series(values, dtype=pl.Int32), pl.Series(known, dtype=pl.Int32))
    assert found.to_list() == absent


@pytest.mark.parametrize(
    ("low", "high", "inside"), [(0, 10, [1, 5]), (5, 20, [5, 10, 15]), (16, 30, []), (10, 11, [10])]
)
def test_the_keys_of_a_range_of_a_sorted_key_set(low, high, inside):
    assert deletes.keys_in_range(pl.Series([1, 5, 10, 15], dtype=pl.Int32), low, high).to_list() == inside


@pytest.mark.parametrize(
    ("indexed", "key_min", "key_max", "rows", "ranges"),
    [
        (True, 1, 1_560_000, 1_560_000, (0, 156)),  # dense keys of a big table: a probe per range
        (True, -25_000, 99_999, 200_000, (-3, 9)),  # below zero, ranges as the SQL floors them
        (False, 1, 1_560_000, 1_560_000, None),  # no index leads with the key: one scan
        (True, 1, 50_000, 50_000, None),  # small: one scan takes milliseconds
        (True, None, None, 200_000, None),  # the estimate says rows, the table has none now
        (True, 1, 2_000_000_000, 200_000, None),  # keys spread thinly: most ranges would be empty
        (True, 1, 10_239_999, 100_000, (0, 1023)),  # up to 1,024 ranges whatever the rows
    ],
)
def test_the_source_counts_key_ranges_through_its_index_only_where_that_pays(indexed, key_min, key_max, rows, ranges):
    found = deletes.ranges_to_count(indexed=indexed, key_min=key_min, key_max=key_max, rows_estimate=rows, width=10_000)
    assert found == ranges
