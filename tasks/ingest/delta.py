"""Delta reads of the source: the SELECT of one table's changes, and the conforming of what it returns
to the raw zone's exact schema. Pure (no connection here: see ``source.py``)."""

from __future__ import annotations

import hashlib
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
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


def stamped_query(table: Table) -> str:
    """The SELECT of every stamped row of one source table with a key (as the delta reads)."""
    (key,) = table.key
    return INGEST_SQL.read("select_stamped_rows").format(
        table=quote_ident(table.name), key=quote_ident(key), columns=_select_list(table)
    )


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
    with_reason = fresh.append_column("_reason", pa.repeat(pa.scalar(UNSTAMPED_REASON, pa.string()), fresh.num_rows))
    return with_reason.select(unreadable_rows_schema(table).names).cast(unreadable_rows_schema(table)), keys


# The text of a numeric that numeric(10,2) holds exactly: at most 8 integer digits and 2 decimals
# (trailing zeros beyond them are exact too). The source's money columns are unconstrained
# numeric in the real ToteSys dump, so anything may arrive: 1e9, 2.005, NaN.
_EXACT_MONEY_TEXT = r"^-?[0-9]{1,8}(\.[0-9]{0,2}0*)?$"


def conform_batch(batch: pa.RecordBatch, table: Table) -> tuple[pa.RecordBatch, pa.Table | None]:
    """Cast one record batch read from the source to the table's exact raw-zone schema. Pure.

    Returns the conformed rows and the rows set aside (None if none), in the raw zone's schema of
    unreadable rows, with ``_reason`` naming the column and value: a NULL key (the real ToteSys
    dump enforces no constraints), a value its column cannot hold (an integer beyond ``integer``
    read from a ``bigint`` column), money that numeric(10,2) cannot hold exactly (too large, more
    than 2 decimals, NaN). A value that cannot be kept is NULL in the row set aside; the reason
    names it. The rest of the batch flows.

    Raises:
        ValueError: a column is missing (schema drift); names the table and column.
    """
    for target in table.schema:
        if target.name not in batch.schema.names:
            msg = f"source table {table.name} has no column {target.name!r} (schema drift)"
            raise ValueError(msg)
    problems = _RowProblems(batch.num_rows)
    for key in table.key:
        problems.add(pc.is_null(batch.column(key)), pa.scalar(f"{key} is NULL: {NULL_KEY_FIX}"))
    for target in table.schema:
        column = batch.column(target.name)
        if pa.types.is_decimal(target.type) and pa.types.is_string(column.type):
            bad = pc.fill_null(pc.invert(pc.match_substring_regex(column, _EXACT_MONEY_TEXT)), False)
            if pc.any(bad).as_py():  # the usual case: no reason strings built
                problems.add(
                    bad, _value_reason(target.name, column, f"does not fit {_decimal_sql(target.type)} exactly")
                )
        elif column.type != target.type and (bad := _uncastable(column, target.type)) is not None:
            problems.add(bad, _value_reason(target.name, column, f"does not fit {_type_sql(target.type)}"))
    kept = batch if problems.unfit is None else batch.filter(pc.invert(problems.unfit))
    arrays = [
        pc.cast(kept.column(t.name), t.type) if kept.column(t.name).type != t.type else kept.column(t.name)
        for t in table.schema
    ]
    conformed = pa.RecordBatch.from_arrays(arrays, schema=table.schema)
    if problems.unfit is None or problems.reasons is None:
        return conformed, None
    return conformed, _set_aside(batch.filter(problems.unfit), problems.reasons.filter(problems.unfit), table)


NULL_KEY_FIX = "the row has no key; give it one in the source (it arrives then)"


class _RowProblems:
    """Which rows of a batch cannot be conformed, and why (reasons joined with "; ")."""

    def __init__(self, rows: int):
        self.rows = rows
        self.unfit: pa.BooleanArray | None = None
        self.reasons: pa.StringArray | None = None

    def add(self, bad: pa.BooleanArray, reason: pa.Array | pa.Scalar) -> None:
        bad = pc.fill_null(bad, False)
        if not pc.any(bad).as_py():
            return
        if isinstance(reason, pa.Scalar):
            reason = pa.array([reason.as_py()] * self.rows, pa.string())
        reason = pc.if_else(bad, reason, pa.scalar(None, pa.string()))
        if self.reasons is None:
            self.reasons = reason
        else:
            joined = pc.binary_join_element_wise(self.reasons, reason, "; ")
            self.reasons = pc.coalesce(joined, self.reasons, reason)
        self.unfit = bad if self.unfit is None else pc.or_(self.unfit, bad)


def _value_reason(name: str, column: pa.Array, outcome: str) -> pa.Array:
    text = pc.cast(column, pa.string())
    return pc.binary_join_element_wise(pa.scalar(f"{name} "), text, pa.scalar(f" {outcome}"), "")


def _uncastable(column: pa.Array, target: pa.DataType) -> pa.BooleanArray | None:
    """Where ``column`` cannot be cast to ``target`` exactly (None if it all can): the rare path."""
    try:
        pc.cast(column, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    else:
        return None
    bad = []
    for value in column:
        try:
            pc.cast(pa.array([value.as_py()], column.type), target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            bad.append(True)
        else:
            bad.append(False)
    return pa.array(bad, pa.bool_())


def _set_aside(rows: pa.RecordBatch, reasons: pa.Array, table: Table) -> pa.Table:
    """Rows set aside, in the raw zone's schema of unreadable rows: money as the source's text, a
    value its column cannot hold as NULL (``_reason`` names it)."""
    schema = unreadable_rows_schema(table)
    arrays = []
    for target in schema:
        if target.name == "_reason":
            arrays.append(reasons)
            continue
        column = rows.column(target.name)
        if column.type != target.type and (bad := _uncastable(column, target.type)) is not None:
            column = pc.if_else(bad, pa.scalar(None, column.type), column)
        arrays.append(pc.cast(column, target.type) if column.type != target.type else column)
    return pa.Table.from_arrays(arrays, schema=schema)


def _type_sql(arrow_type: pa.DataType) -> str:
    return {pa.int32(): "integer", pa.int16(): "smallint", pa.int64(): "bigint"}.get(arrow_type, str(arrow_type))


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
    positions = pl.DataFrame(
        {key: rows.column(key), "last_updated": rows.column("last_updated")},
        schema={key: pl.Int32, "last_updated": pl.Datetime("us")},
    )
    # A row set aside for its NULL key is recorded with key None: it matches itself, named once.
    matched = positions.with_row_index("_row").join(
        known_frame, on=[key, "last_updated"], how="inner", nulls_equal=True
    )
    if matched.height == 0:
        return rows
    digests = row_digests(rows.take(pa.array(matched["_row"].to_numpy())))
    same = [recorded in ("", digest) for recorded, digest in zip(matched["_digest"], digests, strict=True)]
    known_rows = matched["_row"].filter(pl.Series(same)).to_numpy()
    return rows.filter(pa.array(~np.isin(np.arange(rows.num_rows), known_rows)))


def repeated_keys(keys: np.ndarray) -> np.ndarray:
    """The keys that appear more than once among ``keys``, sorted (usually none: one sort). Pure."""
    if keys.size < 2:
        return np.empty(0, keys.dtype)
    ordered = np.sort(keys)
    same = ordered[1:] == ordered[:-1]
    return np.unique(ordered[1:][same]) if same.any() else np.empty(0, keys.dtype)


@dataclass(frozen=True)
class ConflictDecision:
    """What to do with every row the source holds under keys read more than once (see
    :func:`decide_conflicts`).

    Attributes:
        kept: one row per key whose rows all have one content (exact repeats kept once).
        set_aside: rows to quarantine, with ``_reason`` (None if none): every row of a key newly
            found under several different rows, and a key's single row that cannot be read exactly.
        conflicting: the keys under which the source still holds several different rows.
    """

    kept: pa.Table
    set_aside: pa.Table | None
    conflicting: frozenset[int]


def decide_conflicts(
    rows: pa.Table, unfit: pa.Table | None, table: Table, *, reported: frozenset[int]
) -> ConflictDecision:
    """Decide, key by key, what every row the source holds under some keys becomes. Pure.

    ``rows`` are those rows conformed, ``unfit`` those that could not be (the raw zone's schema of
    unreadable rows). A key whose rows all have one content arrives (a source without a primary
    key may hold a row twice); a key with several different rows is set aside whole, as ``N
    different rows share <key> K``: which is true cannot be told, whatever their stamps. Keys in
    ``reported`` were set aside before and are not named again while they stay so."""
    (key,) = table.key
    schema = unreadable_rows_schema(table)
    as_read = rows.append_column("_reason", pa.nulls(rows.num_rows, pa.string()))
    together = pl.DataFrame(pa.concat_tables([as_read.cast(schema), *([unfit.cast(schema)] if unfit else [])]))
    distinct = together.unique(subset=table.columns, keep="first", maintain_order=True)
    distinct = distinct.with_columns(pl.len().over(key).alias("_contents"))
    conflicting = frozenset(int(k) for k in distinct.filter(pl.col("_contents") > 1)[key].unique())
    settled = pl.Series(key, sorted(conflicting), pl.Int32).implode()
    kept = (
        pl.DataFrame(rows)
        .unique(subset=table.columns, keep="first", maintain_order=True)
        .filter(~pl.col(key).is_in(settled))
        .to_arrow()
        .cast(table.schema)
    )
    newly = pl.Series(key, sorted(conflicting - reported), pl.Int32).implode()
    named = distinct.filter(pl.col(key).is_in(newly)).with_columns(
        pl.format(
            "{} different rows share {} {} (the source holds them under one key: it enforces no primary key); "
            "which is true cannot be told: keep one in the source and it arrives",
            pl.col("_contents"),
            pl.lit(key),
            pl.col(key),
        ).alias("_reason")
    )
    single_unfit = distinct.filter((pl.col("_contents") == 1) & pl.col("_reason").is_not_null())
    set_aside = pl.concat([single_unfit, named]).drop("_contents")
    return ConflictDecision(
        kept=kept,
        set_aside=set_aside.to_arrow().cast(schema) if set_aside.height else None,
        conflicting=conflicting,
    )


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
