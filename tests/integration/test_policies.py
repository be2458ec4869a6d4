"""PII policies end to end (``TOTES_PII_COLUMNS``): a hashed or excluded source column never reaches
the lake (raw, star, quarantine, statistics) nor the warehouse; hashes are the keyed HMAC, so equal
values stay equal across runs. (The schema-drift policy is tested in test_pipeline's drift test.)"""

from __future__ import annotations

import hashlib
import hmac
import json

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.core.lake import Lake
from tasks.core.postgres import connect
from tests.integration.conftest import execute

KEY = "pii-key-from-the-secret-store"


def hashed(value: str) -> str:
    return hmac.new(KEY.encode(), value.encode(), hashlib.sha256).hexdigest()


def values(url: str, query: str) -> list:
    """The first column of ``query``'s rows."""
    with connect(url) as connection, connection.cursor() as cursor:
        cursor.execute(query)
        return [row[0] for row in cursor.fetchall()]


def strings_in_the_lake(lake_url: str) -> tuple[dict[str, set[str]], bytes]:
    """Per column name, every string value of every Parquet file of the lake; all the lake's bytes."""
    lake = Lake.from_url(lake_url)
    lake.fs.invalidate_cache()
    found: dict[str, set[str]] = {}
    everything = b""
    for path in lake.fs.find(lake.root):
        data = lake.fs.cat_file(path)
        everything += data
        if path.endswith(".parquet"):
            table = pq.read_table(pa.BufferReader(data))
            for name, column in zip(table.column_names, table.columns, strict=True):
                if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
                    found.setdefault(name, set()).update(v for v in column.to_pylist() if v is not None)
    return found, everything


def test_hashed_and_excluded_columns_never_reach_the_lake_or_the_warehouse(pipeline, monkeypatch):
    monkeypatch.setenv(
        "TOTES_PII_COLUMNS",
        json.dumps(
            {"staff.email_address": "hash", "address.phone": "hash", "counterparty.delivery_contact": "exclude"}
        ),
    )
    monkeypatch.setenv("TOTES_PII_HASH_KEY", KEY)
    pipeline.seed(scale=0.02)
    pipeline.run()
    # A staff row the transform sets aside (its copy in the star zone's quarantine holds the email
    # too), and churn that changes addresses.
    execute(
        pipeline.source_url,
        "alter table staff alter column first_name drop not null",
        "update staff set first_name = null, last_updated = (now() at time zone 'UTC') where staff_id = 1",
    )
    pipeline.churn(orders=10)
    pipeline.run()

    emails = set(values(pipeline.source_url, "select email_address from staff"))
    phones = set(values(pipeline.source_url, "select phone from address"))
    assert emails and phones
    in_the_lake, everything = strings_in_the_lake(pipeline.lake_url)
    every_string = set().union(*in_the_lake.values())
    for secret in emails | phones:
        assert secret not in every_string, secret
        assert secret.encode() not in everything, secret  # not in statistics or metadata either
    assert in_the_lake["email_address"] == {hashed(e) for e in emails}
    assert in_the_lake["delivery_contact"] == set()  # read as NULL in every file: no value at all
    assert values(pipeline.source_url, "select count(delivery_contact) from counterparty")[0] > 0

    # The warehouse holds the hashes (staff 1's earlier version stays while its new one is set aside).
    staff = set(values(pipeline.warehouse_url, "select email_address from dim_staff where _deleted_at is null"))
    assert staff == {hashed(e) for e in emails}
    located = values(pipeline.warehouse_url, "select phone from dim_location order by location_id")
    assert located == [hashed(p) for p in values(pipeline.source_url, "select phone from address order by address_id")]
    summary = pipeline.run()  # nothing changed: the hashed values are not taken for changes
    assert not any(summary.ingested.values())
