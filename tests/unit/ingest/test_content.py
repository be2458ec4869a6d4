"""The content index of the deep pass and of the children read again (tasks/ingest/content.py), and
the keyed hashes a table with PII columns is indexed by. No I/O."""

from __future__ import annotations

import random

import polars as pl
import pyarrow as pa
import pytest
from polars.testing import assert_frame_equal

from tasks.ingest.content import (
    changed_rows,
    children_of,
    content_buckets,
    fold_index,
    index_schema,
    keyed_content_hashes,
    tombstones,
)
from tasks.ingest.pii import PiiPolicy, mask_pii
from tasks.schema import SOURCE_TABLES
from tests.unit.ingest.conftest import HASHED, KEY, STAFF, staff_read


def hashes_by_key(keys: list[int], hashes: list[int]) -> pl.DataFrame:
    """The key and content hash columns of a folded index of transactions."""
    return pl.DataFrame(
        {"transaction_id": keys, "_content_hash": hashes},
        schema=[("transaction_id", pl.Int32), ("_content_hash", pl.Int64)],
    )


class TestContentIndex:
    table = SOURCE_TABLES["transaction"]

    def part(self, keys, hashes, orders=None):
        orders = orders if orders is not None else [None] * len(keys)
        return pa.table(
            {
                "transaction_id": keys,
                "sales_order_id": orders,
                "purchase_order_id": [None] * len(keys),
                "_content_hash": hashes,
            },
            schema=index_schema(self.table),
        )

    def test_a_later_part_overrides_and_a_tombstone_drops_the_key(self):
        folded = fold_index(
            [self.part([1, 2, 3], [10, 20, 30]), self.part([2], [21]), tombstones(pl.Series([3]), self.table)],
            self.table,
        )
        assert_frame_equal(folded.select("transaction_id", "_content_hash"), hashes_by_key([1, 2], [10, 21]))

    def test_children_of_a_gone_parent_are_those_last_seen_referencing_it(self):
        index = fold_index([self.part([1, 2, 3], [1, 2, 3], orders=[7, 8, 7]), self.part([3], [4])], self.table)
        assert children_of(index, "transaction_id", {"sales_order_id": pl.Series([7])}) == [1]
        assert children_of(index, "transaction_id", {}) == []

    def test_changed_rows_are_those_with_another_hash_or_none_known(self):
        index = fold_index([self.part([1, 2], [10, 20])], self.table)
        read = pl.DataFrame({"transaction_id": [2, 1, 5], "_content_hash": [20, 11, 50]})
        assert changed_rows(read, index, "transaction_id").to_list() == [False, True, True]

    def test_the_range_sums_are_the_servers_split_of_each_64_bit_hash(self):
        hashes = [-1, 2**62 + 7, -(2**63), 123]
        index = pl.DataFrame({"k": [1, 2, 3, 12], "_content_hash": hashes})
        buckets = content_buckets(index, "k", 10).sort("bucket")
        as_server = [(h & 2147483647, (h >> 31) & 2147483647) for h in hashes]  # PostgreSQL's & and >>
        expected = [
            (0, 3, sum(lo for lo, _ in as_server[:3]), sum(hi for _, hi in as_server[:3])),
            (1, 1, as_server[3][0], as_server[3][1]),
        ]
        columns = [("bucket", pl.Int64), ("rows", pl.Int64), ("hash_low", pl.Int64), ("hash_high", pl.Int64)]
        assert_frame_equal(buckets, pl.DataFrame(expected, schema=columns, orient="row"))

    def test_folding_keeps_the_last_entry_of_each_key_whatever_the_first_part_s_order(self):
        unsorted_with_repeats = self.part([3, 1, 3, 2], [30, 10, 31, 20])
        folded = fold_index([unsorted_with_repeats, self.part([1], [11])], self.table)
        assert_frame_equal(folded.select("transaction_id", "_content_hash"), hashes_by_key([1, 2, 3], [11, 20, 31]))

    @pytest.mark.parametrize("seed", range(6))
    def test_folding_any_parts_gives_each_keys_last_entry_as_a_dictionary_would(self, seed):
        generate = random.Random(seed)
        parts, expected = [], {}
        for number in range(generate.randint(1, 4)):
            keys = generate.sample(range(50), generate.randint(0, 30))
            if number == 0 and seed % 2:
                keys.sort()  # a folded index first: sorted, one row per key
            if seed % 3 == 0 and keys:
                keys.append(keys[0])  # a key twice in one part: the later entry wins
            hashes = [generate.choice([None, generate.randint(1, 10**6)]) for _ in keys]
            parts.append(self.part(keys, hashes))
            expected.update(zip(keys, hashes, strict=True))
        live = sorted((k, h) for k, h in expected.items() if h is not None)
        folded = fold_index(parts, self.table)
        assert_frame_equal(
            folded.select("transaction_id", "_content_hash"),
            hashes_by_key([k for k, _ in live], [h for _, h in live]),
        )


class TestKeyedContentHashes:
    """The content index of a table with PII columns holds a keyed hash of the masked row: nobody
    without the key can compute it, so nobody can test a guess of a value against it."""

    def test_the_hash_needs_the_key_and_follows_every_column(self):
        policy = PiiPolicy.of(HASHED, KEY)
        masked = mask_pii(staff_read(["a@x.com", "a@x.com"], ["Ann", "Bo"]), "staff", policy)
        one = keyed_content_hashes(masked, STAFF, policy.content_key("staff")).to_pylist()
        assert one[0] != one[1]  # another first name
        assert keyed_content_hashes(masked, STAFF, b"a guessed key").to_pylist() != one
        assert keyed_content_hashes(masked, STAFF, b"").to_pylist() != one
        assert policy.content_key("staff") not in (KEY, b"")
        again = keyed_content_hashes(masked, STAFF, policy.content_key("staff"))
        assert again.to_pylist() == one and again.type == pa.int64()

    @pytest.mark.parametrize(
        ("first", "second"),
        [
            ((None, "Lee"), ("", "Lee")),  # NULL is not the empty string
            ((None, "Lee"), ("N", "Lee")),  # nor the text NULL is encoded as
            (("Ann", "Lee"), ("AnnL", "ee")),  # values do not run into each other
            (("1:a", "b"), ("1", ":ab")),
        ],
    )
    def test_rows_whose_columns_differ_never_encode_alike(self, first, second):
        batch = staff_read(["e", "e"], [first[0], second[0]])
        batch = batch.set_column(2, "last_name", pa.array([first[1], second[1]]))
        hashes = keyed_content_hashes(batch, STAFF, KEY).to_pylist()
        assert hashes[0] != hashes[1]

    def test_no_rows_no_hashes(self):
        assert keyed_content_hashes(staff_read([]), STAFF, KEY).to_pylist() == []
