"""Reading a plain pg_dump of ToteSys (tasks/sandbox/totesys_dump.py): each COPY block's table,
columns and values, with COPY's text escapes and NULLs undone, gzip or not. A file in a temporary
folder only."""

from __future__ import annotations

import gzip

import pytest

from tasks.sandbox.totesys_dump import read_dump_blocks

DUMP = """--
-- PostgreSQL database dump
--
CREATE TABLE public.currency (currency_id integer, currency_code text);
COPY public.currency (currency_id, currency_code, created_at) FROM stdin;
1\tGBP\t2022-11-03 14:20:49.962
2\t\\N\t2022-11-03 14:20:49.962
\\.

COPY public.design (design_id, design_name) FROM stdin;
7\tTab\\there\\\\back\\nline
\\.
"""


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
def test_copy_blocks_are_read_with_their_escapes_undone(tmp_path, compressed):
    path = tmp_path / ("dump.sql.gz" if compressed else "dump.sql")
    if compressed:
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(DUMP)
    else:
        path.write_text(DUMP, encoding="utf-8")
    assert list(read_dump_blocks(path)) == [
        (
            "currency",
            ["currency_id", "currency_code", "created_at"],
            [["1", "GBP", "2022-11-03 14:20:49.962"], ["2", None, "2022-11-03 14:20:49.962"]],
        ),
        ("design", ["design_id", "design_name"], [["7", "Tab\there\\back\nline"]]),
    ]
