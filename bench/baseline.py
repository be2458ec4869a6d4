"""(c) The baseline: the pipeline our users hand-build today, in the shape of the usual Lambda trio.

extract: pg8000 reads every ToteSys table whole and writes it as a JSON file (what the ingest Lambda
writes to S3); transform: pandas reads the JSON and builds the star tables; load: pg8000 inserts them
row by row. The load stops at ``--insert-seconds`` (a full load at scale 100 would take hours); the
figure reported is the warehouse rows it wrote per second of its whole run, and the time it would
take to load every row at the rate it reached.

Usage: python -m bench.baseline SOURCE_URL WAREHOUSE_URL WORK_DIR [--insert-seconds N]   (one JSON line)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pandas as pd
import pg8000.dbapi
import pycountry

from tasks.core.postgres import connect
from tasks.core.warehouse import migrate_warehouse_schema as migrate
from tasks.schema import SOURCE_TABLES


def pg8000_connect(url: str) -> pg8000.dbapi.Connection:
    parts = urlsplit(url)
    host = parse_qs(parts.query).get("host", [parts.hostname or "localhost"])[0]
    options = {
        "user": unquote(parts.username or "postgres"),
        "password": unquote(parts.password) if parts.password else None,
        "database": parts.path.lstrip("/"),
    }
    if host.startswith("/"):
        options["unix_sock"] = f"{host}/.s.PGSQL.{parts.port or 5432}"
    else:
        options.update(host=host, port=parts.port or 5432)
    return pg8000.dbapi.connect(**options)


def extract(source_url: str, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    connection = pg8000_connect(source_url)
    cursor = connection.cursor()
    for table in SOURCE_TABLES:
        # bandit B608: table names from tasks/schema.py
        cursor.execute(f'select * from "{table}"')  # nosec B608
        names = [column[0] for column in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        with open(folder / f"{table}.json", "w") as handle:
            json.dump(rows, handle, default=str)
    connection.close()


def _read(folder: Path, table: str) -> pd.DataFrame:
    with open(folder / f"{table}.json") as handle:
        return pd.DataFrame(json.load(handle))


def _split_timestamps(frame: pd.DataFrame) -> pd.DataFrame:
    for column, prefix in (("created_at", "created"), ("last_updated", "last_updated")):
        stamp = pd.to_datetime(frame[column], format="ISO8601")
        frame[f"{prefix}_date"] = stamp.dt.date
        frame[f"{prefix}_time"] = stamp.dt.time
    return frame


def transform(folder: Path) -> dict[str, pd.DataFrame]:
    t = {table: _read(folder, table) for table in SOURCE_TABLES}
    star: dict[str, pd.DataFrame] = {}
    star["dim_currency"] = t["currency"].assign(
        currency_name=t["currency"]["currency_code"].map(
            lambda code: getattr(pycountry.currencies.get(alpha_3=code), "name", "Unknown")
        )
    )[["currency_id", "currency_code", "currency_name"]]
    star["dim_staff"] = t["staff"].merge(t["department"], on="department_id")[
        ["staff_id", "first_name", "last_name", "department_name", "location", "email_address"]
    ]
    star["dim_location"] = t["address"].rename(columns={"address_id": "location_id"})[
        ["location_id", "address_line_1", "address_line_2", "district", "city", "postal_code", "country", "phone"]
    ]
    star["dim_design"] = t["design"][["design_id", "design_name", "file_location", "file_name"]]
    address = (
        t["address"]
        .add_prefix("counterparty_legal_")
        .rename(
            columns={
                "counterparty_legal_address_id": "legal_address_id",
                "counterparty_legal_phone": "counterparty_legal_phone_number",
            }
        )
    )
    star["dim_counterparty"] = t["counterparty"].merge(address, on="legal_address_id")[
        [
            "counterparty_id",
            "counterparty_legal_name",
            "counterparty_legal_address_line_1",
            "counterparty_legal_address_line_2",
            "counterparty_legal_district",
            "counterparty_legal_city",
            "counterparty_legal_postal_code",
            "counterparty_legal_country",
            "counterparty_legal_phone_number",
        ]
    ]
    star["dim_payment_type"] = t["payment_type"][["payment_type_id", "payment_type_name"]]
    star["dim_transaction"] = t["transaction"][
        ["transaction_id", "transaction_type", "sales_order_id", "purchase_order_id"]
    ].astype({"sales_order_id": "Int64", "purchase_order_id": "Int64"})
    sales = _split_timestamps(t["sales_order"]).rename(columns={"staff_id": "sales_staff_id"})
    star["fact_sales_order"] = sales[
        [
            "sales_order_id",
            "created_date",
            "created_time",
            "last_updated_date",
            "last_updated_time",
            "sales_staff_id",
            "counterparty_id",
            "units_sold",
            "unit_price",
            "currency_id",
            "design_id",
            "agreed_payment_date",
            "agreed_delivery_date",
            "agreed_delivery_location_id",
        ]
    ]
    purchases = _split_timestamps(t["purchase_order"])
    star["fact_purchase_order"] = purchases[
        [
            "purchase_order_id",
            "created_date",
            "created_time",
            "last_updated_date",
            "last_updated_time",
            "staff_id",
            "counterparty_id",
            "item_code",
            "item_quantity",
            "item_unit_price",
            "currency_id",
            "agreed_delivery_date",
            "agreed_payment_date",
            "agreed_delivery_location_id",
        ]
    ]
    payments = _split_timestamps(t["payment"])
    star["fact_payment"] = payments[
        [
            "payment_id",
            "created_date",
            "created_time",
            "last_updated_date",
            "last_updated_time",
            "transaction_id",
            "counterparty_id",
            "payment_amount",
            "currency_id",
            "payment_type_id",
            "paid",
            "payment_date",
        ]
    ]
    dates = pd.concat(
        [
            pd.to_datetime(frame[c].astype(str), format="ISO8601")
            for frame, columns in (
                (sales, ("created_date", "last_updated_date", "agreed_payment_date", "agreed_delivery_date")),
                (purchases, ("created_date", "last_updated_date", "agreed_payment_date", "agreed_delivery_date")),
                (payments, ("created_date", "last_updated_date", "payment_date")),
            )
            for c in columns
        ]
    )
    days = pd.date_range(dates.min(), dates.max(), freq="D")
    star["dim_date"] = pd.DataFrame(
        {
            "date_id": days.date,
            "year": days.year,
            "month": days.month,
            "day": days.day,
            "day_of_week": days.isocalendar().day.to_numpy(),
            "day_name": days.day_name(),
            "month_name": days.month_name(),
            "quarter": days.quarter,
        }
    )
    return star


def load(warehouse_url: str, star: dict[str, pd.DataFrame], *, deadline: float) -> int:
    with connect(warehouse_url) as connection:
        migrate(connection)  # the same DDL as totes, so both write the same tables
    connection = pg8000_connect(warehouse_url)
    cursor = connection.cursor()
    inserted = 0
    for table in sorted(star, key=lambda name: (not name.startswith("dim_"), name)):
        frame = star[table]
        columns = ", ".join(f'"{c}"' for c in frame.columns)
        # bandit B608: names from our own star frames
        statement = (
            f'insert into "{table}" ({columns}, _batch_id) values ({", ".join(["%s"] * (len(frame.columns) + 1))})'  # nosec B608
        )
        for row in frame.itertuples(index=False, name=None):
            if time.perf_counter() > deadline:
                connection.commit()
                return inserted
            cursor.execute(statement, (*(None if pd.isna(v) else v for v in row), "baseline"))
            inserted += 1
        connection.commit()
    return inserted


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("source_url")
    parser.add_argument("warehouse_url")
    parser.add_argument("work_dir", type=Path)
    parser.add_argument("--insert-seconds", type=float, default=60.0)
    args = parser.parse_args()
    started = time.perf_counter()
    extract(args.source_url, args.work_dir)
    extracted = time.perf_counter()
    star = transform(args.work_dir)
    transformed = time.perf_counter()
    total = sum(len(frame) for frame in star.values())
    inserted = load(args.warehouse_url, star, deadline=transformed + args.insert_seconds)
    finished = time.perf_counter()
    insert_rate = inserted / max(finished - transformed, 1e-9)
    print(
        json.dumps(
            {
                "rows": inserted,
                "rows_total": total,
                "complete": inserted == total,
                "tables": {name: len(frame) for name, frame in star.items()},
                "extract_seconds": extracted - started,
                "transform_seconds": transformed - extracted,
                "insert_seconds": finished - transformed,
                "seconds": finished - started,
                "projected_seconds": (transformed - started) + total / max(insert_rate, 1e-9),
            }
        )
    )


if __name__ == "__main__":
    main()
