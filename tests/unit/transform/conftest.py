"""Hand-built source rows for the transform's tests: a frame with a source table's raw-zone schema,
and one row of each source table the star tables are built from (columns not given are defaults)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import polars as pl

from tasks.schema import SOURCE_TABLES

T0 = datetime(2024, 2, 1, 9, 30, 15, 123000)
T1 = datetime(2024, 2, 2, 10, 0, 0, 500000)


def source(table: str, rows: list[dict]) -> pl.DataFrame:
    """A frame with the raw-zone schema of ``table``; columns not given are NULL."""
    schema = SOURCE_TABLES[table].schema
    frame = pl.from_arrow(schema.empty_table())
    if not rows:
        return frame
    filled = [{name: row.get(name) for name in schema.names} for row in rows]
    return pl.DataFrame(filled, schema=frame.schema)


def sales_order(order_id: int, last_updated: datetime, **values) -> dict:
    return {
        "sales_order_id": order_id,
        "design_id": 3,
        "staff_id": 7,
        "counterparty_id": 2,
        "units_sold": 1500,
        "unit_price": Decimal("2.49"),
        "currency_id": 1,
        "agreed_delivery_date": "2024-02-10",
        "agreed_payment_date": "2024-02-12",
        "agreed_delivery_location_id": 5,
        "created_at": T0,
        "last_updated": last_updated,
        **values,
    }


def address(address_id: int, last_updated: datetime = T0, **values) -> dict:
    return {
        "address_id": address_id,
        "address_line_1": f"{address_id} Mill Street",
        "address_line_2": None,
        "district": None,
        "city": "Leeds",
        "postal_code": "LS1 1AA",
        "country": "England",
        "phone": "0113 000000",
        "created_at": T0,
        "last_updated": last_updated,
        **values,
    }


def counterparty(counterparty_id: int, legal_address_id: int, last_updated: datetime = T0) -> dict:
    return {
        "counterparty_id": counterparty_id,
        "counterparty_legal_name": f"Company {counterparty_id}",
        "legal_address_id": legal_address_id,
        "created_at": T0,
        "last_updated": last_updated,
    }


def staff(staff_id: int, department_id: int, last_updated: datetime = T0) -> dict:
    return {
        "staff_id": staff_id,
        "first_name": "Ana",
        "last_name": "Glover",
        "department_id": department_id,
        "email_address": "ana.glover@terrifictotes.com",
        "created_at": T0,
        "last_updated": last_updated,
    }


def department(department_id: int, name: str, location: str | None, last_updated: datetime = T0) -> dict:
    return {
        "department_id": department_id,
        "department_name": name,
        "location": location,
        "manager": "Someone",
        "created_at": T0,
        "last_updated": last_updated,
    }
