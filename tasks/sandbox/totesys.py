"""The development source: create a ToteSys database, fill it, and make it change.

* :func:`seed_generated` fills it with deterministic, realistic data whose size and shape at
  ``scale=1`` match the real database (docs/reference/data-model.md), bulk-loaded with ADBC ingest (COPY).
* :func:`seed_from_dump` loads a real pg_dump of ToteSys (``../shared/data``) into the canonical schema.
* :func:`churn` applies one round of business activity.
"""

from __future__ import annotations

import gzip
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import adbc_driver_postgresql.dbapi as adbc_postgres
import numpy as np
import pyarrow as pa

from tasks.core.postgres import copy_rows, fetch_rows
from tasks.core.sql import SqlFolder
from tasks.schema import SOURCE_ENUM_COLUMNS, SOURCE_TABLES, TIMESTAMP, quote_ident

SANDBOX_SQL = SqlFolder("tasks.sandbox")

log = logging.getLogger("totes.source")

# Loaded in this order so that a reader never sees a row before the rows it refers to.
LOAD_ORDER = (
    "address",
    "counterparty",
    "currency",
    "department",
    "design",
    "staff",
    "sales_order",
    "purchase_order",
    "payment_type",
    "transaction",
    "payment",
)


class SourceError(RuntimeError):
    """The source database is not in a state the command can work with."""


def _execute_script(connection: adbc_postgres.Connection, name: str) -> None:
    with connection.cursor() as cursor:
        for statement in SANDBOX_SQL.statements(name):
            cursor.execute(statement)


def existing_tables(connection: adbc_postgres.Connection) -> list[str]:
    statement = (
        "select table_name from information_schema.tables where table_schema = 'public' and table_name = any($1)"
    )
    return sorted(row[0] for row in fetch_rows(connection, statement, (list(SOURCE_TABLES),)))


def create_schema(connection: adbc_postgres.Connection, *, replace: bool) -> None:
    """Create the ToteSys tables (the source model), refusing to touch existing ones unless ``replace``."""
    found = existing_tables(connection)
    if found and not replace:
        msg = (
            f"the source already has ToteSys tables ({', '.join(found)}); "
            "run `totes seed --replace` to drop and recreate them"
        )
        raise SourceError(msg)
    if found:
        log.warning("Dropping the existing ToteSys tables: %s", ", ".join(found))
        _execute_script(connection, "drop_totesys_tables")
    _execute_script(connection, "create_totesys_tables")
    _execute_script(connection, "set_utc_time_zone")
    connection.commit()


def finish_schema(connection: adbc_postgres.Connection, *, delta_indexes: bool) -> None:
    """After the bulk load: foreign keys, unique indexes, sequences, statistics."""
    _execute_script(connection, "create_totesys_constraints")
    if delta_indexes:
        _execute_script(connection, "create_totesys_delta_indexes")
    with connection.cursor() as cursor:
        for table in SOURCE_TABLES.values():
            (key,) = table.key
            cursor.execute(
                SANDBOX_SQL.read("reset_sequence").format(table=table.name, key=key, quoted_key=quote_ident(key))
            )
    connection.commit()
    with connection.cursor() as cursor:
        cursor.execute("analyze")
    connection.commit()


def ingest_rows(connection: adbc_postgres.Connection, table: str, data: pa.Table) -> int:
    """COPY rows (with the table's exact Arrow schema) into a source table."""
    return copy_rows(connection.cursor(), table, data.cast(SOURCE_TABLES[table].schema), mode="append")


# --- deterministic generated data ------------------------------------------------------------------

_START = np.datetime64("2022-11-03T14:20:49.962", "ms")
_END = np.datetime64("2024-02-23T18:00:00.000", "ms")

_STREETS = [
    "Ferry",
    "Crescent",
    "Station",
    "Mill",
    "Church",
    "Victoria",
    "Park",
    "Kings",
    "Queens",
    "Albert",
    "Grange",
    "Manor",
    "Orchard",
    "Chapel",
    "Bridge",
    "Meadow",
    "Castle",
    "Green",
]
_CITIES = [
    ("Manchester", "England"),
    ("Leeds", "England"),
    ("Liverpool", "England"),
    ("Bristol", "England"),
    ("Glasgow", "Scotland"),
    ("Cardiff", "Wales"),
    ("Belfast", "Northern Ireland"),
    ("New Patienceburgh", "Austria"),
    ("Aliso Viejo", "San Marino"),
    ("Lake Charles", "Samoa"),
    ("Fort Shadburgh", "Germany"),
    ("Utica", "Guatemala"),
    ("Sayreville", "Turkey"),
]
_DISTRICTS = ["Avon", "Bedfordshire", "Buckinghamshire", "Cambridgeshire", "Cheshire", "Cumbria"]
_FIRST = [
    "Jeremie",
    "Deron",
    "Jeanette",
    "Ana",
    "Magdalena",
    "Korey",
    "Raphael",
    "Oswaldo",
    "Brody",
    "Jazmyn",
    "Meda",
    "Imani",
    "Stan",
    "Rick",
    "Flavio",
    "Tom",
    "Helen",
    "Ruth",
    "Priya",
    "Omar",
]
_LAST = [
    "Franey",
    "Beier",
    "Erdman",
    "Glover",
    "Zieme",
    "Rippin",
    "Rippin",
    "Bergnaum",
    "Ratke",
    "Kuhn",
    "Cremin",
    "Walsh",
    "Lehner",
    "Hudson",
    "Schmitt",
    "Patel",
    "Okafor",
    "Nguyen",
]
_DEPARTMENTS = [
    ("Sales", "Manchester"),
    ("Purchasing", "Manchester"),
    ("Production", "Leeds"),
    ("Dispatch", "Leds"),
    ("Finance", "Manchester"),
    ("Facilities", "Manchester"),
    ("Communications", "Leeds"),
    ("HR", "Leeds"),
]
_COMPANY_WORDS = [
    "Fahey",
    "Leannon",
    "Armstrong",
    "Kohler",
    "Frami",
    "Mraz",
    "Padberg",
    "Jacobi",
    "Yost",
    "Bechtelar",
    "Moore",
    "Hansen",
    "Grant",
    "Price",
    "Strosin",
    "Ullrich",
]
_COMPANY_KINDS = ["and Sons", "Inc", "LLC", "Group", "- Bode", "and Co", "Ltd"]
_DESIGN_WORDS = [
    "Wooden",
    "Bronze",
    "Soft",
    "Granite",
    "Concrete",
    "Frozen",
    "Rubber",
    "Fresh",
    "Plastic",
    "Steel",
    "Cotton",
    "Metal",
    "Fantastic",
    "Practical",
    "Tasty",
]


@dataclass(frozen=True)
class SeedSize:
    """Rows per table for a scale; scale 1 is the real ToteSys of 2024 (docs/reference/data-model.md)."""

    addresses: int
    counterparties: int
    staff: int
    designs: int
    sales_orders: int
    purchase_orders: int

    @classmethod
    def for_scale(cls, scale: float) -> SeedSize:
        if scale <= 0:
            msg = f"--scale must be positive (got {scale})"
            raise SourceError(msg)
        return cls(
            addresses=max(30, round(30 * scale)),
            counterparties=max(20, round(20 * scale)),
            staff=max(20, round(20 * scale)),
            designs=max(10, round(470 * scale)),
            sales_orders=max(1, round(11_000 * scale)),
            purchase_orders=max(1, round(4_600 * scale)),
        )


def _money(cents: np.ndarray) -> pa.Array:
    """Exact decimal(10,2) from integer cents: the 128-bit unscaled value, no float on the way."""
    words = np.zeros((len(cents), 2), dtype=np.int64)
    words[:, 0] = cents
    words[:, 1] = np.where(cents < 0, -1, 0)
    return pa.Array.from_buffers(pa.decimal128(10, 2), len(cents), [None, pa.py_buffer(words.tobytes())])


def _timestamps(values: np.ndarray) -> pa.Array:
    return pa.array(values.astype("datetime64[ms]")).cast(TIMESTAMP)


def _dates_text(values: np.ndarray) -> pa.Array:
    return pa.array(np.datetime_as_string(values.astype("datetime64[D]"), unit="D"))


def _pick(rng: np.random.Generator, words: list[str], n: int) -> np.ndarray:
    return np.array(words, dtype=object)[rng.integers(0, len(words), n)]


def generate_tables(scale: float, *, seed: int = 2024) -> Iterator[tuple[str, pa.Table]]:
    """Deterministic ToteSys rows for ``scale``, table by table in :data:`LOAD_ORDER`."""
    size = SeedSize.for_scale(scale)
    rng = np.random.default_rng(seed)
    dims_at = np.full(1, _START)

    def audit(n: int, created: np.ndarray | None = None) -> dict[str, pa.Array]:
        created = np.repeat(dims_at, n) if created is None else created
        return {"created_at": _timestamps(created), "last_updated": _timestamps(created)}

    n = size.addresses
    cities = rng.integers(0, len(_CITIES), n)
    yield (
        "address",
        pa.table(
            {
                "address_id": pa.array(np.arange(1, n + 1, dtype=np.int32)),
                "address_line_1": [f"{rng.integers(1, 999)} {s} Street" for s in _pick(rng, _STREETS, n)],
                "address_line_2": [None if rng.random() < 0.6 else f"{s} Court" for s in _pick(rng, _STREETS, n)],
                "district": [None if rng.random() < 0.5 else d for d in _pick(rng, _DISTRICTS, n)],
                "city": [_CITIES[c][0] for c in cities],
                "postal_code": [f"{rng.integers(10000, 99999)}-{rng.integers(1000, 9999)}" for _ in range(n)],
                "country": [_CITIES[c][1] for c in cities],
                "phone": [f"{rng.integers(1000, 9999)} {rng.integers(100000, 999999)}" for _ in range(n)],
                **audit(n),
            }
        ),
    )

    n = size.counterparties
    first, last = _pick(rng, _COMPANY_WORDS, n), _pick(rng, _COMPANY_KINDS, n)
    yield (
        "counterparty",
        pa.table(
            {
                "counterparty_id": pa.array(np.arange(1, n + 1, dtype=np.int32)),
                "counterparty_legal_name": [f"{a} {b}" for a, b in zip(first, last, strict=True)],
                "legal_address_id": pa.array(rng.integers(1, size.addresses + 1, n).astype(np.int32)),
                "commercial_contact": [
                    f"{a} {b}" for a, b in zip(_pick(rng, _FIRST, n), _pick(rng, _LAST, n), strict=True)
                ],
                "delivery_contact": [
                    f"{a} {b}" for a, b in zip(_pick(rng, _FIRST, n), _pick(rng, _LAST, n), strict=True)
                ],
                **audit(n),
            }
        ),
    )

    yield (
        "currency",
        pa.table(
            {
                "currency_id": pa.array([1, 2, 3], pa.int32()),
                "currency_code": ["GBP", "USD", "EUR"],
                **audit(3),
            }
        ),
    )

    yield (
        "department",
        pa.table(
            {
                "department_id": pa.array(np.arange(1, 9, dtype=np.int32)),
                "department_name": [name for name, _ in _DEPARTMENTS],
                "location": [place for _, place in _DEPARTMENTS],
                "manager": [f"{a} {b}" for a, b in zip(_pick(rng, _FIRST, 8), _pick(rng, _LAST, 8), strict=True)],
                **audit(8),
            }
        ),
    )

    n = size.designs
    design_created = np.sort(
        _START + rng.integers(0, int((_END - _START) / np.timedelta64(1, "ms")), n).astype("timedelta64[ms]")
    )
    words = _pick(rng, _DESIGN_WORDS, n)
    yield (
        "design",
        pa.table(
            {
                "design_id": pa.array(np.arange(1, n + 1, dtype=np.int32)),
                "design_name": list(words),
                "file_location": [f"/{w.lower()}" for w in _pick(rng, ["usr", "private", "opt", "srv"], n)],
                "file_name": [f"{w.lower()}-{i:06x}.json" for i, w in enumerate(words, start=1)],
                **audit(n, design_created),
            }
        ),
    )

    n = size.staff
    firsts, lasts = _pick(rng, _FIRST, n), _pick(rng, _LAST, n)
    yield (
        "staff",
        pa.table(
            {
                "staff_id": pa.array(np.arange(1, n + 1, dtype=np.int32)),
                "first_name": list(firsts),
                "last_name": list(lasts),
                "department_id": pa.array(rng.integers(1, 9, n).astype(np.int32)),
                "email_address": [
                    f"{a.lower()}.{b.lower()}{i}@terrifictotes.com"
                    for i, (a, b) in enumerate(zip(firsts, lasts, strict=True))
                ],
                **audit(n),
            }
        ),
    )

    span_ms = int((_END - _START) / np.timedelta64(1, "ms"))
    orders = {}
    for kind, count in (("sales", size.sales_orders), ("purchase", size.purchase_orders)):
        created = np.sort(_START + rng.integers(0, span_ms, count).astype("timedelta64[ms]"))
        day = created.astype("datetime64[D]")
        orders[kind] = {
            "created": created,
            "counterparty_id": rng.integers(1, size.counterparties + 1, count).astype(np.int32),
            "currency_id": rng.integers(1, 4, count).astype(np.int32),
            "delivery": day + rng.integers(1, 15, count),
            "payment": day + rng.integers(0, 15, count),
            "location": rng.integers(1, size.addresses + 1, count).astype(np.int32),
        }

    s = orders["sales"]
    n = size.sales_orders
    units = rng.integers(1_000, 100_001, n)
    price_cents = rng.integers(200, 401, n)
    s["amount_cents"] = units * price_cents
    yield (
        "sales_order",
        pa.table(
            {
                "sales_order_id": pa.array(np.arange(1, n + 1, dtype=np.int32)),
                "design_id": pa.array(rng.integers(1, size.designs + 1, n).astype(np.int32)),
                "staff_id": pa.array(rng.integers(1, size.staff + 1, n).astype(np.int32)),
                "counterparty_id": pa.array(s["counterparty_id"]),
                "units_sold": pa.array(units.astype(np.int32)),
                "unit_price": _money(price_cents),
                "currency_id": pa.array(s["currency_id"]),
                "agreed_delivery_date": _dates_text(s["delivery"]),
                "agreed_payment_date": _dates_text(s["payment"]),
                "agreed_delivery_location_id": pa.array(s["location"]),
                **audit(n, s["created"]),
            }
        ),
    )

    p = orders["purchase"]
    n = size.purchase_orders
    quantity = rng.integers(1, 1_001, n)
    unit_cents = rng.integers(300, 100_001, n)
    p["amount_cents"] = quantity * unit_cents
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"), dtype="<U1")
    codes = letters[rng.integers(0, len(letters), (n, 7))].view("<U7").ravel()
    yield (
        "purchase_order",
        pa.table(
            {
                "purchase_order_id": pa.array(np.arange(1, n + 1, dtype=np.int32)),
                "staff_id": pa.array(rng.integers(1, size.staff + 1, n).astype(np.int32)),
                "counterparty_id": pa.array(p["counterparty_id"]),
                "item_code": pa.array(codes.tolist()),
                "item_quantity": pa.array(quantity.astype(np.int32)),
                "item_unit_price": _money(unit_cents),
                "currency_id": pa.array(p["currency_id"]),
                "agreed_delivery_date": _dates_text(p["delivery"]),
                "agreed_payment_date": _dates_text(p["payment"]),
                "agreed_delivery_location_id": pa.array(p["location"]),
                **audit(n, p["created"]),
            }
        ),
    )

    yield (
        "payment_type",
        pa.table(
            {
                "payment_type_id": pa.array([1, 2, 3, 4], pa.int32()),
                "payment_type_name": ["SALES_RECEIPT", "SALES_REFUND", "PURCHASE_PAYMENT", "PURCHASE_REFUND"],
                **audit(4),
            }
        ),
    )

    # One transaction per order, numbered in the order the orders were made.
    is_sale = np.concatenate([np.ones(size.sales_orders, bool), np.zeros(size.purchase_orders, bool)])
    order_id = np.concatenate([np.arange(1, size.sales_orders + 1), np.arange(1, size.purchase_orders + 1)])
    created = np.concatenate([s["created"], p["created"]])
    order = np.argsort(created, kind="stable")
    is_sale, order_id, created = is_sale[order], order_id[order], created[order]
    n = len(order)
    ids = np.arange(1, n + 1, dtype=np.int32)
    yield (
        "transaction",
        pa.table(
            {
                "transaction_id": pa.array(ids),
                "transaction_type": pa.array(np.where(is_sale, "SALE", "PURCHASE").tolist()),
                "sales_order_id": pa.array(np.where(is_sale, order_id, 0).astype(np.int32), mask=~is_sale),
                "purchase_order_id": pa.array(np.where(is_sale, 0, order_id).astype(np.int32), mask=is_sale),
                **audit(n, created),
            }
        ),
    )

    def by_order(field: str) -> np.ndarray:
        return np.where(
            is_sale, s[field][np.where(is_sale, order_id - 1, 0)], p[field][np.where(is_sale, 0, order_id - 1)]
        )

    payment_day = by_order("payment")
    refund = rng.random(n) < 0.03
    paid = payment_day < _END.astype("datetime64[D]") - rng.integers(0, 30, n)
    # A paid payment was updated when it was paid: its last_updated moved to its payment date.
    paid_at = np.maximum(created, payment_day.astype("datetime64[ms]") + np.timedelta64(9, "h"))
    last_updated = np.where(paid, np.minimum(paid_at, _END), created)
    yield (
        "payment",
        pa.table(
            {
                "payment_id": pa.array(ids),
                "transaction_id": pa.array(ids),
                "counterparty_id": pa.array(by_order("counterparty_id").astype(np.int32)),
                "payment_amount": _money(by_order("amount_cents")),
                "currency_id": pa.array(by_order("currency_id").astype(np.int32)),
                "payment_type_id": pa.array(
                    np.where(is_sale, np.where(refund, 2, 1), np.where(refund, 4, 3)).astype(np.int32)
                ),
                "paid": pa.array(paid),
                "payment_date": _dates_text(payment_day),
                "company_ac_number": pa.array(rng.integers(10_000_000, 100_000_000, n).astype(np.int32)),
                "counterparty_ac_number": pa.array(rng.integers(10_000_000, 100_000_000, n).astype(np.int32)),
                "created_at": _timestamps(created),
                "last_updated": _timestamps(last_updated),
            }
        ),
    )


def seed_generated(
    connection: adbc_postgres.Connection,
    scale: float,
    *,
    seed: int = 2024,
    replace: bool = False,
    delta_indexes: bool = False,
) -> dict[str, int]:
    """Create the schema and bulk-load generated data; returns rows per table."""
    create_schema(connection, replace=replace)
    counts = {}
    for table, data in generate_tables(scale, seed=seed):
        counts[table] = ingest_rows(connection, table, data)
        log.debug("seeded %s: %d rows", table, counts[table])
    connection.commit()
    finish_schema(connection, delta_indexes=delta_indexes)
    return counts


# --- the real database, from a pg_dump -------------------------------------------------------------

_COPY_HEADER = re.compile(r"^COPY (?:public\.)?\"?(\w+)\"? \(([^)]*)\) FROM stdin;$")
_COPY_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}


def _unescape_copy_text(value: str) -> str | None:
    if value == "\\N":
        return None
    if "\\" not in value:
        return value
    return re.sub(r"\\(.)", lambda m: _COPY_ESCAPES.get(m.group(1), m.group(1)), value)


def read_dump_blocks(path: Path) -> Iterator[tuple[str, list[str], list[list[str | None]]]]:
    """(table, columns, rows) of every COPY block of a plain pg_dump (gzip or not)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        table: str | None = None
        columns: list[str] = []
        rows: list[list[str | None]] = []
        for line in handle:
            line = line.rstrip("\n")
            if table is None:
                header = _COPY_HEADER.match(line)
                if header:
                    table = header.group(1)
                    columns = [c.strip().strip('"') for c in header.group(2).split(",")]
                    rows = []
            elif line == "\\.":
                yield table, columns, rows
                table = None
            else:
                rows.append([_unescape_copy_text(v) for v in line.split("\t")])


def _cast_expression(table: str, column: str, arrow_type: pa.DataType) -> str:
    quoted = quote_ident(column)
    enum = SOURCE_ENUM_COLUMNS.get((table, column))
    if enum:
        return f"staged.{quoted}::{quote_ident(enum)}"
    if pa.types.is_integer(arrow_type):
        # The dump writes some integer ids as 6926.0.
        return f"staged.{quoted}::numeric::integer"
    if pa.types.is_decimal(arrow_type):
        return f"staged.{quoted}::numeric(10, 2)"
    if pa.types.is_timestamp(arrow_type):
        return f"staged.{quoted}::timestamp(3)"
    if pa.types.is_boolean(arrow_type):
        return f"staged.{quoted}::boolean"
    return f"staged.{quoted}"


def seed_from_dump(
    connection: adbc_postgres.Connection, path: Path, *, replace: bool = False, delta_indexes: bool = False
) -> dict[str, int]:
    """Create the schema and load a real ToteSys pg_dump into it with the canonical types."""
    if not path.exists():
        msg = f"dump file {path} does not exist"
        raise SourceError(msg)
    create_schema(connection, replace=replace)
    counts: dict[str, int] = {}
    with connection.cursor() as cursor:
        for table, columns, rows in read_dump_blocks(path):
            if table not in SOURCE_TABLES:
                continue
            schema = SOURCE_TABLES[table].schema
            unknown = set(columns) - set(schema.names)
            if unknown:
                msg = f"dump table {table} has columns the spec does not know: {sorted(unknown)}"
                raise SourceError(msg)
            staging = f"_totes_import_{table}"
            text = pa.table({c: pa.array([r[i] for r in rows], pa.string()) for i, c in enumerate(columns)})
            copy_rows(cursor, staging, text, mode="create", temporary=True)
            cursor.execute(
                SANDBOX_SQL.read("insert_imported_rows").format(
                    table=quote_ident(table),
                    columns=", ".join(quote_ident(c) for c in columns),
                    casts=", ".join(_cast_expression(table, c, schema.field(c).type) for c in columns),
                    staging=quote_ident(staging),
                )
            )
            counts[table] = len(rows)
            log.info("imported %s: %d rows", table, len(rows))
    connection.commit()
    missing = set(SOURCE_TABLES) - set(counts)
    if missing:
        msg = f"dump {path} has no COPY data for {sorted(missing)}"
        raise SourceError(msg)
    finish_schema(connection, delta_indexes=delta_indexes)
    return counts


# --- churn -----------------------------------------------------------------------------------------


def churn(connection: adbc_postgres.Connection, *, orders: int) -> None:
    """One round of business activity, in one transaction: ``orders`` new sales orders (and half as
    many purchase orders) with their transactions and payments, payments flipping to paid, order
    amendments, a counterparty's address and a department changing, new designs, and one unpaid
    sales order cancelled (its payment, transaction and order hard-deleted)."""
    if orders < 1:
        msg = f"--orders must be at least 1 (got {orders})"
        raise SourceError(msg)
    found = existing_tables(connection)
    if len(found) < len(SOURCE_TABLES):
        msg = "the source has no ToteSys schema: run `totes seed` first"
        raise SourceError(msg)
    with connection.cursor() as cursor:
        for statement in SANDBOX_SQL.statements("churn_source"):
            cursor.execute(statement, parameters=(orders,))
    connection.commit()
