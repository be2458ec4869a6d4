"""Reconciliation by content: what the lake last observed of each source row, as the source's own
hash of it, summarised per key range and compared with the source's. Pure.

Every read of the source selects, beside each row, ``hashtextextended(row(...)::text, 0)``: the
server's 64-bit hash of the row's model columns (``_select_list`` in ``delta.py``). The raw zone keeps,
per table, a *content index*: the key, that hash and the foreign-key columns of the row last
observed, as a list of files, each later file overriding earlier ones, with a null hash marking a
key found deleted. From it:

* every run finds the children to read again when a parent key is deleted or changes (ON DELETE
  SET NULL, ON UPDATE CASCADE rewrite children without touching their ``last_updated``);
* the deep pass (``totes reconcile``) compares per-range sums of the hashes with the source's
  (select_content_buckets.sql), reads the ranges that differ, and carries every row whose hash
  is not the one the lake last observed as a new version, whatever changed it.

A table with PII columns (``pii.py``) is indexed otherwise: the server's hash is of the row as it
is, so anyone holding the lake could hash the row's other columns (in the raw zone as they are)
with a guessed e-mail address and test the guess against it. Its index holds instead totes' hash of
the row as the lake holds it, PII masked (:func:`keyed_content_hashes`), keyed when the table has
hashed columns (``PiiPolicy.content_key``); the server cannot sum those per range, so the deep pass
compares such a table row by row.
"""

from __future__ import annotations

import hashlib

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from tasks.schema import Table, references_of

CONTENT_HASH = "_content_hash"

# The two 31-bit halves of each 64-bit hash are summed per range (a range of 10,000 rows sums to
# under 2^45, exact in bigint on both sides); with the row count, a changed row goes unnoticed
# with a probability of about 2^-62.
_HALF = 2147483647

# Batches a table's index files may come from (one or more files each) before they are folded into one.
INDEX_BATCHES_BEFORE_FOLDING = 16

# Index rows a read holds before it writes them to the lake (about 36 bytes a row: at scale 1000,
# two reads of 15.6 M rows each held theirs whole, 1 GiB between them).
INDEX_ROWS_HELD = 2_000_000


def index_schema(table: Table) -> pa.Schema:
    """The content index of ``table``: its key, its foreign keys, and the source's hash of the row."""
    (key,) = table.key
    references = [pa.field(r.column, pa.int32()) for r in references_of(table.name)]
    return pa.schema([pa.field(key, pa.int32()), *references, pa.field(CONTENT_HASH, pa.int64())])


def index_encoding(table: Table) -> dict[str, str]:
    """Parquet encodings of the content index's distinct columns: the key as differences between
    neighbours, the hash plain; neither gets a dictionary (tasks/core/lake.py, write_batches)."""
    (key,) = table.key
    return {key: "DELTA_BINARY_PACKED", CONTENT_HASH: "PLAIN"}


def index_folder(table: Table) -> str:
    """The raw zone's folder of ``table``'s content index files."""
    return f"_content_{table.name}"


def index_rows(rows: pa.RecordBatch | pa.Table, table: Table) -> pa.Table:
    """The content index's rows of some rows read from the source (with their hash column), copied:
    the driver's record batch is one allocation, and a column kept by reference would keep every
    column of every batch of a full load alive."""
    schema = index_schema(table)
    picked = rows.select(schema.names)
    as_table = picked if isinstance(picked, pa.Table) else pa.Table.from_batches([picked])
    # A row with no usable key (NULL, or beyond integer from a bigint column) is set aside, not
    # indexed; a foreign key beyond integer is indexed as NULL (it references nothing totes holds).
    (key,) = table.key
    usable = pc.is_valid(as_table.column(key))
    if as_table.column(key).type != pa.int32():
        usable = pc.and_(usable, _fits_int32(as_table.column(key)))
    if not pc.all(usable).as_py():
        as_table = as_table.filter(usable)
    for position, field in enumerate(schema):
        column = as_table.column(field.name)
        if field.name not in (key, CONTENT_HASH) and column.type != field.type:
            fits = _fits_int32(column)
            as_table = as_table.set_column(position, field.name, pc.if_else(fits, column, pa.scalar(None, column.type)))
    return as_table.cast(schema).take(pa.array(np.arange(as_table.num_rows)))


def _fits_int32(column: pa.ChunkedArray) -> pa.ChunkedArray:
    wide = pc.cast(column, pa.int64())
    return pc.fill_null(pc.and_(pc.greater_equal(wide, -(2**31)), pc.less_equal(wide, 2**31 - 1)), True)


def tombstones(keys: pl.Series, table: Table) -> pa.Table:
    """Index rows saying these keys were found deleted (null hash, null references)."""
    schema = index_schema(table)
    (key,) = table.key
    columns = {f.name: pa.nulls(keys.len(), f.type) for f in schema}
    columns[key] = keys.cast(pl.Int32).to_arrow()
    return pa.table(columns, schema=schema)


def content_only_schema(table: Table) -> pa.Schema:
    """The content index without its foreign keys: the key and the hash, what the deep pass compares."""
    schema = index_schema(table)
    return pa.schema([schema.field(table.key[0]), schema.field(CONTENT_HASH)])


def fold_index(parts: list[pa.Table], table: Table, schema: pa.Schema | None = None) -> pl.DataFrame:
    """The latest index row of each key still held (later parts override earlier ones; a null hash
    drops the key), sorted by key. ``schema``: the index's columns the parts hold (default: all)."""
    (key,) = table.key
    schema = schema or index_schema(table)
    frames = [pl.DataFrame(part.cast(schema)) for part in parts if part.num_rows]
    if not frames:
        return pl.DataFrame(schema.empty_table())
    # The first part is often a folded index (sorted, one row per key: checked in one pass) and the
    # rest small: they replace its keys by an anti-join, far lighter than deduplicating it all.
    first = frames[0]
    keys = first[key].to_numpy()
    if keys.size > 1 and not (keys[1:] > keys[:-1]).all():
        first = _last_per_key(first, key)
    if len(frames) > 1:
        later = _last_per_key(pl.concat(frames[1:]), key)
        first = pl.concat([first.join(later.select(key), on=key, how="anti"), later]).sort(key)
    return first.filter(pl.col(CONTENT_HASH).is_not_null())


def _last_per_key(frame: pl.DataFrame, key: str) -> pl.DataFrame:
    """The last row of each key in ``frame``'s order, sorted by key (a stable sort on the key alone)."""
    ordered = frame.sort(key, maintain_order=True)
    return ordered.filter(pl.col(key).ne_missing(pl.col(key).shift(-1)))


def content_buckets(index: pl.DataFrame, key: str, width: int) -> pl.DataFrame:
    """The per-range summary of the index that select_content_buckets.sql computes in the source."""
    k, h = pl.col(key).cast(pl.Int64), pl.col(CONTENT_HASH)
    return (
        index.lazy()
        .group_by(((k - ((k % width) + width) % width) // width).alias("bucket"))
        .agg(
            pl.len().cast(pl.Int64).alias("rows"),
            (h & _HALF).sum().alias("hash_low"),
            ((h // 2**31) & _HALF).sum().alias("hash_high"),
        )
        .collect()
    )


CONTENT_SUMMARY = ("rows", "hash_low", "hash_high")


def changed_rows(read: pl.DataFrame, index: pl.DataFrame, key: str) -> pl.Series:
    """For rows read from the source (key and hash), True where the lake last observed another
    content (or none)."""
    known = index.select(key, pl.col(CONTENT_HASH).alias("_known"))
    joined = read.select(key, CONTENT_HASH).with_row_index("_row").join(known, on=key, how="left")
    return joined.sort("_row").select(pl.col(CONTENT_HASH).ne_missing(pl.col("_known")).alias("changed"))["changed"]


def children_of(index: pl.DataFrame, key: str, gone: dict[str, pl.Series]) -> list[int]:
    """The keys of the rows the lake last saw referencing a parent key now gone, per foreign-key
    column of ``index``."""
    if not gone or index.height == 0:
        return []
    hit = pl.any_horizontal(pl.col(column).is_in(keys.cast(pl.Int32).implode()) for column, keys in gone.items())
    return index.filter(hit)[key].to_list()


def keyed_content_hashes(rows: pa.RecordBatch | pa.Table, table: Table, key: bytes) -> pa.Int64Array:
    """Each row's 64-bit keyed hash (BLAKE2b under ``key``, an empty key hashing unkeyed) of the
    model's columns of ``table`` as read, PII already masked: the content index's hash of a table
    with PII columns, which nobody without the key can compute."""
    fields = []
    for name in table.schema.names:
        text = pc.cast(rows.column(name), pa.string())
        # Each value as "<characters>:<text>", NULL as "N": no two rows encode alike, whatever
        # their text holds (a separator could appear in a value).
        sized = pc.binary_join_element_wise(pc.cast(pc.utf8_length(text), pa.string()), text, ":")
        fields.append(pc.fill_null(sized, "N"))
    encoded = pc.binary_join_element_wise(*fields, "").cast(pa.binary()).to_pylist()
    # Keyed BLAKE2b is a MAC by design, and 2.5 times faster here than HMAC-SHA256 (one call a row).
    digests = b"".join(hashlib.blake2b(row, key=key, digest_size=8).digest() for row in encoded)
    return pa.array(np.frombuffer(digests, ">i8").astype(np.int64), pa.int64())


def with_keyed_content(rows: pa.RecordBatch, table: Table, key: bytes) -> pa.RecordBatch:
    """``rows`` as read (with the server's hash column), their hash replaced by the keyed one."""
    position = rows.schema.get_field_index(CONTENT_HASH)
    return rows.set_column(position, rows.schema.field(position), keyed_content_hashes(rows, table, key))
