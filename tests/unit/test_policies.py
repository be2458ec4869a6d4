"""The schema-drift and PII policies: what the settings accept and refuse, and what masking does to
rows. Pure: no I/O."""

from __future__ import annotations

import hashlib
import hmac

import pyarrow as pa
import pytest
from pydantic import ValidationError

from tasks.ingest.drift import schema_drift
from tasks.ingest.pii import PiiPolicy, mask_pii
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
