"""Where each delta read starts: the watermark rules that make totes miss nothing (docs/concepts/watermark.md). Pure.

* reads are closed below (``last_updated >= watermark``), so rows sharing the watermark's timestamp
  are read again; rows already ingested are recognised by (key, ``last_updated``) and dropped;
* the next watermark never passes the *in-flight horizon*: the start of the oldest transaction still
  open in the source when the run began. A transaction that began before a run and commits after it
  stamps its rows no earlier than its own start, so the next run still reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from tasks.core.manifests import BEGINNING_OF_TIME, FileSet, Horizon, RawTableEntry


def complete_before(horizon: Horizon, *, fallback_lag_seconds: float) -> datetime:
    """Every source change stamped before this time was committed when the run read the source.

    When the source role cannot see other sessions' transactions, a fixed lag behind the clock
    stands in for the oldest open transaction; a prepared transaction, whose start the server no
    longer knows, is taken to have begun that same lag before it was prepared.
    """
    lag = timedelta(seconds=fallback_lag_seconds)
    bound = horizon.clock_at
    if horizon.has_hidden_sessions:
        bound -= lag
    if horizon.oldest_open_transaction_at is not None:
        bound = min(bound, horizon.oldest_open_transaction_at)
    if horizon.oldest_prepared_transaction_at is not None:
        bound = min(bound, horizon.oldest_prepared_transaction_at - lag)
    return bound


def earliest(*horizons: Horizon) -> Horizon:
    """One horizon that holds for the writers of every one of these servers (a logical-replication
    subscriber's own and its publisher's): the earliest clock, open and prepared transaction, and
    hidden sessions if any server hides some."""
    opened = [h.oldest_open_transaction_at for h in horizons if h.oldest_open_transaction_at is not None]
    prepared = [h.oldest_prepared_transaction_at for h in horizons if h.oldest_prepared_transaction_at is not None]
    return Horizon(
        clock_at=min(h.clock_at for h in horizons),
        oldest_open_transaction_at=min(opened, default=None),
        has_hidden_sessions=any(h.has_hidden_sessions for h in horizons),
        oldest_prepared_transaction_at=min(prepared, default=None),
    )


def next_watermark(
    previous: datetime, horizon: Horizon, *, safety_seconds: float, fallback_lag_seconds: float
) -> datetime:
    """The watermark the run after this one starts from: never later than the in-flight horizon
    (less a safety margin for writers' clocks), never earlier than the previous watermark."""
    bound = complete_before(horizon, fallback_lag_seconds=fallback_lag_seconds)
    return max(previous, bound - timedelta(seconds=safety_seconds))


def timestamp_literal(value: datetime) -> str:
    """A SQL literal for a UTC watermark, built from the datetime's own fields (never from text).

    Left untyped, with an explicit ``+00``, so that PostgreSQL reads it as the compared column's
    type: against ``timestamp with time zone`` it is that UTC instant whatever the session's
    TimeZone; against ``timestamp without time zone`` the offset is ignored and it is the UTC wall
    time the watermark holds.
    """
    if not isinstance(value, datetime):
        msg = f"watermark must be a datetime, got {type(value).__name__}"
        raise TypeError(msg)
    return f"'{value.replace(tzinfo=None).isoformat(sep=' ', timespec='microseconds')}+00'"


@dataclass(frozen=True)
class CountedWrites:
    """The rows the server counted inserted, updated and deleted in a table between two activity
    signatures (``Horizon.activity``)."""

    inserted: int
    updated: int
    deleted: int


# How much of a table's key set the delete check must read from the source: nothing, each range's
# count and sum of keys, or each range's hash of every key (see key_scan_for).
KeyScan = Literal["none", "counts", "hashes"]


def key_scan_for(counted: CountedWrites | None, *, new_keys: int, fresh_versions: int) -> KeyScan:
    """What the delete check must read, given the writes the server counted since the table's last
    read, the keys the delta found that totes did not know, and the versions it read
    that no run had read. Pure.

    Every insert a new key, every update a new version of a known key: each write is accounted
    for but the deletes. With no delete either, the key set is the known one plus the new keys
    ("none"). With deletes, a range that lost a key holds fewer keys, and no unseen key can have
    made up for it (that would take an insert or a key-changing update the delta did not see), so
    counts and sums find the ranges ("counts"). Any other count hashes every key ("hashes"): a key
    changed by an update (``ON UPDATE CASCADE``), a row inserted with an old stamp, a rolled-back
    insert, a row updated twice."""
    if counted is None or counted.inserted != new_keys or counted.updated != fresh_versions - new_keys:
        return "hashes"
    return "none" if counted.deleted == 0 else "counts"


def _counters(signature: str | None) -> tuple[tuple[int, int, int], str] | None:
    """A signature's inserted, updated and deleted counts, and what they count from (the table's
    file and the statistics' reset); None if there is none to read."""
    parts = (signature or "").split(":")
    if len(parts) < 4 or not all(part.isdigit() for part in parts[:3]):
        return None
    return (int(parts[0]), int(parts[1]), int(parts[2])), ":".join(parts[3:])


def writes_since(before: str | None, now: str | None) -> CountedWrites | None:
    """The writes the server counted between two signatures of one table; None when they cannot be
    compared (either missing, a new file after a TRUNCATE, statistics reset, counters gone back). Pure."""
    then, later = _counters(before), _counters(now)
    if then is None or later is None or then[1] != later[1]:
        return None
    inserted, updated, deleted = (b - a for a, b in zip(then[0], later[0], strict=True))
    if min(inserted, updated, deleted) < 0:
        return None
    return CountedWrites(inserted, updated, deleted)


def writes_since_keys_checked(
    previous: RawTableEntry | None, horizon: Horizon, table_name: str, *, recheck_seconds: float
) -> CountedWrites | None:
    """The writes the server counted in a table since its last read, if they may stand in for the
    delete check's scan of its keys: the counters are trusted now and were then, and the last scan
    is less than ``recheck_seconds`` old (a bounded check on the counters themselves). Pure."""
    if previous is None or previous.keys_checked_at is None or recheck_seconds <= 0:
        return None
    if (horizon.clock_at - previous.keys_checked_at).total_seconds() >= recheck_seconds:
        return None
    return writes_since(previous.activity, horizon.activity.get(table_name))


def is_unchanged(state: RawTableEntry, activity: str | None, now: datetime, recheck_seconds: float) -> bool:
    """Whether a table need not be read this run: the server has counted no write to it since the
    run that last read it (the same activity signature), and that read is less than
    ``recheck_seconds`` old. The watermark then stays where it is, so a write whose count the server
    had not yet published is read by a later run. Pure."""
    return (
        recheck_seconds > 0
        and activity is not None
        and activity == state.activity
        and state.read_at is not None
        and (now - state.read_at).total_seconds() < recheck_seconds
    )


def unchanged_tables(
    previous: dict[str, RawTableEntry | None], horizon: Horizon, *, recheck_seconds: float
) -> list[str]:
    """The tables of ``previous`` this run need not read (:func:`is_unchanged`), in its order. Pure."""
    return [
        name
        for name, state in previous.items()
        if state is not None and is_unchanged(state, horizon.activity.get(name), horizon.clock_at, recheck_seconds)
    ]


def kept_unread(state: RawTableEntry) -> RawTableEntry:
    """The entry of a table this run does not read: its watermark, keys and content index as they
    were, no new files, nothing deleted or set aside. Pure."""
    return replace(state, data=FileSet(), deleted=None, rejected=None)


def read_whole(previous: RawTableEntry | None) -> RawTableEntry | None:
    """A table's previous entry as a backfill reads from it: the delta starts at the beginning of
    time and drops no version as already read, so every row the source holds is read again (the
    load's merge keeps versions the warehouse already holds once). The keys and content index
    stay: deletes are still found against them."""
    if previous is None:
        return None
    return replace(previous, watermark=BEGINNING_OF_TIME, overlap_keys=frozenset(), activity=None)
