"""The PII policy (tasks/ingest/pii.py): what masking does to rows, and the content scheme a policy
gives each table. Pure: no I/O."""

from __future__ import annotations

import hashlib
import hmac

import pyarrow as pa
import pytest

from tasks.ingest.pii import PiiPolicy, mask_pii
from tests.unit.ingest.conftest import KEY


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


class TestContentScheme:
    """The scheme of a table's content index names its policy and the key's fingerprint: another
    policy or key rewrites the index."""

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
