"""Delta reads of the source: the SELECT of one table's changes, and the conforming of what it returns
to the raw zone's exact schema. Pure (no connection here: see ``source.py``)."""

from __future__ import annotations

import hashlib
from collections.abc import Set as AbstractSet
from datetime import datetime

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from tasks.core.sql import SqlFolder
from tasks.ingest.content import CONTENT_HASH
from tasks.ingest.watermark import timestamp_literal
from tasks.schema import SOURCE_ENUM_COLUMNS, SOURCE_TEXT_CAST_TYPES, Table, quote_ident, unreadable_rows_schema

INGEST_SQL = SqlFolder("tasks.ingest")


def delta_query(table: Table, since: datetime) -> str:
    """The delta SELECT of one source table; identifiers come from our schema only."""
    return INGEST_SQL.read("extract_delta").format(
        table=quote_ident(table.name), columns=_select_list(table), watermark=timestamp_literal(since)
    )


def range_query(table: Table) -> str:
    """The SELECT of one source table's stamped rows with a key in [$1, $2)."""
    (key,) = table.key
    return INGEST_SQL.read("select_rows_in_range").format(
        table=quote_ident(table.name), key=quote_ident(key), columns=_select_list(table)
    )


def by_key_query(table: Table) -> str:
    """The SELECT of one source table's stamped rows whose key is in $1, an integer array as text."""
    (key,) = table.key
    return INGEST_SQL.read("select_rows_by_key").format(
        table=quote_ident(table.name), key=quote_ident(key), columns=_select_list(table)
    )


def content_buckets_query(table: Table, width: int) -> str:
    """The source's per-range summary of ``table``'s row hashes (see ``content.py``)."""
    (key,) = table.key
    return INGEST_SQL.read("select_content_buckets").format(
        table=quote_ident(table.name), key=quote_ident(key), width=int(width), content=_content_hash(table)
    )


def unstamped_query(table: Table) -> str:
    """The SELECT of one source table's rows whose ``last_updated`` is NULL (as the delta reads)."""
    return INGEST_SQL.read("select_unstamped_rows").format(table=quote_ident(table.name), columns=_select_list(table))


def _select_list(table: Table) -> str:
    columns = []
    for name, arrow_type in zip(table.schema.names, table.schema.types, strict=True):
        quoted = quote_ident(name)
        # ADBC returns numeric and enum columns as opaque extension types: select them as text.
        needs_text = arrow_type in SOURCE_TEXT_CAST_TYPES or (table.name, name) in SOURCE_ENUM_COLUMNS
        columns.append(f"source.{quoted}::text as {quoted}" if needs_text else f"source.{quoted}")
    columns.append(f"{_content_hash(table)} as {quote_ident(CONTENT_HASH)}")
    return ",\n    ".join(columns)


def _content_hash(table: Table) -> str:
    """The server's 64-bit hash of a row's model columns as text (the session's DateStyle and
    TimeZone are pinned, see ``source.connect_source``, so the text is the same on every read)."""
    row = ", ".join(f"source.{quote_ident(name)}" for name in table.schema.names)
    return f"hashtextextended(row({row})::text, 0)"


UNSTAMPED_REASON = "last_updated is NULL: totes cannot tell when the row changed; set last_updated to load it"


def set_aside_unstamped(
    rows: pa.Table, table: Table, reported: frozenset[int]
) -> tuple[pa.Table | None, frozenset[int]]:
    """The rows with no ``last_updated`` not reported before, with ``_reason`` and the schema of the
    raw zone's unreadable rows (None if none); and the keys of every such row now. Pure."""
    (key,) = table.key
    keys = frozenset(int(k) for k in rows.column(key).to_pylist() if k is not None)
    fresh = rows.filter(pc.invert(pc.is_in(rows.column(key), pa.array(sorted(reported), rows.schema.field(key).type))))
    if fresh.num_rows == 0:
        return None, keys
    with_reason = fresh.append_column("_reason", pa.array([UNSTAMPED_REASON] * fresh.num_rows, pa.string()))
    return with_reason.select(unreadable_rows_schema(table).names).cast(unreadable_rows_schema(table)), keys


# The text of a numeric that numeric(10,2) holds exactly: at most 8 integer digits and 2 decimals
# (trailing zeros beyond them are exact too). The source's money columns are unconstrained
# numeric in the real ToteSys dump, so anything may arrive: 1e9, 2.005, NaN.
_EXACT_MONEY_TEXT = r"^-?[0-9]{1,8}(\.[0-9]{0,2}0*)?$"


def conform_batch(batch: pa.RecordBatch, table: Table) -> tuple[pa.RecordBatch, pa.Table | None]:
    """Cast one record batch read from the source to the table's exact raw-zone schema. Pure.

    Returns the conformed rows and the rows that cannot be conformed (None if none): a money
    value that numeric(10,2) cannot hold exactly (too large, more than 2 decimals, NaN). Those
    rows keep their source text and gain ``_reason``, naming the column and value; the
    rest of the batch flows.

    Raises:
        ValueError: a column is missing, or a value does not fit its type; names the table and column.
    """
    unfit = reasons = None
    for target in table.schema:
        if (
            target.name in batch.schema.names
            and pa.types.is_decimal(target.type)
            and pa.types.is_string(batch.column(target.name).type)
        ):
            text = batch.column(target.name)
            bad = pc.fill_null(pc.invert(pc.match_substring_regex(text, _EXACT_MONEY_TEXT)), False)
            if not pc.any(bad).as_py():
                continue  # the usual case: no reason strings built
            reason = pc.binary_join_element_wise(
                pa.scalar(f"{target.name} "), text, pa.scalar(f" does not fit {_decimal_sql(target.type)} exactly"), ""
            )
            reason = pc.if_else(bad, reason, pa.scalar(None, pa.string()))
            reasons = reason if reasons is None else pc.coalesce(reasons, reason)
            unfit = bad if unfit is None else pc.or_(unfit, bad)
    rejected = None
    if unfit is not None and reasons is not None:
        rejected = pa.Table.from_batches([batch.filter(unfit)]).append_column("_reason", reasons.filter(unfit))
        batch = batch.filter(pc.invert(unfit))
    arrays = []
    for target in table.schema:
        if target.name not in batch.schema.names:
            msg = f"source table {table.name} has no column {target.name!r} (schema drift)"
            raise ValueError(msg)
        column = batch.column(target.name)
        try:
            arrays.append(pc.cast(column, target.type) if column.type != target.type else column)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
            msg = f"{table.name}.{target.name}: cannot read as {target.type}: {error}"
            raise ValueError(msg) from error
    return pa.RecordBatch.from_arrays(arrays, schema=table.schema), rejected


def _decimal_sql(decimal: pa.Decimal128Type) -> str:
    return f"numeric({decimal.precision},{decimal.scale})"


def row_digests(rows: pa.Table) -> list[str]:
    """A digest of each row's content as read, to tell two writes under one version apart. Pure."""
    return [hashlib.blake2b(repr(tuple(row.values())).encode(), digest_size=12).hexdigest() for row in rows.to_pylist()]


def drop_known_versions(
    batch: pa.RecordBatch | pa.Table, table: Table, known: AbstractSet[tuple[int | None, datetime, str]]
) -> pa.Table:
    """Drop rows whose version (key, last_updated) an earlier run read with the same content (or,
    for a version recorded without a digest, at all). A row whose content differs under a known
    version is a second write with the same stamp: it is kept, a newer observation. Pure."""
    rows = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    if not known or rows.num_rows == 0:
        return rows
    (key,) = table.key
    known_frame = pl.DataFrame(
        {
            key: [k for k, _, _ in known],
            "last_updated": [ts for _, ts, _ in known],
            "_digest": [digest for _, _, digest in known],
        },
        schema={key: pl.Int32, "last_updated": pl.Datetime("us"), "_digest": pl.String},
    )
    positions = pl.DataFrame({key: rows.column(key).to_numpy(), "last_updated": rows.column("last_updated")})
    matched = positions.with_row_index("_row").join(known_frame, on=[key, "last_updated"], how="inner")
    if matched.height == 0:
        return rows
    digests = row_digests(rows.take(pa.array(matched["_row"].to_numpy())))
    same = [recorded in ("", digest) for recorded, digest in zip(matched["_digest"], digests, strict=True)]
    known_rows = matched["_row"].filter(pl.Series(same)).to_numpy()
    return rows.filter(pa.array(~np.isin(np.arange(rows.num_rows), known_rows)))


def shared_versions(keys: np.ndarray, stamps: np.ndarray) -> np.ndarray:
    """Positions, in read order, of the rows whose (key, ``last_updated``) another row of the same
    read has too: exact repeats, or different rows under one version, which a source without a
    primary key can hold. Empty (after one sort of the keys) when every key is read once. Pure."""
    if keys.size < 2:
        return np.empty(0, np.int64)
    sorted_keys = np.sort(keys)
    if not (sorted_keys[1:] == sorted_keys[:-1]).any():
        return np.empty(0, np.int64)
    order = np.lexsort((stamps, keys))  # by key, then stamp
    ordered_keys, ordered_stamps = keys[order], stamps[order]
    same = (ordered_keys[1:] == ordered_keys[:-1]) & (ordered_stamps[1:] == ordered_stamps[:-1])
    shared = np.zeros(keys.size, dtype=bool)
    shared[1:] |= same
    shared[:-1] |= same
    return np.sort(order[shared]).astype(np.int64)


def split_shared_versions(rows: pa.Table, positions: np.ndarray, table: Table) -> tuple[np.ndarray, pa.Table | None]:
    """Decide what to do with rows that share a version (``rows``, read at ``positions``), as the
    transform does within one file, but across the whole batch. Pure.

    Returns the positions to leave out of the raw zone and the rows to quarantine (None if none):
    an exact repeat is kept once (its later copies left out); different rows under one version are
    all quarantined, as ``N different rows share <key> K and last_updated T``: which is true cannot
    be told."""
    (key,) = table.key
    version = [key, "last_updated"]
    frame = pl.DataFrame(rows).with_columns(pl.Series("_position", positions))
    distinct = frame.unique(subset=table.columns, keep="first", maintain_order=True)
    distinct = distinct.with_columns(pl.len().over(version).alias("_contents"))
    conflicting = distinct.filter(pl.col("_contents") > 1)
    kept_once = distinct.filter(pl.col("_contents") == 1)["_position"].to_numpy()
    leave_out = np.setdiff1d(positions, kept_once)
    if conflicting.height == 0:
        return leave_out, None
    reasons = conflicting.select(
        pl.format(
            "{} different rows share {} {} and last_updated {}",
            pl.col("_contents"),
            pl.lit(key),
            pl.col(key),
            pl.col("last_updated"),
        ).alias("_reason")
    )
    # The quarantined rows as read (Arrow, exact money), found by their position among ``rows``.
    picked = rows.take(pa.array(np.searchsorted(positions, conflicting["_position"].to_numpy())))
    return leave_out, picked.append_column("_reason", reasons.to_series().to_arrow().cast(pa.string()))


def versions_since(
    batch: pa.RecordBatch | pa.Table, table: Table, since: datetime
) -> set[tuple[int | None, datetime, str]]:
    """(key, last_updated, content digest) of the rows stamped at or after ``since``. Pure."""
    (key,) = table.key
    stamped = batch.column("last_updated")
    mask = pc.greater_equal(stamped, pa.scalar(since, type=stamped.type))
    recent = batch.filter(mask)
    recent_table = recent if isinstance(recent, pa.Table) else pa.Table.from_batches([recent])
    return set(
        zip(
            recent.column(key).to_pylist(),
            recent.column("last_updated").to_pylist(),
            row_digests(recent_table),
            strict=True,
        )
    )


def raw_quarantine_name(table: str) -> str:
    """The raw-zone table holding a source table's rows that could not be read exactly."""
    return f"_unreadable_{table}"
