"""The schema-drift and PII policies: what the settings accept and refuse, and what masking does to
rows. Pure: no I/O."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

import pyarrow as pa
import pytest
from pydantic import ValidationError

from tasks.ingest.content import CONTENT_HASH, keyed_content_hashes
from tasks.ingest.drift import schema_drift
from tasks.ingest.pii import PiiPolicy, keyed_hash, mask_pii
from tasks.ingest.source import SourceRows
from tasks.schema import SOURCE_TABLES
from tasks.settings import TotesSettings

pytestmark = pytest.mark.unit

KEY = b"k3y-from-the-secret-store"


def staff_rows() -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(
        {"staff_id": [1, 2, 3], "first_name": ["Ann", "Bo", "Cy"], "email_address": ["a@x.com", None, "a@x.com"]}
    )


class TestMasking:
    def test_hash_is_the_keyed_hmac_nulls_stay_null_and_equal_values_stay_equal(self):
        masked = mask_pii(staff_rows(), "staff", PiiPolicy.of({"staff.email_address": "hash"}, KEY))
        emails = masked.column("email_address").to_pylist()
        assert emails[0] == hmac.new(KEY, b"a@x.com", hashlib.sha256).hexdigest()
        assert emails[1] is None and emails[2] == emails[0]
        assert masked.column("first_name").to_pylist() == ["Ann", "Bo", "Cy"]  # other columns as read
        assert masked.schema == staff_rows().schema

    def test_another_key_gives_other_hashes(self):
        one = mask_pii(staff_rows(), "staff", PiiPolicy.of({"staff.email_address": "hash"}, KEY))
        other = mask_pii(staff_rows(), "staff", PiiPolicy.of({"staff.email_address": "hash"}, b"another"))
        assert one.column("email_address")[0] != other.column("email_address")[0]

    def test_exclude_reads_null_and_tables_without_a_policy_are_untouched(self):
        rows = pa.table({"counterparty_id": [1], "delivery_contact": ["Jo Smith"]})
        policy = PiiPolicy.of({"counterparty.delivery_contact": "exclude"}, None)
        assert mask_pii(rows, "counterparty", policy).column("delivery_contact").to_pylist() == [None]
        assert mask_pii(staff_rows(), "staff", policy).equals(staff_rows())

    def test_a_hash_policy_without_a_key_is_refused(self):
        with pytest.raises(ValueError, match="needs a key"):
            PiiPolicy.of({"staff.email_address": "hash"}, None)


def staff_read(emails: list[str | None], first_names: list[str | None] | None = None) -> pa.RecordBatch:
    """Staff rows as a read of the source returns them: the model's columns and the server's hash."""
    count = len(emails)
    stamp = datetime(2024, 5, 1, 12, 30, 0, 250)
    return pa.RecordBatch.from_pydict(
        {
            "staff_id": pa.array(range(1, count + 1), pa.int32()),
            "first_name": first_names or ["Ann"] * count,
            "last_name": ["Lee"] * count,
            "department_id": pa.array([3] * count, pa.int32()),
            "email_address": emails,
            "created_at": pa.array([stamp] * count, pa.timestamp("us")),
            "last_updated": pa.array([stamp] * count, pa.timestamp("us")),
            CONTENT_HASH: pa.array(range(100, 100 + count), pa.int64()),
        }
    )


STAFF = SOURCE_TABLES["staff"]
HASHED = {"staff.email_address": "hash"}


class TestContentIndexOfPiiTables:
    """The content index of a table with PII columns holds a keyed hash of the masked row: nobody
    without the key can compute it, so nobody can test a guess of a value against it."""

    def test_a_table_with_pii_is_indexed_by_the_keyed_hash_of_the_masked_row_others_by_the_servers(self):
        policy = PiiPolicy.of(HASHED, KEY)
        batch = staff_read(["a@x.com", "b@x.com"])
        read = SourceRows.read(batch, STAFF, policy)
        masked = mask_pii(batch, "staff", policy)
        expected = keyed_content_hashes(masked, STAFF, policy.content_key("staff"))
        assert read.index.column(CONTENT_HASH).to_pylist() == expected.to_pylist()
        assert not set(read.index.column(CONTENT_HASH).to_pylist()) & {100, 101}  # not the server's
        assert read.rows.column("email_address").to_pylist() == [keyed_hash(KEY, "a@x.com"), keyed_hash(KEY, "b@x.com")]
        unmasked = SourceRows.read(batch, STAFF, PiiPolicy())
        assert unmasked.index.column(CONTENT_HASH).to_pylist() == [100, 101]

    def test_the_hash_needs_the_key_and_follows_every_column(self):
        policy = PiiPolicy.of(HASHED, KEY)
        masked = mask_pii(staff_read(["a@x.com", "a@x.com"], ["Ann", "Bo"]), "staff", policy)
        one = keyed_content_hashes(masked, STAFF, policy.content_key("staff")).to_pylist()
        assert one[0] != one[1]  # another first name
        assert keyed_content_hashes(masked, STAFF, b"a guessed key").to_pylist() != one
        assert keyed_content_hashes(masked, STAFF, b"").to_pylist() != one
        assert policy.content_key("staff") not in (KEY, b"")
        again = keyed_content_hashes(masked, STAFF, policy.content_key("staff"))
        assert again.to_pylist() == one and again.type == pa.int64()

    @pytest.mark.parametrize(
        ("first", "second"),
        [
            ((None, "Lee"), ("", "Lee")),  # NULL is not the empty string
            ((None, "Lee"), ("N", "Lee")),  # nor the text NULL is encoded as
            (("Ann", "Lee"), ("AnnL", "ee")),  # values do not run into each other
            (("1:a", "b"), ("1", ":ab")),
        ],
    )
    def test_rows_whose_columns_differ_never_encode_alike(self, first, second):
        batch = staff_read(["e", "e"], [first[0], second[0]])
        batch = batch.set_column(2, "last_name", pa.array([first[1], second[1]]))
        hashes = keyed_content_hashes(batch, STAFF, KEY).to_pylist()
        assert hashes[0] != hashes[1]

    def test_no_rows_no_hashes(self):
        assert keyed_content_hashes(staff_read([]), STAFF, KEY).to_pylist() == []

    def test_the_scheme_names_the_policy_and_the_keys_fingerprint_never_the_key(self):
        policy = PiiPolicy.of(
            {"staff.email_address": "hash", "counterparty.delivery_contact": "exclude", "address.phone": "hash"}, KEY
        )
        assert policy.content_scheme("sales_order") == "source"
        staff = policy.content_scheme("staff")
        assert staff == f"keyed:hash=email_address;key={policy.key_fingerprint()}"
        assert policy.content_scheme("counterparty") == "keyed:exclude=delivery_contact"  # unkeyed
        assert KEY.decode() not in staff and KEY.hex() not in staff
        rotated = PiiPolicy.of({"staff.email_address": "hash"}, b"another key")
        assert rotated.content_scheme("staff") != staff  # a rotation rewrites the index
        wider = PiiPolicy.of({"staff.email_address": "hash", "staff.last_name": "hash"}, KEY)
        assert wider.content_scheme("staff") != staff  # so does another policy for the table

    @pytest.mark.parametrize("hashes_elsewhere", [False, True])
    def test_excluded_columns_alone_hash_unkeyed_what_the_lake_holds(self, hashes_elsewhere):
        columns = {"counterparty.delivery_contact": "exclude"} | (
            {"staff.email_address": "hash"} if hashes_elsewhere else {}
        )
        policy = PiiPolicy.of(columns, KEY if hashes_elsewhere else None)
        assert policy.content_scheme("counterparty") == "keyed:exclude=delivery_contact"
        assert policy.content_key("counterparty") == b""


class TestPolicySettings:
    def test_pii_columns_the_model_cannot_take_are_refused_with_the_reason(self, monkeypatch):
        monkeypatch.setenv(
            "TOTES_PII_COLUMNS",
            '{"staff.email_address": "exclude", "sales_order.agreed_payment_date": "hash", "staff.nope": "hash"}',
        )
        with pytest.raises(ValidationError) as refused:
            TotesSettings()
        message = str(refused.value)
        assert (
            "staff.email_address cannot be excluded: the model needs a value there (NOT NULL); hash it instead"
            in message
        )
        assert "sales_order.agreed_payment_date cannot be hashed" in message
        assert "'staff.nope' is not a source column" in message

    def test_hashing_needs_a_key_and_the_key_is_a_secret(self, monkeypatch):
        monkeypatch.setenv("TOTES_PII_COLUMNS", '{"staff.email_address": "hash"}')
        with pytest.raises(ValueError, match="TOTES_PII_HASH_KEY"):
            TotesSettings().require_pii_hash_key()
        monkeypatch.setenv("TOTES_PII_HASH_KEY", "s3cr3t-key")
        settings = TotesSettings()
        assert settings.require_pii_hash_key() == b"s3cr3t-key"
        assert "s3cr3t-key" in settings.secrets()  # scrubbed from messages like the passwords
        assert "s3cr3t-key" not in repr(settings)

    def test_drift_policy_per_table_with_a_default(self, monkeypatch):
        monkeypatch.setenv("TOTES_SCHEMA_DRIFT_POLICY", '{"*": "freeze", "design": "warn"}')
        assert TotesSettings().frozen_tables() == frozenset(SOURCE_TABLES) - {"design"}
        monkeypatch.setenv("TOTES_SCHEMA_DRIFT_POLICY", '{"sales_orders": "freeze"}')
        with pytest.raises(ValidationError, match="unknown source table"):
            TotesSettings()


class TestFrozenDrift:
    def columns(self) -> dict[str, dict[str, str]]:
        found = {name: dict.fromkeys(table.columns, "text") for name, table in SOURCE_TABLES.items()}
        for name, table in SOURCE_TABLES.items():
            for field in table.schema:
                found[name][field.name] = {
                    "int32": "integer",
                    "string": "text",
                    "timestamp[us]": "timestamp without time zone",
                    "date32[day]": "date",
                    "bool": "boolean",
                }.get(str(field.type), "numeric")
        found["design"]["colour"] = "text"
        return found

    def test_a_new_column_warns_unless_its_table_is_frozen(self):
        errors, warnings = schema_drift(self.columns())
        assert errors == [] and len(warnings) == 1 and "design has new column(s) colour" in warnings[0]
        errors, warnings = schema_drift(self.columns(), frozen=frozenset({"design"}))
        assert warnings == [] and len(errors) == 1 and "policy is freeze" in errors[0]
        assert schema_drift(self.columns(), frozen=frozenset({"staff"}))[0] == []
