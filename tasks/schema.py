"""The data model as Arrow schemas: the only source of SQL identifiers. docs/reference/data-model.md
states it in words, and its tables of columns are generated from this module.

Every table or column name that reaches SQL text comes from here and is quoted with
:func:`quote_ident`; nothing read from data or config is ever spliced into SQL.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

MONEY = pa.decimal128(10, 2)
TIMESTAMP = pa.timestamp("us")
TIME = pa.time64("us")


@dataclass(frozen=True)
class Table:
    """A table's name, its Arrow schema, and the column(s) that identify one of its rows."""

    name: str
    schema: pa.Schema
    key: tuple[str, ...]

    @property
    def columns(self) -> list[str]:
        return self.schema.names


def _table(name: str, key: tuple[str, ...], *fields: tuple[str, pa.DataType]) -> Table:
    return Table(name=name, schema=pa.schema(list(fields)), key=key)


_AUDIT = (("created_at", TIMESTAMP), ("last_updated", TIMESTAMP))

# ToteSys (the source), in the column order of its published schema. Enums are carried as text.
SOURCE_TABLES: dict[str, Table] = {
    t.name: t
    for t in [
        _table(
            "address",
            ("address_id",),
            ("address_id", pa.int32()),
            ("address_line_1", pa.string()),
            ("address_line_2", pa.string()),
            ("district", pa.string()),
            ("city", pa.string()),
            ("postal_code", pa.string()),
            ("country", pa.string()),
            ("phone", pa.string()),
            *_AUDIT,
        ),
        _table(
            "counterparty",
            ("counterparty_id",),
            ("counterparty_id", pa.int32()),
            ("counterparty_legal_name", pa.string()),
            ("legal_address_id", pa.int32()),
            ("commercial_contact", pa.string()),
            ("delivery_contact", pa.string()),
            *_AUDIT,
        ),
        _table(
            "currency",
            ("currency_id",),
            ("currency_id", pa.int32()),
            ("currency_code", pa.string()),
            *_AUDIT,
        ),
        _table(
            "department",
            ("department_id",),
            ("department_id", pa.int32()),
            ("department_name", pa.string()),
            ("location", pa.string()),
            ("manager", pa.string()),
            *_AUDIT,
        ),
        _table(
            "design",
            ("design_id",),
            ("design_id", pa.int32()),
            ("design_name", pa.string()),
            ("file_location", pa.string()),
            ("file_name", pa.string()),
            *_AUDIT,
        ),
        _table(
            "staff",
            ("staff_id",),
            ("staff_id", pa.int32()),
            ("first_name", pa.string()),
            ("last_name", pa.string()),
            ("department_id", pa.int32()),
            ("email_address", pa.string()),
            *_AUDIT,
        ),
        _table(
            "sales_order",
            ("sales_order_id",),
            ("sales_order_id", pa.int32()),
            ("design_id", pa.int32()),
            ("staff_id", pa.int32()),
            ("counterparty_id", pa.int32()),
            ("units_sold", pa.int32()),
            ("unit_price", MONEY),
            ("currency_id", pa.int32()),
            ("agreed_delivery_date", pa.string()),
            ("agreed_payment_date", pa.string()),
            ("agreed_delivery_location_id", pa.int32()),
            *_AUDIT,
        ),
        _table(
            "purchase_order",
            ("purchase_order_id",),
            ("purchase_order_id", pa.int32()),
            ("staff_id", pa.int32()),
            ("counterparty_id", pa.int32()),
            ("item_code", pa.string()),
            ("item_quantity", pa.int32()),
            ("item_unit_price", MONEY),
            ("currency_id", pa.int32()),
            ("agreed_delivery_date", pa.string()),
            ("agreed_payment_date", pa.string()),
            ("agreed_delivery_location_id", pa.int32()),
            *_AUDIT,
        ),
        _table(
            "payment_type",
            ("payment_type_id",),
            ("payment_type_id", pa.int32()),
            ("payment_type_name", pa.string()),
            *_AUDIT,
        ),
        _table(
            "transaction",
            ("transaction_id",),
            ("transaction_id", pa.int32()),
            ("transaction_type", pa.string()),
            ("sales_order_id", pa.int32()),
            ("purchase_order_id", pa.int32()),
            *_AUDIT,
        ),
        _table(
            "payment",
            ("payment_id",),
            ("payment_id", pa.int32()),
            ("transaction_id", pa.int32()),
            ("counterparty_id", pa.int32()),
            ("payment_amount", MONEY),
            ("currency_id", pa.int32()),
            ("payment_type_id", pa.int32()),
            ("paid", pa.bool_()),
            ("payment_date", pa.string()),
            ("company_ac_number", pa.int32()),
            ("counterparty_ac_number", pa.int32()),
            *_AUDIT,
        ),
    ]
}

# Source columns the source's schema allows to be NULL; every other column is NOT NULL there, though a real
# ToteSys may not enforce it (the 2024 dump has no constraints at all).
SOURCE_NULLABLE_COLUMNS = {
    ("address", "address_line_2"),
    ("address", "district"),
    ("counterparty", "commercial_contact"),
    ("counterparty", "delivery_contact"),
    ("department", "location"),
    ("department", "manager"),
    ("transaction", "sales_order_id"),
    ("transaction", "purchase_order_id"),
}

# Quantities of goods are counted in whole units: a row with zero or fewer is an entry error, not
# an order. Prices are never below zero (a refund is a payment, not a negative price).
SOURCE_POSITIVE_COLUMNS = {("sales_order", "units_sold"), ("purchase_order", "item_quantity")}
SOURCE_NON_NEGATIVE_COLUMNS = {("sales_order", "unit_price"), ("purchase_order", "item_unit_price")}

# ToteSys keeps these dates as yyyy-mm-dd text.
SOURCE_TEXT_DATE_COLUMNS = {
    "sales_order": ("agreed_delivery_date", "agreed_payment_date"),
    "purchase_order": ("agreed_delivery_date", "agreed_payment_date"),
    "payment": ("payment_date",),
}

# Source columns whose PostgreSQL type ADBC returns as an opaque extension (numeric, enums): the
# extractor selects them as text and casts them to the Arrow type above.
SOURCE_TEXT_CAST_TYPES = (MONEY,)
SOURCE_ENUM_COLUMNS = {
    ("payment_type", "payment_type_name"): "PaymentTypeName",
    ("transaction", "transaction_type"): "TransactionType",
}

_FACT_AUDIT = (
    ("created_date", pa.date32()),
    ("created_time", TIME),
    ("last_updated_date", pa.date32()),
    ("last_updated_time", TIME),
)

# RevisedDW (the warehouse), in its published column order. The facts' serial record ids are assigned
# by the warehouse, so they are not part of the star Parquet; the key of a fact is its version.
STAR_TABLES: dict[str, Table] = {
    t.name: t
    for t in [
        _table(
            "fact_sales_order",
            ("sales_order_id", "last_updated_date", "last_updated_time"),
            ("sales_order_id", pa.int32()),
            *_FACT_AUDIT,
            ("sales_staff_id", pa.int32()),
            ("counterparty_id", pa.int32()),
            ("units_sold", pa.int32()),
            ("unit_price", MONEY),
            ("currency_id", pa.int32()),
            ("design_id", pa.int32()),
            ("agreed_payment_date", pa.date32()),
            ("agreed_delivery_date", pa.date32()),
            ("agreed_delivery_location_id", pa.int32()),
        ),
        _table(
            "fact_purchase_order",
            ("purchase_order_id", "last_updated_date", "last_updated_time"),
            ("purchase_order_id", pa.int32()),
            *_FACT_AUDIT,
            ("staff_id", pa.int32()),
            ("counterparty_id", pa.int32()),
            ("item_code", pa.string()),
            ("item_quantity", pa.int32()),
            ("item_unit_price", MONEY),
            ("currency_id", pa.int32()),
            ("agreed_delivery_date", pa.date32()),
            ("agreed_payment_date", pa.date32()),
            ("agreed_delivery_location_id", pa.int32()),
        ),
        _table(
            "fact_payment",
            ("payment_id", "last_updated_date", "last_updated_time"),
            ("payment_id", pa.int32()),
            *_FACT_AUDIT,
            ("transaction_id", pa.int32()),
            ("counterparty_id", pa.int32()),
            ("payment_amount", MONEY),
            ("currency_id", pa.int32()),
            ("payment_type_id", pa.int32()),
            ("paid", pa.bool_()),
            ("payment_date", pa.date32()),
        ),
        _table(
            "dim_date",
            ("date_id",),
            ("date_id", pa.date32()),
            ("year", pa.int32()),
            ("month", pa.int32()),
            ("day", pa.int32()),
            ("day_of_week", pa.int32()),
            ("day_name", pa.string()),
            ("month_name", pa.string()),
            ("quarter", pa.int32()),
        ),
        _table(
            "dim_staff",
            ("staff_id",),
            ("staff_id", pa.int32()),
            ("first_name", pa.string()),
            ("last_name", pa.string()),
            ("department_name", pa.string()),
            ("location", pa.string()),
            ("email_address", pa.string()),
        ),
        _table(
            "dim_location",
            ("location_id",),
            ("location_id", pa.int32()),
            ("address_line_1", pa.string()),
            ("address_line_2", pa.string()),
            ("district", pa.string()),
            ("city", pa.string()),
            ("postal_code", pa.string()),
            ("country", pa.string()),
            ("phone", pa.string()),
        ),
        _table(
            "dim_design",
            ("design_id",),
            ("design_id", pa.int32()),
            ("design_name", pa.string()),
            ("file_location", pa.string()),
            ("file_name", pa.string()),
        ),
        _table(
            "dim_currency",
            ("currency_id",),
            ("currency_id", pa.int32()),
            ("currency_code", pa.string()),
            ("currency_name", pa.string()),
        ),
        _table(
            "dim_counterparty",
            ("counterparty_id",),
            ("counterparty_id", pa.int32()),
            ("counterparty_legal_name", pa.string()),
            ("counterparty_legal_address_line_1", pa.string()),
            ("counterparty_legal_address_line_2", pa.string()),
            ("counterparty_legal_district", pa.string()),
            ("counterparty_legal_city", pa.string()),
            ("counterparty_legal_postal_code", pa.string()),
            ("counterparty_legal_country", pa.string()),
            ("counterparty_legal_phone_number", pa.string()),
        ),
        _table(
            "dim_payment_type",
            ("payment_type_id",),
            ("payment_type_id", pa.int32()),
            ("payment_type_name", pa.string()),
        ),
        _table(
            "dim_transaction",
            ("transaction_id",),
            ("transaction_id", pa.int32()),
            ("transaction_type", pa.string()),
            ("sales_order_id", pa.int32()),
            ("purchase_order_id", pa.int32()),
        ),
    ]
}

# Tables filled from file feeds (tasks/feeds/feeds.toml), one row per line of a source file. Every row also
# carries the lineage columns below, which say which file, which version of it and which line it came
# from; the loader keeps each table equal to exactly the rows of the currently staged files.
EXCHANGE_RATE = pa.decimal128(18, 8)
FEED_TABLES: dict[str, Table] = {
    t.name: t
    for t in [
        Table(
            name="fact_exchange_rate",
            schema=pa.schema(
                [
                    pa.field("rate_date", pa.date32(), nullable=False),
                    pa.field("currency_id", pa.int32(), nullable=False),
                    pa.field("rate_to_gbp", EXCHANGE_RATE, nullable=False),
                ]
            ),
            key=("rate_date", "currency_id"),
        ),
    ]
}
FEED_LINEAGE = pa.schema(
    [
        pa.field("_source_file", pa.string(), nullable=False),
        pa.field("_source_version", pa.string(), nullable=False),
        pa.field("_source_line", pa.int32(), nullable=False),
    ]
)

# Star columns the warehouse allows to be NULL (all NOT NULL except these).
STAR_NULLABLE_COLUMNS = {
    ("dim_staff", "location"),
    ("dim_location", "address_line_2"),
    ("dim_location", "district"),
    ("dim_counterparty", "counterparty_legal_address_line_2"),
    ("dim_counterparty", "counterparty_legal_district"),
    ("dim_transaction", "sales_order_id"),
    ("dim_transaction", "purchase_order_id"),
}

# The dimension each fact column refers to (dates always resolve: dim_date covers every fact date).
FACT_REFERENCES: dict[str, dict[str, str]] = {
    "fact_sales_order": {
        "sales_staff_id": "dim_staff",
        "counterparty_id": "dim_counterparty",
        "currency_id": "dim_currency",
        "design_id": "dim_design",
        "agreed_delivery_location_id": "dim_location",
    },
    "fact_purchase_order": {
        "staff_id": "dim_staff",
        "counterparty_id": "dim_counterparty",
        "currency_id": "dim_currency",
        "agreed_delivery_location_id": "dim_location",
    },
    "fact_payment": {
        "transaction_id": "dim_transaction",
        "counterparty_id": "dim_counterparty",
        "currency_id": "dim_currency",
        "payment_type_id": "dim_payment_type",
    },
}

# The star table whose rows a source row's hard delete marks with _deleted_at, by the star table's
# key (department has no star table of its own: dim_staff keeps the department's last values).
DELETES_MARK: dict[str, str] = {
    "address": "dim_location",
    "counterparty": "dim_counterparty",
    "currency": "dim_currency",
    "design": "dim_design",
    "staff": "dim_staff",
    "payment_type": "dim_payment_type",
    "transaction": "dim_transaction",
    "sales_order": "fact_sales_order",
    "purchase_order": "fact_purchase_order",
    "payment": "fact_payment",
}


@dataclass(frozen=True)
class Reference:
    """A foreign key of the source: ``child.column`` holds a key of ``parent``."""

    child: str
    column: str
    parent: str

    @property
    def parent_key(self) -> str:
        (key,) = SOURCE_TABLES[self.parent].key
        return key


# The source's foreign keys. All are ON UPDATE CASCADE, and transaction's two order
# keys ON DELETE SET NULL: when a parent key is deleted or changes, PostgreSQL rewrites the child
# rows without touching their last_updated, so no delta sees it.
SOURCE_REFERENCES: tuple[Reference, ...] = tuple(
    Reference(child, column, parent)
    for child, column, parent in [
        ("counterparty", "legal_address_id", "address"),
        ("staff", "department_id", "department"),
        ("sales_order", "design_id", "design"),
        ("sales_order", "staff_id", "staff"),
        ("sales_order", "counterparty_id", "counterparty"),
        ("sales_order", "currency_id", "currency"),
        ("sales_order", "agreed_delivery_location_id", "address"),
        ("purchase_order", "staff_id", "staff"),
        ("purchase_order", "counterparty_id", "counterparty"),
        ("purchase_order", "currency_id", "currency"),
        ("purchase_order", "agreed_delivery_location_id", "address"),
        ("transaction", "sales_order_id", "sales_order"),
        ("transaction", "purchase_order_id", "purchase_order"),
        ("payment", "transaction_id", "transaction"),
        ("payment", "counterparty_id", "counterparty"),
        ("payment", "currency_id", "currency"),
        ("payment", "payment_type_id", "payment_type"),
    ]
)


def references_of(child: str) -> tuple[Reference, ...]:
    """The foreign keys of one source table."""
    return tuple(r for r in SOURCE_REFERENCES if r.child == child)


def deleted_marks_schema(key: str) -> pa.Schema:
    """The lake's record of hard-deleted rows: each key, and when totes found it gone."""
    return pa.schema([(key, pa.int32()), ("_deleted_at", TIMESTAMP)])


# The warehouse-assigned serial id of each fact row (not in the star Parquet).
FACT_RECORD_IDS = {
    "fact_sales_order": "sales_record_id",
    "fact_purchase_order": "purchase_record_id",
    "fact_payment": "payment_record_id",
}


def unreadable_rows_schema(table: Table) -> pa.Schema:
    """The lake's record of a source table's rows that could not be read exactly: the source's
    columns, money as the source's text, and ``_reason``."""
    fields = [pa.field(f.name, pa.string()) if pa.types.is_decimal(f.type) else f for f in table.schema]
    return pa.schema([*fields, pa.field("_reason", pa.string())])


FACT_TABLES = tuple(name for name in STAR_TABLES if name.startswith("fact_"))
DIMENSION_TABLES = tuple(name for name in STAR_TABLES if name.startswith("dim_"))


def quote_ident(name: str) -> str:
    """A PostgreSQL quoted identifier. Only ever called with names defined in this module."""
    return '"' + name.replace('"', '""') + '"'


# Source text columns whose values the transform reads (dates, enum names, currency codes): a hash
# would break them, so PII policies refuse them.
SOURCE_INTERPRETED_TEXT_COLUMNS = frozenset(
    {(table, column) for table, columns in SOURCE_TEXT_DATE_COLUMNS.items() for column in columns}
    | set(SOURCE_ENUM_COLUMNS)
    | {("currency", "currency_code")}
)


def pii_column_problem(column: str, how: str) -> str | None:
    """Why ``column`` ("table.column") cannot take the PII policy ``how`` (None if it can)."""
    table, _, name = column.partition(".")
    if table not in SOURCE_TABLES or name not in SOURCE_TABLES[table].columns:
        return f"{column!r} is not a source column (table.column)"
    if name in SOURCE_TABLES[table].key or name in ("created_at", "last_updated") or name.endswith("_id"):
        return f"{column} is a key or a timestamp totes needs as it is"
    if how == "exclude" and (table, name) not in SOURCE_NULLABLE_COLUMNS:
        return f"{column} cannot be excluded: the model needs a value there (NOT NULL); hash it instead"
    if how == "hash" and (
        not pa.types.is_string(SOURCE_TABLES[table].schema.field(name).type)
        or (table, name) in SOURCE_INTERPRETED_TEXT_COLUMNS
    ):
        return f"{column} cannot be hashed: only free-text columns can (the transform reads its values)"
    return None
