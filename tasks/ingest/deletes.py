"""Hard deletes found without CDC: key sets summarised per key range and compared range by range.

The source summarises each range of its keys (count, sum and a hash, select_key_buckets.sql); totes
keeps the same summary of the keys it knows and updates it by addition and subtraction. Only ranges
whose summaries differ are read key by key. Pure.
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa

# The hash select_key_buckets.sql sums per range: a cubic polynomial of the key modulo the prime
# 2^31 - 1. With the count and the plain sum it tells two key sets of one range apart unless a
# deliberate collision was built; a range that differs is then compared key by key, so a false
# "differs" costs one small read and never marks a row.
KEY_HASH_MODULUS = 2147483647


def key_buckets(keys: pl.Series, width: int) -> pl.DataFrame:
    """The per-range summary of a key set that select_key_buckets.sql computes in the source. Pure."""
    k, r, p = pl.col("k"), pl.col("r"), KEY_HASH_MODULUS
    r2 = (r * r) % p
    # Streaming: a full load summarises millions of keys, which eagerly costs ~100 MiB per table.
    return (
        pl.LazyFrame({"k": keys})
        .with_columns(k.cast(pl.Int64))
        .with_columns(((k % p + p) % p).alias("r"))
        .group_by(((k - ((k % width) + width) % width) // width).alias("bucket"))
        .agg(
            pl.len().cast(pl.Int64).alias("keys"),
            k.sum().alias("key_sum"),
            ((((r2 * r) % p) * 48271 + r2 * 16807 + r) % p).sum().alias("key_hash"),
        )
        .collect(engine="streaming")
    )


KEY_SUMMARY = ("keys", "key_sum", "key_hash")
# The figures select_key_counts.sql reads: enough where only deletes can have changed a range.
KEY_COUNTS = ("keys", "key_sum")


# Below this many rows one scan of every key takes milliseconds, and the server's planner may scan
# the table for each range rather than probe its index.
COUNTED_BY_RANGE_FROM_ROWS = 100_000


def ranges_to_count(
    *, indexed: bool, key_min: int | None, key_max: int | None, rows_estimate: int, width: int
) -> tuple[int, int] | None:
    """The first and last key range the source counts one by one through the index its key leads
    (select_key_counts_by_range.sql), or None to group every key from one scan: no such index, a
    table the server estimates small (or has not analysed), or keys spread so thinly that most of
    the ranges between them would be empty. Pure."""
    if not indexed or key_min is None or key_max is None or rows_estimate < COUNTED_BY_RANGE_FROM_ROWS:
        return None
    first, last = key_min // width, key_max // width
    # An empty range costs one index probe: up to four per range the rows would fill, or 1,024.
    if last - first + 1 > max(1024, 4 * rows_estimate // width):
        return None
    return first, last


def differing_buckets(source: pl.DataFrame, known: pl.DataFrame, figures: tuple[str, ...] = KEY_SUMMARY) -> list[int]:
    """The ranges whose summaries (``figures`` per range) differ between the source and the lake. Pure."""
    joined = source.join(known, on="bucket", how="full", suffix="_known", coalesce=True)
    differs = pl.any_horizontal(pl.col(c).ne_missing(pl.col(f"{c}_known")) for c in figures)
    return sorted(joined.filter(differs)["bucket"].to_list())


def combine_buckets(summary: pl.DataFrame, change: pl.DataFrame, *, sign: int) -> pl.DataFrame:
    """``summary`` with the summary of a set of keys added (``sign`` 1) or taken away (-1): the three
    figures are sums, so the summary of a changed key set never needs the whole set. Pure."""
    columns = KEY_SUMMARY
    joined = summary.join(change, on="bucket", how="full", suffix="_change", coalesce=True).fill_null(0)
    return joined.select("bucket", *[(pl.col(c) + sign * pl.col(f"{c}_change")).alias(c) for c in columns]).filter(
        pl.col("keys") != 0
    )


def bucket_schema() -> pa.Schema:
    return pa.schema([(c, pa.int64()) for c in ("bucket", "keys", "key_sum", "key_hash")])


def absent_from_sorted(values: pl.Series, sorted_keys: pl.Series) -> pl.Series:
    """The ``values`` that ``sorted_keys`` (ascending) does not hold: a binary search each, with no
    hash set of ``sorted_keys`` (tens of millions of keys at scale 1000)."""
    if values.len() == 0 or sorted_keys.len() == 0:
        return values
    at = sorted_keys.search_sorted(values, side="left").clip(upper_bound=sorted_keys.len() - 1)
    return values.filter(sorted_keys.gather(at).ne_missing(values))


def keys_in_range(sorted_keys: pl.Series, low: int, high: int) -> pl.Series:
    """The keys in [low, high) of ``sorted_keys`` (ascending), by binary search."""
    first, end = (int(sorted_keys.search_sorted(bound, side="left")) for bound in (low, high))
    return sorted_keys.slice(first, end - first)
