"""Splitting SQL scripts into statements (tasks/core/sql.py)."""

from __future__ import annotations

from tasks.core.sql import split_sql


def test_split_sql_keeps_dollar_quoted_bodies_whole():
    script = "-- a comment\ncreate table a (x int);\n\ncreate function f() returns int as $$\nbegin\n  return 1;\nend\n$$ language plpgsql;\nselect 1;\n"
    statements = split_sql(script)
    assert len(statements) == 3
    assert "return 1;" in statements[1]
