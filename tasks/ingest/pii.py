"""PII policies, applied to rows as they are read from the source, before anything reaches the lake:
a column ``exclude``d is read as NULL, a column ``hash``ed as the hex HMAC-SHA256 of its value under
the deployment's key (equal values stay equal, so joins, counts and changes still work; the value
cannot be recovered without the key, nor guessed by hashing candidates without it). Pure.

The raw zone, the star zone, their quarantines and the warehouse only ever see the masked values.
So does the content index (reconciliation, ``content.py``): for a table with a PII column it holds a
hash of the *masked* row (:meth:`PiiPolicy.content_key`), never the source server's hash of
the row as it is, which anyone could recompute over a guessed value to test it.
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

    def content_scheme(self, table: str) -> str:
        """How the content index of ``table`` is hashed under this policy (its
        ``RawTableEntry.content_scheme``): ``source`` for a table with no PII column (the source
        server's hash of the row); else ``keyed:`` and the table's policy, with the key's
        fingerprint if it hashes a column. When it differs from the scheme the lake's index was
        written under, the index is rewritten."""
        if not self.masks(table):
            return "source"
        parts = [
            f"{how}={','.join(columns[table])}"
            for how, columns in (("exclude", self.excluded), ("hash", self.hashed))
            if table in columns
        ]
        if self.content_key(table):
            parts.append(f"key={self.key_fingerprint()}")
        return "keyed:" + ";".join(parts)

    def content_key(self, table: str) -> bytes:
        """The key of the content index's hashes of ``table``'s rows: for a table with hashed
        columns, derived from the hash key (a key of its own, so that a row hash is never a column
        hash); else empty. Unkeyed is enough for a table whose PII columns are all excluded: they are
        NULL in what is hashed and every other column is in the raw zone as it is, so the hash tells
        nothing the rows do not (and a rotation of the key leaves its index as it is)."""
        if table not in self.hashed:
            return b""
        return hmac.new(self.key, _CONTENT_KEY_LABEL, hashlib.sha256).digest()

    def key_fingerprint(self) -> str:
        """16 hex digits that change with the hash key (a rotation rewrites the content indexes).

        A reader of the lake can test a guess of the *key* against it, but no more than against any
        hashed value whose plaintext they know (their own e-mail address, say): the key must be a
        random secret either way. It tells nothing about any value."""
        return hmac.new(self.key, _FINGERPRINT_LABEL, hashlib.sha256).hexdigest()[:16]


# Labels of the keys derived from the hash key. Not UTF-8 (a lone 0xff byte), so that neither can
# be the input of a column's hash, ``keyed_hash(key, value)``: a source value equal to a label would
# otherwise put the derived key, in hex, in the lake.
_CONTENT_KEY_LABEL = b"\xfftotes content index key"
_FINGERPRINT_LABEL = b"\xfftotes hash key fingerprint"


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
