"""PII policies end to end (``TOTES_PII_COLUMNS``): a hashed or excluded source column never reaches
the lake (raw, star, quarantine, statistics) nor the warehouse; hashes are the keyed HMAC, so equal
values stay equal across runs; the content index lets nobody test a guessed value. (The schema-drift
policy is tested in test_pipeline's drift test.)"""

from __future__ import annotations

import hashlib
import hmac
import json

import boto3
import pyarrow as pa
import pyarrow.parquet as pq

from flows.etl import totesys_etl
from tasks.core.lake import RAW, Lake
from tasks.core.manifests import RawTableEntry
from tasks.core.postgres import connect, fetch_rows
from tasks.ingest.pii import PiiPolicy
from tasks.ingest.reconcile import read_index
from tasks.ingest.source import connect_source
from tasks.schema import SOURCE_TABLES
from tests.integration.conftest import execute, scalar

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


# What the source server hashes for each staff row (the content index's hash of a table without PII).
SERVER_ROW_HASH = (
    "hashtextextended(row(staff_id, first_name, last_name, department_id, email_address, created_at, "
    "last_updated)::text, 0)"
)
# The attack: the row as the lake holds it, with a guessed e-mail address, hashed as the server does,
# on any PostgreSQL.
GUESS_HASH = (
    "select hashtextextended(row($1::integer, $2::text, $3::text, $4::integer, $5::text, $6::timestamp, "
    "$7::timestamp)::text, 0)"
)
HASH_EMAILS = {"staff.email_address": "hash"}


def servers_row_hashes(source_url: str) -> dict[int, int]:
    """Per staff_id, the server's hash of the row as the source holds it, the e-mail in the clear."""
    with connect_source(source_url) as connection:
        return dict(fetch_rows(connection, f"select staff_id, {SERVER_ROW_HASH} from staff"))


def guess_matches(any_postgres: str, lake_row: dict, guessed_email: str, index_hash: int) -> bool:
    """Whether the row the lake holds, with ``guessed_email`` put back, hashes to the index's hash."""
    columns = ("staff_id", "first_name", "last_name", "department_id", "email_address", "created_at", "last_updated")
    values = tuple(guessed_email if column == "email_address" else lake_row[column] for column in columns)
    with connect_source(any_postgres) as connection:
        ((guessed,),) = fetch_rows(connection, GUESS_HASH, values)
    return guessed == index_hash


def index_files(lake_url: str, table: str) -> set[str]:
    """Every object of ``table``'s content index folder, relative to the lake's root."""
    lake = Lake.from_url(lake_url)
    lake.fs.invalidate_cache()
    return {path.removeprefix(lake.root + "/") for path in lake.fs.find(lake.full(f"{RAW}/_content_{table}"))}


def index_hashes(lake_url: str, table: str) -> dict[int, int]:
    """Per key, the hash of the content index the newest manifest names."""
    index = read_index(Lake.from_url(lake_url), SOURCE_TABLES[table], newest_entry(lake_url, table).content)
    return dict(zip(index[SOURCE_TABLES[table].key[0]].to_list(), index["_content_hash"].to_list(), strict=True))


def every_index_hash(lake_url: str, table: str) -> set[int]:
    """Every hash of every file of ``table``'s content index folder, whatever a manifest names (a
    reader of the lake reads what is there)."""
    lake = Lake.from_url(lake_url)
    found: set[int] = set()
    for path in index_files(lake_url, table):
        found |= set(
            pq.read_table(pa.BufferReader(lake.fs.cat_file(lake.full(path)))).column("_content_hash").to_pylist()
        )
    return found


def newest_entry(lake_url: str, table: str) -> RawTableEntry:
    lake = Lake.from_url(lake_url)
    return lake.read_raw_manifest(lake.list_batches(RAW)[-1]).tables[table]


def lake_staff_row(lake_url: str, staff_id: int) -> dict:
    """Staff ``staff_id``'s newest version in the raw zone, as any reader of the lake sees it."""
    lake = Lake.from_url(lake_url)
    found = None
    for batch in lake.list_batches(RAW):
        for path in lake.read_raw_manifest(batch).files("staff"):
            for row in pq.read_table(pa.BufferReader(lake.fs.cat_file(lake.full(path)))).to_pylist():
                if row["staff_id"] == staff_id:
                    found = row
    assert found is not None
    return found


def test_the_content_index_lets_nobody_test_a_guessed_email_and_the_deep_pass_still_finds_changes(
    pipeline, monkeypatch
):
    """With staff.email_address hashed, the content index held the server's hash of each staff row,
    e-mail in the clear: the row as the lake holds it with a guessed address put back, hashed on any
    PostgreSQL, matched for the true address (on the code before, it did). Now no index file holds
    such a hash, and a change to the address made without a new last_updated is still found by
    ``totes reconcile``, which compares a table with PII columns row by row."""
    monkeypatch.setenv("TOTES_PII_COLUMNS", json.dumps(HASH_EMAILS))
    monkeypatch.setenv("TOTES_PII_HASH_KEY", KEY)
    pipeline.seed(scale=0.02)
    pipeline.run()

    plaintext = servers_row_hashes(pipeline.source_url)
    indexed = index_hashes(pipeline.lake_url, "staff")
    assert plaintext and indexed.keys() == plaintext.keys()
    assert not set(plaintext.values()) & every_index_hash(pipeline.lake_url, "staff")
    staff = min(plaintext)
    row = lake_staff_row(pipeline.lake_url, staff)
    email = scalar(pipeline.source_url, "select email_address from staff where staff_id = $1", staff)
    assert row["email_address"] == hashed(email)  # the lake holds the rest of the row as it is
    # The attack is sound (it recomputes the server's hash of the true row) and fails on the index.
    assert guess_matches(pipeline.warehouse_url, row, email, plaintext[staff])
    assert not guess_matches(pipeline.warehouse_url, row, email, indexed[staff])
    assert newest_entry(pipeline.lake_url, "staff").content_scheme.startswith("keyed:hash=email_address;key=")

    changed = f"renamed.{staff}@example.com"
    execute(pipeline.source_url, f"update staff set email_address = '{changed}' where staff_id = {staff}")
    summary = totesys_etl(reconcile=True)

    assert {name: rows for name, rows in summary.ingested.items() if rows} == {"staff": 1}
    url = pipeline.warehouse_url
    assert scalar(url, "select email_address from dim_staff where staff_id = $1", staff) == hashed(changed)
    assert not set(servers_row_hashes(pipeline.source_url).values()) & every_index_hash(pipeline.lake_url, "staff")
    again = totesys_etl(reconcile=True)
    assert not any(again.ingested.values()), again.ingested


def test_an_index_of_the_servers_hashes_is_rewritten_once_and_its_files_deleted(pipeline, monkeypatch, s3_endpoint):
    """A lake written before PII tables had keyed hashes: e-mails hashed in the rows, but the content
    index holds the server's hash of each row as it is. The first run rewrites staff's index under
    the policy (losing no change made without a stamp meanwhile), then deletes every old index file,
    every version of it (the lake's bucket is versioned, as deployments/terraform makes it); later
    runs rewrite nothing. A rotated key rewrites it again, and reads the staff rows again under it."""
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    bucket, prefix = pipeline.lake_url.removeprefix("s3://").split("/", 1)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    monkeypatch.setenv("TOTES_PII_COLUMNS", json.dumps(HASH_EMAILS))
    monkeypatch.setenv("TOTES_PII_HASH_KEY", KEY)
    with monkeypatch.context() as before:
        # As totes indexed before (the code before had no such method: nothing to replace there).
        before.setattr(PiiPolicy, "content_scheme", lambda self, table: "source", raising=False)
        pipeline.seed(scale=0.02)
        pipeline.run()
    plaintext = servers_row_hashes(pipeline.source_url)
    assert set(plaintext.values()) <= every_index_hash(pipeline.lake_url, "staff")  # every guess testable
    old_files = index_files(pipeline.lake_url, "staff")
    assert newest_entry(pipeline.lake_url, "staff").content_scheme == "source" and old_files
    fixed = min(plaintext)
    execute(pipeline.source_url, f"update staff set first_name = 'Fixed' where staff_id = {fixed}")
    batches = len(Lake.from_url(pipeline.lake_url).list_batches(RAW))

    summary = pipeline.run()

    entry = newest_entry(pipeline.lake_url, "staff")
    assert entry.content_scheme.startswith("keyed:hash=email_address;key=")
    assert index_files(pipeline.lake_url, "staff") == set(entry.content)
    assert not old_files & set(entry.content)
    listed = s3.list_object_versions(Bucket=bucket, Prefix=f"{prefix}/{RAW}/_content_staff/")
    versions = listed.get("Versions", []) + listed.get("DeleteMarkers", [])
    assert sorted(v["Key"].removeprefix(f"{prefix}/") for v in versions) == sorted(entry.content)
    assert not set(servers_row_hashes(pipeline.source_url).values()) & every_index_hash(pipeline.lake_url, "staff")
    assert index_hashes(pipeline.lake_url, "staff").keys() == plaintext.keys()
    # The fix made without a stamp is not lost to the rewrite: it arrives as the deep pass's would.
    assert {name: rows for name, rows in summary.ingested.items() if rows} == {"staff": 1}
    assert scalar(pipeline.warehouse_url, "select first_name from dim_staff where staff_id = $1", fixed) == "Fixed"
    assert len(Lake.from_url(pipeline.lake_url).list_batches(RAW)) == batches + 1

    again = pipeline.run()
    assert not any(again.ingested.values()), again.ingested
    assert len(Lake.from_url(pipeline.lake_url).list_batches(RAW)) == batches + 1, "the index was rewritten again"
    deep = totesys_etl(reconcile=True)
    assert not any(deep.ingested.values()), deep.ingested

    # A rotated key: the index is rewritten under it, and as its old hashes match nothing, the
    # staff rows are read again under the new key (the warehouse's current addresses follow it).
    rotated = "a-new-key-from-the-secret-store"
    monkeypatch.setenv("TOTES_PII_HASH_KEY", rotated)
    summary = pipeline.run()
    assert {name: rows for name, rows in summary.ingested.items() if rows} == {"staff": len(plaintext)}
    after = newest_entry(pipeline.lake_url, "staff")
    assert after.content_scheme.startswith("keyed:") and after.content_scheme != entry.content_scheme
    assert index_files(pipeline.lake_url, "staff") == set(after.content)
    emails = values(pipeline.source_url, "select email_address from staff")
    in_warehouse = values(pipeline.warehouse_url, "select email_address from dim_staff")
    assert sorted(in_warehouse) == sorted(
        hmac.new(rotated.encode(), e.encode(), hashlib.sha256).hexdigest() for e in emails
    )
    assert not any(pipeline.run().ingested.values())
