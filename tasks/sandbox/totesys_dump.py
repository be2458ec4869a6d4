"""The rows of a plain pg_dump of ToteSys (``../shared/data``), gzip or not: every COPY block's table,
columns and text values, for totesys.py to load into the canonical schema."""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from pathlib import Path

_COPY_HEADER = re.compile(r"^COPY (?:public\.)?\"?(\w+)\"? \(([^)]*)\) FROM stdin;$")
_COPY_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}


def _unescape_copy_text(value: str) -> str | None:
    if value == "\\N":
        return None
    if "\\" not in value:
        return value
    return re.sub(r"\\(.)", lambda m: _COPY_ESCAPES.get(m.group(1), m.group(1)), value)


def read_dump_blocks(path: Path) -> Iterator[tuple[str, list[str], list[list[str | None]]]]:
    """(table, columns, rows) of every COPY block of a plain pg_dump (gzip or not)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        table: str | None = None
        columns: list[str] = []
        rows: list[list[str | None]] = []
        for line in handle:
            line = line.rstrip("\n")
            if table is None:
                header = _COPY_HEADER.match(line)
                if header:
                    table = header.group(1)
                    columns = [c.strip().strip('"') for c in header.group(2).split(",")]
                    rows = []
            elif line == "\\.":
                yield table, columns, rows
                table = None
            else:
                rows.append([_unescape_copy_text(v) for v in line.split("\t")])
