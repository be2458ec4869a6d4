"""Shared by the ingest room's tests: a moment, the PII hash key, and staff rows as a read of the
source returns them."""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa

from tasks.ingest.content import CONTENT_HASH
from tasks.schema import SOURCE_TABLES

NOW = datetime(2024, 2, 23, 12, 0, 0)
KEY = b"k3y-from-the-secret-store"
STAFF = SOURCE_TABLES["staff"]
HASHED = {"staff.email_address": "hash"}


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
