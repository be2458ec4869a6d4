"""Pure Polars builders of the warehouse's dimensions and facts (docs/reference/data-model.md: the
warehouse and its rules).

Every function here takes DataFrames and returns new ones: no I/O, no Prefect. Inputs have the
raw-zone schemas of :data:`tasks.schema.SOURCE_TABLES`; outputs have the columns, in order, of
:data:`tasks.schema.STAR_TABLES`. ``batch.py`` composes them into one batch.
"""

from __future__ import annotations

from datetime import date
from typing import cast

import polars as pl
import pycountry

from tasks.schema import (
    SOURCE_NON_NEGATIVE_COLUMNS,
    SOURCE_NULLABLE_COLUMNS,
    SOURCE_POSITIVE_COLUMNS,
    SOURCE_TABLES,
    SOURCE_TEXT_DATE_COLUMNS,
    STAR_TABLES,
)

UNKNOWN_CURRENCY_NAME = "Unknown"


class TransformError(ValueError):
    """Source data that cannot become a warehouse row; the message names table, column and key."""


# --- shared steps --------------------------------------------------------------------------------


def latest_versions(frame: pl.DataFrame, key: str) -> pl.DataFrame:
    """The newest version (by ``last_updated``) of each ``key``: one row per key."""
    return frame.sort([key, "last_updated"]).unique(subset=[key], keep="last", maintain_order=True)


def distinct_versions(frame: pl.DataFrame, key: str) -> pl.DataFrame:
    """One row per (``key``, ``last_updated``): overlapping re-reads collapse to one version."""
    return frame.unique(subset=[key, "last_updated"], keep="last", maintain_order=True).sort([key, "last_updated"])


def _star_columns(frame: pl.DataFrame, table: str) -> pl.DataFrame:
    return frame.select(STAR_TABLES[table].columns)


def _timestamp_parts(column: str, prefix: str) -> list[pl.Expr]:
    return [
        pl.col(column).dt.date().alias(f"{prefix}_date"),
        pl.col(column).dt.time().alias(f"{prefix}_time"),
    ]


def parse_text_dates(frame: pl.DataFrame, *, table: str, key: str, columns: list[str]) -> pl.DataFrame:
    """Parse ToteSys' ``yyyy-mm-dd`` text dates into dates.

    Raises:
        TransformError: a value is not a real ``yyyy-mm-dd`` date (e.g. ``2024-13-45``); the message
            names the table, column, row key and value.
    """
    parsed = frame.with_columns(pl.col(c).str.strptime(pl.Date, "%Y-%m-%d", strict=False).alias(c) for c in columns)
    for column in columns:
        bad = frame.filter(parsed[column].is_null() & frame[column].is_not_null())
        if bad.height:
            sample = ", ".join(f"{k}={v!r}" for k, v in bad.select(key, column).head(3).iter_rows())
            msg = f"{table}.{column}: {bad.height} value(s) are not yyyy-mm-dd dates ({key}, value: {sample})"
            raise TransformError(msg)
    return parsed


# --- rows that cannot become warehouse rows ---------------------------------------------------------


REJECTION_REASON = "_reason"


def split_invalid_rows(frame: pl.DataFrame, table: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split source rows into those the warehouse can take and those it cannot. Pure.

    A row is rejected when a column the source model declares NOT NULL is NULL, a yyyy-mm-dd text
    date does not parse (e.g. ``2024-13-45``), a quantity is not positive or a price negative
    (``SOURCE_POSITIVE_COLUMNS``, ``SOURCE_NON_NEGATIVE_COLUMNS``), or another, different row has the same key and
    ``last_updated`` (a source without primary-key constraints: which one is true cannot be told).
    Rows repeated exactly are kept once. Rejected rows keep every source column plus ``_reason``,
    which names the column and value. A corrected row arrives as a new version.
    """
    version = [*SOURCE_TABLES[table].key, "last_updated"]
    # Hashing whole rows to drop exact repeats, and formatting a reason for every row, took a
    # quarter of a full load's transform: both are done only where some row needs them.
    if frame.select(pl.struct(version).is_duplicated().any()).item():
        frame = frame.unique(maintain_order=True)
    shared = pl.len().over(version)
    checks: list[tuple[pl.Expr, pl.Expr]] = [
        (
            shared > 1,
            pl.format(
                "{} different rows share {} {} and last_updated {}",
                shared,
                pl.lit(version[0]),
                pl.col(version[0]),
                pl.col("last_updated"),
            ),
        )
    ]
    for column in SOURCE_TABLES[table].columns:
        if (table, column) not in SOURCE_NULLABLE_COLUMNS:
            checks.append((pl.col(column).is_null(), pl.lit(f"{column} is NULL")))
    for column in SOURCE_TABLES[table].columns:
        if (table, column) in SOURCE_POSITIVE_COLUMNS:
            checks.append(
                (pl.col(column) <= 0, pl.format("{} {} is not a positive quantity", pl.lit(column), pl.col(column)))
            )
        if (table, column) in SOURCE_NON_NEGATIVE_COLUMNS:
            checks.append((pl.col(column) < 0, pl.format("{} {} is negative", pl.lit(column), pl.col(column))))
    for column in SOURCE_TEXT_DATE_COLUMNS.get(table, ()):
        unparsed = (
            pl.col(column).is_not_null() & pl.col(column).str.strptime(pl.Date, "%Y-%m-%d", strict=False).is_null()
        )
        checks.append((unparsed, pl.format("{} {} is not a yyyy-mm-dd date", pl.lit(column), pl.col(column))))
    if not frame.select(pl.any_horizontal([failed for failed, _ in checks]).any()).item():
        return frame, frame.head(0).with_columns(pl.lit(None, pl.String).alias(REJECTION_REASON))
    reasons = [pl.when(failed).then(reason) for failed, reason in checks]
    checked = frame.with_columns(pl.concat_str(reasons, separator="; ", ignore_nulls=True).alias(REJECTION_REASON))
    rejected = checked.filter(pl.col(REJECTION_REASON).is_not_null() & (pl.col(REJECTION_REASON) != ""))
    valid = checked.filter(pl.col(REJECTION_REASON).is_null() | (pl.col(REJECTION_REASON) == "")).drop(REJECTION_REASON)
    return valid, rejected


def split_orphans(
    child: pl.DataFrame, parent: pl.DataFrame, *, foreign_key: str, parent_key: str, table: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split rows whose ``foreign_key`` names no ``parent`` row from the others. Pure."""
    known = parent[parent_key].implode()
    orphan = ~pl.col(foreign_key).is_in(known)
    rejected = child.filter(orphan).with_columns(
        pl.format("{} {} names no {} row", pl.lit(foreign_key), pl.col(foreign_key), pl.lit(table)).alias(
            REJECTION_REASON
        )
    )
    return child.filter(~orphan), rejected


def describe_rejections(
    table: str, rejected: pl.DataFrame, *, outcome: str = "rejected and kept in the lake's quarantine"
) -> str:
    """One data-quality warning for a table's rejected rows, with the first few keys and reasons."""
    key = SOURCE_TABLES[table].key[0]
    sample = "; ".join(f"{key} {k}: {r}" for k, r in rejected.select(key, REJECTION_REASON).head(3).iter_rows())
    return f"{table}: {rejected.height} row(s) {outcome} ({sample})"


# --- facts ---------------------------------------------------------------------------------------


def _fact_rows(frame: pl.DataFrame, *, source: str, star: str, extra: tuple[pl.Expr, ...] = ()) -> pl.DataFrame:
    # The key and the yyyy-mm-dd text dates are the source table's, as tasks/schema.py declares them.
    key = SOURCE_TABLES[source].key[0]
    versions = parse_text_dates(
        distinct_versions(frame, key), table=source, key=key, columns=list(SOURCE_TEXT_DATE_COLUMNS[source])
    )
    return _star_columns(
        versions.with_columns(
            *_timestamp_parts("created_at", "created"),
            *_timestamp_parts("last_updated", "last_updated"),
            *extra,
        ),
        star,
    )


def build_fact_sales_order(sales_order: pl.DataFrame) -> pl.DataFrame:
    """One row per version (sales_order_id, last_updated) of a sales order."""
    return _fact_rows(
        sales_order,
        source="sales_order",
        star="fact_sales_order",
        extra=(pl.col("staff_id").alias("sales_staff_id"),),
    )


def build_fact_purchase_order(purchase_order: pl.DataFrame) -> pl.DataFrame:
    """One row per version (purchase_order_id, last_updated) of a purchase order."""
    return _fact_rows(
        purchase_order,
        source="purchase_order",
        star="fact_purchase_order",
    )


def build_fact_payment(payment: pl.DataFrame) -> pl.DataFrame:
    """One row per version (payment_id, last_updated) of a payment; account numbers are dropped."""
    return _fact_rows(payment, source="payment", star="fact_payment")


# --- dimensions ----------------------------------------------------------------------------------


def build_dim_location(address: pl.DataFrame) -> pl.DataFrame:
    """One row per address (location_id = address_id), its latest values."""
    return _star_columns(
        latest_versions(address, "address_id").rename({"address_id": "location_id"}),
        "dim_location",
    )


def build_dim_design(design: pl.DataFrame) -> pl.DataFrame:
    """One row per design, its latest values."""
    return _star_columns(latest_versions(design, "design_id"), "dim_design")


def build_dim_payment_type(payment_type: pl.DataFrame) -> pl.DataFrame:
    """One row per payment type, its latest values."""
    return _star_columns(latest_versions(payment_type, "payment_type_id"), "dim_payment_type")


def build_dim_transaction(transaction: pl.DataFrame) -> pl.DataFrame:
    """One row per transaction, its latest values."""
    return _star_columns(latest_versions(transaction, "transaction_id"), "dim_transaction")


def iso_currency_name(code: str | None) -> str | None:
    """The ISO 4217 English name of a currency code, or None if the code is not ISO 4217."""
    if not code:
        return None
    found = pycountry.currencies.get(alpha_3=code.strip().upper())
    return found.name if found else None


def unknown_currency_codes(currency: pl.DataFrame) -> list[str]:
    """Currency codes that ISO 4217 does not know (reported as data-quality warnings)."""
    codes = currency["currency_code"].unique().sort().to_list()
    return [code for code in codes if iso_currency_name(code) is None]


def build_dim_currency(currency: pl.DataFrame) -> pl.DataFrame:
    """One row per currency with its ISO 4217 name; unknown codes are named "Unknown"."""
    latest = latest_versions(currency, "currency_id")
    names = {code: iso_currency_name(code) or UNKNOWN_CURRENCY_NAME for code in latest["currency_code"]}
    return _star_columns(
        latest.with_columns(
            pl.col("currency_code")
            .replace_strict(names, default=UNKNOWN_CURRENCY_NAME, return_dtype=pl.String)
            .alias("currency_name")
        ),
        "dim_currency",
    )


def build_dim_staff(staff: pl.DataFrame, department: pl.DataFrame) -> pl.DataFrame:
    """One row per member of staff, with the latest values of their department (rows naming no
    department are split off before: see ``batch.py``)."""
    joined = latest_versions(staff, "staff_id").join(
        latest_versions(department, "department_id").select("department_id", "department_name", "location"),
        on="department_id",
        how="left",
    )
    return _star_columns(joined, "dim_staff")


def build_dim_counterparty(counterparty: pl.DataFrame, address: pl.DataFrame) -> pl.DataFrame:
    """One row per counterparty, with the latest values of its legal address (rows naming no
    address are split off before: see ``batch.py``)."""
    legal_address = latest_versions(address, "address_id").select(
        pl.col("address_id").alias("legal_address_id"),
        pl.col("address_line_1").alias("counterparty_legal_address_line_1"),
        pl.col("address_line_2").alias("counterparty_legal_address_line_2"),
        pl.col("district").alias("counterparty_legal_district"),
        pl.col("city").alias("counterparty_legal_city"),
        pl.col("postal_code").alias("counterparty_legal_postal_code"),
        pl.col("country").alias("counterparty_legal_country"),
        pl.col("phone").alias("counterparty_legal_phone_number"),
    )
    joined = latest_versions(counterparty, "counterparty_id").join(legal_address, on="legal_address_id", how="left")
    return _star_columns(joined, "dim_counterparty")


def build_dim_date(first: date, last: date) -> pl.DataFrame:
    """One row per calendar day from ``first`` to ``last`` inclusive (ISO weekday, English names)."""
    if last < first:
        msg = f"dim_date range is empty: {first} is after {last}"
        raise TransformError(msg)
    days = pl.DataFrame({"date_id": pl.date_range(first, last, "1d", eager=True)})
    return days.select(
        "date_id",
        pl.col("date_id").dt.year().cast(pl.Int32).alias("year"),
        pl.col("date_id").dt.month().cast(pl.Int32).alias("month"),
        pl.col("date_id").dt.day().cast(pl.Int32).alias("day"),
        pl.col("date_id").dt.weekday().cast(pl.Int32).alias("day_of_week"),
        pl.col("date_id").dt.strftime("%A").alias("day_name"),
        pl.col("date_id").dt.strftime("%B").alias("month_name"),
        pl.col("date_id").dt.quarter().cast(pl.Int32).alias("quarter"),
    )


_FACT_DATE_COLUMNS = {
    "fact_sales_order": ["created_date", "last_updated_date", "agreed_payment_date", "agreed_delivery_date"],
    "fact_purchase_order": ["created_date", "last_updated_date", "agreed_delivery_date", "agreed_payment_date"],
    "fact_payment": ["created_date", "last_updated_date", "payment_date"],
}


def referenced_date_range(facts: dict[str, pl.DataFrame]) -> tuple[date, date] | None:
    """The first and last date any fact row refers to, or None if there are no fact rows."""
    bounds: list[date] = []
    for table, columns in _FACT_DATE_COLUMNS.items():
        frame = facts.get(table)
        if frame is None or frame.height == 0:
            continue
        # Each column's own min and max: stacking the columns into lists first took 40 % of a
        # full load's transform at scale 100.
        low, high = frame.select(
            pl.min_horizontal([pl.col(column).min() for column in columns]).alias("low"),
            pl.max_horizontal([pl.col(column).max() for column in columns]).alias("high"),
        ).row(0)
        bounds.extend(cast(date, bound) for bound in (low, high) if bound is not None)
    if not bounds:
        return None
    return min(bounds), max(bounds)


# --- the whole star ------------------------------------------------------------------------------


def _keys_touched(
    delta: pl.DataFrame, key: str, history: pl.DataFrame, via: str, changed_parents: pl.DataFrame, parent_key: str
) -> pl.Series:
    """Keys changed themselves, plus keys whose current parent row (``via``) changed."""
    current = latest_versions(history, key)
    through_parent = current.filter(pl.col(via).is_in(changed_parents[parent_key].implode()))[key]
    return pl.concat([delta[key], through_parent]).unique()


def empty_source_frame(table: str) -> pl.DataFrame:
    return pl.DataFrame(SOURCE_TABLES[table].schema.empty_table())


# Star tables built row by row from one source table: they can be built one lake file at a time,
# so their memory does not grow with the batch.
ROW_WISE_BUILDERS = {
    "sales_order": ("fact_sales_order", build_fact_sales_order),
    "purchase_order": ("fact_purchase_order", build_fact_purchase_order),
    "payment": ("fact_payment", build_fact_payment),
    "transaction": ("dim_transaction", build_dim_transaction),
}


def build_row_wise(source_table: str, frame: pl.DataFrame) -> tuple[str, pl.DataFrame]:
    """The star table built row by row from ``source_table``, and its rows for ``frame``."""
    star_table, builder = ROW_WISE_BUILDERS[source_table]
    return star_table, builder(frame)


def build_joined_dimensions(
    delta: dict[str, pl.DataFrame], history: dict[str, pl.DataFrame]
) -> tuple[dict[str, pl.DataFrame], list[str]]:
    """Every dimension except dim_date and dim_transaction, and the data-quality warnings.

    A dimension row is rebuilt when its own row or a row it joins to changed: an address change
    rebuilds every counterparty whose legal address it is, a department change all its staff.
    """
    d = {name: delta.get(name, empty_source_frame(name)) for name in SOURCE_TABLES}
    h = {
        name: history.get(name, empty_source_frame(name)) for name in ("address", "counterparty", "department", "staff")
    }
    staff_ids = _keys_touched(d["staff"], "staff_id", h["staff"], "department_id", d["department"], "department_id")
    counterparty_ids = _keys_touched(
        d["counterparty"], "counterparty_id", h["counterparty"], "legal_address_id", d["address"], "address_id"
    )
    dims = {
        "dim_staff": build_dim_staff(h["staff"].filter(pl.col("staff_id").is_in(staff_ids.implode())), h["department"]),
        "dim_location": build_dim_location(d["address"]),
        "dim_design": build_dim_design(d["design"]),
        "dim_currency": build_dim_currency(d["currency"]),
        "dim_counterparty": build_dim_counterparty(
            h["counterparty"].filter(pl.col("counterparty_id").is_in(counterparty_ids.implode())), h["address"]
        ),
        "dim_payment_type": build_dim_payment_type(d["payment_type"]),
    }
    warnings = [
        f"currency code {code!r} is not ISO 4217: loaded as {UNKNOWN_CURRENCY_NAME!r}"
        for code in unknown_currency_codes(d["currency"])
    ]
    return dims, warnings


def widen_date_range(
    covered: tuple[date, date] | None, referenced: tuple[date, date] | None
) -> tuple[date, date] | None:
    """The smallest range containing both (either may be None)."""
    if covered is None or referenced is None:
        return covered or referenced
    return min(covered[0], referenced[0]), max(covered[1], referenced[1])


def build_dim_date_extension(
    covered: tuple[date, date] | None, referenced: tuple[date, date] | None
) -> tuple[pl.DataFrame, tuple[date, date] | None]:
    """dim_date rows for the range that covers both, so dim_date stays one contiguous range; no rows
    if the covered range already includes every referenced date."""
    widened = widen_date_range(covered, referenced)
    if widened is None or widened == covered:
        return build_dim_date(date(2000, 1, 1), date(2000, 1, 1)).clear(), widened
    return build_dim_date(*widened), widened
