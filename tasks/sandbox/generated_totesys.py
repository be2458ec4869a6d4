"""Deterministic, realistic ToteSys data: at ``scale=1`` its size and shape match the real database
(docs/reference/data-model.md), the same rows for the same scale and seed. Pure: the tables as
Arrow, for totesys.py to bulk-load.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from tasks.schema import TIMESTAMP

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
            raise ValueError(msg)
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
