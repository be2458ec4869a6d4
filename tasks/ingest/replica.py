"""I/O: the horizon of a source that is a copy of another database, read on that database.

A hot standby, a logical-replication subscriber and a copy kept by a tool PostgreSQL does not show
(AWS DMS: declared with ``TOTES_SOURCE_IS_COPY``) hold rows stamped by another server's writers.
Their own ``pg_stat_activity`` cannot see those writers' open transactions, whose rows arrive later
stamped in the past, so the horizon is read on the primary (``TOTES_SOURCE_PRIMARY_URL``), which
must be the database the source copies; and a standby or a subscriber is read only once it has
applied what the primary had committed when the horizon was read.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

from tasks.core.postgres import Connection, connect, fetch_rows
from tasks.ingest.delta import INGEST_SQL
from tasks.ingest.source import (
    HorizonReading,
    SourceIsStandby,
    read_source_columns,
    read_source_horizon,
    wait_for_replay,
)
from tasks.ingest.watermark import earliest
from tasks.schema import SOURCE_TABLES


class SourceIsSubscriber(RuntimeError):
    """The source is a logical-replication subscriber and totes cannot take a safe horizon from its publisher."""


class SourceIsCopy(RuntimeError):
    """The source is declared a copy of another database (``TOTES_SOURCE_IS_COPY``) and no primary is configured."""


class PrimaryMismatch(RuntimeError):
    """``TOTES_SOURCE_PRIMARY_URL`` reaches another database than the one the source copies."""


@dataclass(frozen=True)
class SourceHorizon:
    """The horizon a run uses, whether the role that read it could see every session, and what the
    log should say about where it came from."""

    reading: HorizonReading
    has_hidden_sessions: bool
    notes: tuple[str, ...] = ()


def read_horizon_of_source(
    source: Connection, *, primary_url: str | None, is_copy: bool, wait_seconds: float
) -> SourceHorizon:
    """The horizon of a run that reads ``source``: its own when it is a primary; its primary's when it
    is a standby, a subscriber or a declared copy, once the primary is checked to be the database the
    source copies and, for a standby or a subscriber, once the source has applied the primary's WAL
    up to the horizon. A declared copy's horizon counts its sessions as hidden, as if the role could not
    see them: its watermark stays ``TOTES_FALLBACK_LAG_SECONDS`` behind the primary's clock (a
    transaction still open there still holds it), so a change is safe if its transaction's length plus
    the copy's delay stay under that lag.

    Raises:
        SourceIsStandby, SourceIsSubscriber, SourceIsCopy: no primary connection is configured, or
            it is a standby too, or the source lags longer than ``wait_seconds``.
        PrimaryMismatch: the primary connection reaches another database.
    """
    own = read_source_horizon(source)
    subscriptions = read_subscriptions(source)
    if own.is_standby and subscriptions:
        msg = (
            f"the source database is a standby of a logical-replication subscriber (subscription "
            f"{_names(subscriptions)}): no single server can give a safe horizon for it. Point TOTES_SOURCE_URL at "
            "the subscriber and TOTES_SOURCE_PRIMARY_URL at its publisher; nothing was read"
        )
        raise SourceIsSubscriber(msg)
    if own.is_standby:
        found = _from_standby_primary(source, primary_url, wait_seconds=wait_seconds)
    elif subscriptions:
        found = _from_publisher(source, own, subscriptions, primary_url, wait_seconds=wait_seconds)
    elif is_copy:
        found = _from_copied_database(primary_url)
    else:
        found = SourceHorizon(own, own.horizon.has_hidden_sessions)
    if not is_copy:
        return found
    horizon = replace(found.reading.horizon, has_hidden_sessions=True)
    note = (
        "The source is declared a copy of its primary (TOTES_SOURCE_IS_COPY): its apply position cannot be known, "
        "so the watermark stays TOTES_FALLBACK_LAG_SECONDS behind the primary's clock"
    )
    return replace(found, reading=replace(found.reading, horizon=horizon), notes=(*found.notes, note))


def _from_standby_primary(standby: Connection, primary_url: str | None, *, wait_seconds: float) -> SourceHorizon:
    """A standby's pg_stat_activity cannot see transactions open on the primary, and its clock runs
    ahead of what it has replayed: take the horizon from the primary (the same database of the same
    cluster), then let the standby replay past the primary's WAL position at that moment."""
    if primary_url is None:
        msg = (
            "the source database is a standby (pg_is_in_recovery() is true): its pg_stat_activity cannot see "
            "transactions open on the primary, and its replay may lag, so reading it alone would lose rows. "
            "Set TOTES_SOURCE_PRIMARY_URL to a (read-only) connection to the primary, or point TOTES_SOURCE_URL "
            "at the primary; nothing was read"
        )
        raise SourceIsStandby(msg)
    with connect(primary_url, purpose="source's primary database") as primary:
        reading = read_source_horizon(primary)
        if reading.is_standby or reading.wal_position is None:
            msg = "TOTES_SOURCE_PRIMARY_URL points at a standby too, not at the primary; nothing was read"
            raise SourceIsStandby(msg)
        _check_same_database(read_source_identity(standby), read_source_identity(primary))
        _nudge_wal_flush(primary)
    waited = wait_for_replay(standby, reading.wal_position, wait_seconds=wait_seconds)
    note = (
        f"The source is a standby: horizon taken from the primary at WAL {reading.wal_position}; the standby "
        f"replayed past it in {waited:.1f} s"
    )
    return SourceHorizon(reading, reading.horizon.has_hidden_sessions, (note,))


def _from_publisher(
    subscriber: Connection,
    own: HorizonReading,
    subscriptions: list[Subscription],
    primary_url: str | None,
    *,
    wait_seconds: float,
) -> SourceHorizon:
    """A subscriber applies rows stamped by its publisher's writers, whose open transactions its own
    pg_stat_activity never shows: take the horizon from the publisher, checked to be the database
    every subscription copies from, and let each subscription apply past the publisher's WAL position
    at that moment. The subscriber's own horizon still counts, for its local writers."""
    if primary_url is None:
        msg = (
            f"the source database is a logical-replication subscriber (subscription {_names(subscriptions)}): its "
            "pg_stat_activity cannot see transactions open on the publisher, whose rows arrive stamped in the past, "
            "so reading it alone would lose rows. Set TOTES_SOURCE_PRIMARY_URL to a (read-only) connection to the "
            "publisher's database, or point TOTES_SOURCE_URL at the publisher; nothing was read"
        )
        raise SourceIsSubscriber(msg)
    with connect(primary_url, purpose="source's publisher database") as publisher:
        for subscription in subscriptions:
            _check_publisher(publisher, subscription)
        reading = read_source_horizon(publisher)
        if not reading.is_standby:
            _nudge_wal_flush(publisher)
    if reading.is_standby or reading.wal_position is None:
        msg = "TOTES_SOURCE_PRIMARY_URL points at a standby, not at the subscription's publisher; nothing was read"
        raise SourceIsSubscriber(msg)
    waited = wait_for_apply(subscriber, reading.wal_position, wait_seconds=wait_seconds)
    horizon = earliest(reading.horizon, own.horizon)
    note = (
        f"The source is a logical-replication subscriber ({_names(subscriptions)}): horizon taken from the "
        f"publisher at WAL {reading.wal_position}; the subscriber applied past it in {waited:.1f} s"
    )
    return SourceHorizon(replace(reading, horizon=horizon), horizon.has_hidden_sessions, (note,))


def _from_copied_database(primary_url: str | None) -> SourceHorizon:
    """A declared copy: the horizon of the database it copies, which must hold the source tables."""
    if primary_url is None:
        msg = (
            "TOTES_SOURCE_IS_COPY says the source database is a copy of another database: its pg_stat_activity "
            "cannot see the transactions open there, whose rows arrive stamped in the past. Set "
            "TOTES_SOURCE_PRIMARY_URL to a (read-only) connection to the database it copies; nothing was read"
        )
        raise SourceIsCopy(msg)
    with connect(primary_url, purpose="source's primary database") as primary:
        missing = sorted(set(SOURCE_TABLES) - set(read_source_columns(primary)))
        if missing:
            msg = (
                f"TOTES_SOURCE_PRIMARY_URL reaches database {read_source_identity(primary).database_name}, which has no source table(s) "
                f"{', '.join(missing)}: point it at the database the source copies; nothing was read"
            )
            raise PrimaryMismatch(msg)
        reading = read_source_horizon(primary)
    if reading.is_standby:
        msg = "TOTES_SOURCE_PRIMARY_URL points at a standby, not at the primary the source copies; nothing was read"
        raise SourceIsCopy(msg)
    return SourceHorizon(reading, reading.horizon.has_hidden_sessions)


def _nudge_wal_flush(primary: Connection) -> None:
    """Have the primary flush its WAL past the horizon now (nudge_wal_flush.sql)."""
    with primary.cursor() as cursor:
        cursor.execute(INGEST_SQL.read("nudge_wal_flush"))
        cursor.fetchall()
    primary.commit()


@dataclass(frozen=True)
class SourceIdentity:
    """Which database a connection reaches."""

    system_identifier: str
    database_name: str
    database_oid: int

    def __str__(self) -> str:
        return f"database {self.database_name} (oid {self.database_oid}) of system {self.system_identifier}"


def read_source_identity(connection: Connection) -> SourceIdentity:
    """The cluster's system identifier and the database's name and oid (read_source_identity.sql)."""
    ((system_identifier, name, oid),) = fetch_rows(connection, INGEST_SQL.read("read_source_identity"))
    return SourceIdentity(str(system_identifier), name, int(oid))


def _check_same_database(standby: SourceIdentity, primary: SourceIdentity) -> None:
    """A physical standby's primary has its system identifier and the same database, oid included:
    another database of that server (or another server) does not see the source's writers."""
    if standby != primary:
        msg = (
            f"TOTES_SOURCE_PRIMARY_URL reaches {primary}, not the standby's primary database ({standby}): point it "
            f"at database {standby.database_name} on the standby's primary; nothing was read"
        )
        raise PrimaryMismatch(msg)


@dataclass(frozen=True)
class Subscription:
    """A logical-replication subscription of the source that copies source tables (read_subscriptions.sql)."""

    name: str
    slot: str | None
    publications: tuple[str, ...]
    tables: tuple[str, ...]
    copying: tuple[str, ...]
    applied_position: str | None

    def has_applied(self, wal_position: str) -> bool:
        """Every table is copied and the apply worker has passed the publisher's ``wal_position``."""
        return (
            not self.copying and self.applied_position is not None and lsn(self.applied_position) >= lsn(wal_position)
        )


def read_subscriptions(connection: Connection) -> list[Subscription]:
    """The subscriptions of the connection's database that copy a source table (none: not a subscriber)."""
    rows: list[tuple[Any, ...]] = fetch_rows(connection, INGEST_SQL.read("read_subscriptions"), (list(SOURCE_TABLES),))
    return [
        Subscription(name, slot, tuple(publications or ()), tuple(tables), tuple(copying or ()), applied)
        for name, slot, publications, tables, copying, applied in rows
    ]


def _check_publisher(publisher: Connection, subscription: Subscription) -> None:
    """The publisher of ``subscription`` holds its replication slot, in this very database, and
    publishes every source table the subscription copies in the publications it subscribes to."""
    ((database, has_slot, published),) = fetch_rows(
        publisher,
        INGEST_SQL.read("read_subscription_publisher"),
        (subscription.slot, list(subscription.publications), list(subscription.tables)),
    )
    if not has_slot:
        msg = (
            f"TOTES_SOURCE_PRIMARY_URL reaches database {database}, which has no logical replication slot "
            f"{subscription.slot}: the source's subscription {subscription.name} copies another database. Point it at "
            "the subscription's publisher database; nothing was read"
        )
        raise PrimaryMismatch(msg)
    unpublished = sorted(set(subscription.tables) - set(published or ()))
    if unpublished:
        msg = (
            f"TOTES_SOURCE_PRIMARY_URL reaches database {database}, whose publication(s) "
            f"{', '.join(subscription.publications)} do not publish source table(s) {', '.join(unpublished)} that the "
            f"source's subscription {subscription.name} copies. Point it at the subscription's publisher database; "
            "nothing was read"
        )
        raise PrimaryMismatch(msg)


def wait_for_apply(subscriber: Connection, wal_position: str, *, wait_seconds: float) -> float:
    """Wait until every subscription that copies a source table has copied its tables and applied its
    publisher's WAL up to ``wal_position`` (the publisher's, read with the horizon); return the seconds
    waited.

    Why that is enough: the publisher's walsender decodes the WAL in order and sends each
    transaction at its commit record; the keepalive it sends when it has caught up carries the WAL
    position it has decoded to, after the data before it. The subscription's apply worker handles
    these messages one at a time, in order, committing each transaction before it reads the next
    message (a large transaction streamed ahead, or applied by a parallel worker, is finished when
    its commit message is handled), and records the keepalive's position (``latest_end_lsn``) only
    then. So once that position passes ``wal_position``, every transaction whose commit record lies
    before it, which is every transaction the publisher had committed when the horizon was read,
    is committed and visible on the subscriber. Those still open then are the horizon's oldest open
    transaction; prepared ones, its oldest prepared transaction. A table still in its initial copy
    is applied by its own worker, from its own position: it must be ready too.

    Raises:
        SourceIsSubscriber: not there within ``wait_seconds``.
    """
    started = time.monotonic()
    while True:
        behind = [s for s in read_subscriptions(subscriber) if not s.has_applied(wal_position)]
        waited = time.monotonic() - started
        if not behind:
            return waited
        if waited >= wait_seconds:
            first = behind[0]
            if first.copying:
                state = f"is still copying source table(s) {', '.join(first.copying)}"
            elif first.applied_position is None:
                state = "reports no apply position (is it enabled and its worker running? see pg_stat_subscription)"
            else:
                state = f"has applied the publisher's WAL only to {first.applied_position}, short of {wal_position}"
            msg = (
                f"the source's subscription {first.name} {state} after {waited:.0f} s (TOTES_REPLICA_WAIT_SECONDS): "
                "reading it now would miss committed rows; nothing was read"
            )
            raise SourceIsSubscriber(msg)
        time.sleep(0.2)


def lsn(text: str) -> int:
    """A WAL position (``16/B374D848``) as a number, to compare."""
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def _names(subscriptions: list[Subscription]) -> str:
    return ", ".join(s.name for s in subscriptions)
