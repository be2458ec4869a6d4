"""Rows as a read of the source yields them (tasks/ingest/source.py ``SourceRows``): masked, and
indexed by the server's content hash or, for a table with PII columns, by a keyed hash of the masked
row. No I/O."""

from __future__ import annotations

from tasks.ingest.content import CONTENT_HASH, keyed_content_hashes
from tasks.ingest.pii import PiiPolicy, keyed_hash, mask_pii
from tasks.ingest.source import SourceRows
from tests.unit.ingest.conftest import HASHED, KEY, STAFF, staff_read


def test_a_table_with_pii_is_indexed_by_the_keyed_hash_of_the_masked_row_others_by_the_servers():
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
