"""PII policies, applied to rows as they are read from the source, before anything reaches the lake:
a column ``exclude``d is read as NULL, a column ``hash``ed as the hex HMAC-SHA256 of its value under
the deployment's key (equal values stay equal, so joins, counts and changes still work; the value
cannot be recovered without the key, nor guessed by hashing candidates without it). Pure.

The raw zone, the star zone, their quarantines and the warehouse only ever see the masked values;
the source's own content hash of a row (reconciliation) is a hash of the row, never the value.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import pyarrow as pa

Rows = TypeVar("Rows", pa.RecordBatch, pa.Table)


@dataclass(frozen=True)
class PiiPolicy:
    """Per source table, the columns read as NULL and those read as keyed hashes."""

    excluded: dict[str, tuple[str, ...]] = field(default_factory=dict)
    hashed: dict[str, tuple[str, ...]] = field(default_factory=dict)
    key: bytes = b""

    @classmethod
    def of(cls, columns: Mapping[str, str], key: bytes | None) -> PiiPolicy:
        """From the settings' ``pii_columns`` ("table.column" -> "exclude" | "hash") and the hash key."""
        excluded: dict[str, tuple[str, ...]] = {}
        hashed: dict[str, tuple[str, ...]] = {}
        for column, how in sorted(columns.items()):
            table, _, name = column.partition(".")
            chosen = excluded if how == "exclude" else hashed
            chosen[table] = (*chosen.get(table, ()), name)
        if hashed and not key:
            msg = "a PII hash policy needs a key"
            raise ValueError(msg)
        return cls(excluded=excluded, hashed=hashed, key=key or b"")

    def masks(self, table: str) -> bool:
        return table in self.excluded or table in self.hashed


def mask_pii(rows: Rows, table: str, policy: PiiPolicy) -> Rows:
    """``rows`` of source table ``table`` with the policy's columns excluded or hashed (the schema
    is unchanged; columns the rows lack are left to the schema check)."""
    if not policy.masks(table):
        return rows
    for name in policy.excluded.get(table, ()):
        if name in rows.schema.names:
            position = rows.schema.get_field_index(name)
            rows = rows.set_column(
                position, rows.schema.field(position), pa.nulls(rows.num_rows, rows.schema.field(position).type)
            )
    for name in policy.hashed.get(table, ()):
        if name in rows.schema.names:
            position = rows.schema.get_field_index(name)
            values = rows.column(position).to_pylist()
            digests = [None if value is None else keyed_hash(policy.key, value) for value in values]
            rows = rows.set_column(
                position, rows.schema.field(position), pa.array(digests, rows.schema.field(position).type)
            )
    return rows


def keyed_hash(key: bytes, value: str) -> str:
    """The hex HMAC-SHA256 of ``value`` under ``key``."""
    return hmac.new(key, str(value).encode(), hashlib.sha256).hexdigest()
