"""History mode for dimensions (``TOTES_DIMENSION_HISTORY``): ``dim_<name>_history`` keeps every
version of each dimension row, with ``valid_from``, ``valid_to`` and ``is_current``.

A version is what one batch brought: its ``valid_from`` is the batch's time (the UTC time in its id),
its ``valid_to`` the time of the batch that replaced it, or when its source row was found deleted.
Changes that reach a dimension through a joined table (a department renamed: every staff row of it)
are versions too, since the transform rebuilds those rows. Two changes of one row between two runs
are one version (a batch sees the row as it is when it reads it).

The versions are applied in the load's transaction, from the rows the batch merged; and built from
the lake's star batches when history mode is switched on for a warehouse already loaded (so it covers
the past too), and by a rebuild. Both paths apply the same statements batch by batch, so they agree.
"""

from __future__ import annotations

from datetime import UTC, datetime

from tasks.core.postgres import Cursor, execute_for_one
from tasks.load.statements import HISTORY_DIMENSIONS, LOAD_SQL, history_statements

# The batch id's time: "<sequence>-<YYYYmmddTHHMMSSZ>" (tasks/core/lake.py new_batch_id).
_BATCH_TIME = "%Y%m%dT%H%M%SZ"


def batch_time(batch_id: str) -> datetime:
    """When the batch was made (UTC, naive like the warehouse's timestamps)."""
    return datetime.strptime(batch_id.split("-", 1)[1], _BATCH_TIME).replace(tzinfo=UTC).replace(tzinfo=None)


def create_history_tables(cursor: Cursor) -> None:
    for table in HISTORY_DIMENSIONS:
        for statement in history_statements("create_dimension_history", table):
            cursor.execute(statement)
    cursor.execute(LOAD_SQL.read("create_history_batch_record"))


def history_batches(cursor: Cursor) -> set[str]:
    """The batches the history tables hold."""
    cursor.execute(LOAD_SQL.read("select_history_batches"))
    return {row[0] for row in cursor.fetchall()}


def record_history_batch(cursor: Cursor, batch_id: str) -> None:
    cursor.execute(LOAD_SQL.read("record_history_batch"), parameters=(batch_id,))


def record_merged_versions(cursor: Cursor, batch_id: str, tables: list[str]) -> int:
    """The versions of the rows the batch merged into ``tables`` (the load's path); how many opened."""
    opened = 0
    for table in tables:
        if table not in HISTORY_DIMENSIONS:
            continue
        for statement in history_statements("create_history_source", table):
            cursor.execute(statement)
        (staging,) = history_statements("stage_history_source", table)
        cursor.execute(staging, parameters=(batch_id,))
        opened += apply_staged_versions(cursor, table, batch_id)
    record_history_batch(cursor, batch_id)
    return opened


def apply_staged_versions(cursor: Cursor, table: str, batch_id: str) -> int:
    """Close the versions the rows in ``pg_temp._totes_history_source`` replace and open theirs;
    how many opened."""
    at = batch_time(batch_id)
    (close,) = history_statements("close_replaced_history", table)
    execute_for_one(cursor, close, (at,))
    (open_new,) = history_statements("open_new_history", table)
    (opened,) = execute_for_one(cursor, open_new, (at, batch_id))
    return int(opened)


def close_deleted_versions(cursor: Cursor, table: str) -> None:
    """End the current versions of the keys in ``pg_temp._totes_deleted`` (the marks just applied)."""
    if table in HISTORY_DIMENSIONS:
        (close,) = history_statements("close_deleted_history", table)
        execute_for_one(cursor, close)
