"""Connection slots per database: every totes run, on every worker, takes its connections' slots
from one limit per database, so together they never swamp it. The limit is a Prefect global
concurrency limit when runs use a Prefect server or Cloud, advisory locks on the database itself
under Prefect's temporary local API (see :func:`database_slots`)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from tasks.core.locks import database_slots_held_by_database, wait_for
from tasks.core.prefect_api import is_local_api
from tasks.settings import TotesSettings

# How long one attempt at the limit's slots waits (Prefect's server answers "retry in 2 s").
_ATTEMPT_SECONDS = 5.0

_UNSAFE_IN_LIMIT_NAME = re.compile(r"[^A-Za-z0-9._-]+")

# The slots this flow run (its context, which Prefect copies into its task threads) holds, per
# database URL: a stage inside a cycle that already holds its database's slots uses them.
_slots_held: ContextVar[dict[str, int] | None] = ContextVar("totes_database_slots_held", default=None)


def database_limit_name(url: str) -> str:
    """The name of a database's Prefect global concurrency limit: host, port and database name
    (never the user or the password), e.g. ``totes-db-totesys.example.com-5432-totesys``."""
    parts = urlsplit(url)
    host = parse_qs(parts.query).get("host", [parts.hostname or "localhost"])[0]
    name = f"totes-db-{host}-{parts.port or 5432}-{parts.path.lstrip('/')}"
    return _UNSAFE_IN_LIMIT_NAME.sub("-", name).strip("-")[:120]


def _limit_slots(name: str, default_slots: int) -> tuple[int, int]:
    """The slots of the global concurrency limit ``name`` and how many of them are taken now; the
    limit is created with ``default_slots`` if it does not exist (an operator may have tuned an
    existing one with ``prefect gcl update``)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            limit = client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=default_slots))
            except ObjectAlreadyExists:
                limit = client.read_global_concurrency_limit_by_name(name)  # another run made it
            else:
                return default_slots, 0
    return int(limit.limit), int(limit.active_slots)


def _local_api() -> bool:
    """True when runs use Prefect's temporary local API (no ``PREFECT_API_URL``) or totes's local
    background server. The temporary API never expires a dead holder's leases, so its global
    concurrency limits would stay taken for good; the local server's leases would keep a killed
    run's slots for a minute. The runs of one machine need neither."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    return not url or is_local_api(url)


@contextmanager
def database_slots(url: str, *, purpose: str, wanted: int, default_slots: int, wait_seconds: float) -> Iterator[int]:
    """Hold up to ``wanted`` connection slots of a database for a stage; yield how many were taken:
    the stage opens at most that many connections at once. A run that waits for slots says so in
    its log, naming what it waits for.

    With a Prefect server or Prefect Cloud the slots are the database's global concurrency limit
    (visible and tunable in Prefect), leased for a minute at a time: a killed holder's slots come
    back when its lease expires. Prefect's temporary local API never expires leases, so without
    ``PREFECT_API_URL`` (and with totes's local background server) the slots are advisory locks on
    the database itself, which go with the holder's connection.

    Slots are taken once per stage, not per task: with Prefect's own server, concurrent slot
    requests are answered "retry in 2 s", which would add seconds to every run.

    Reentrant: inside a hold of the same database's slots (a cycle that holds them for its stages),
    yields what that hold has (at most ``wanted``) without taking more.

    Raises:
        tasks.core.locks.LockNotTaken: no slot came free within ``wait_seconds``.
    """
    held = _slots_held.get() or {}
    if url in held:
        yield min(wanted, held[url])
        return
    with _taken_slots(
        url, purpose=purpose, wanted=wanted, default_slots=default_slots, wait_seconds=wait_seconds
    ) as taken:
        marker = _slots_held.set(held | {url: taken})
        try:
            yield taken
        finally:
            _slots_held.reset(marker)


@contextmanager
def _taken_slots(url: str, *, purpose: str, wanted: int, default_slots: int, wait_seconds: float) -> Iterator[int]:
    if _local_api():
        with database_slots_held_by_database(
            url, purpose=purpose, wanted=wanted, slots=default_slots, wait_seconds=wait_seconds
        ) as taken:
            yield taken
        return
    with ExitStack() as held:
        yield _take_limit_slots(held, database_limit_name(url), wanted, default_slots, wait_seconds=wait_seconds)


def _take_limit_slots(held: ExitStack, name: str, wanted: int, default_slots: int, *, wait_seconds: float) -> int:
    """Take up to ``wanted`` slots of the global concurrency limit ``name`` into ``held`` (those free
    now, at least one) and return how many, saying in the log what the run waits for if none is
    free (the same wait as for the database-held slots and the cycle lock). Taking what is free
    keeps a killed run's slot, held until its lease expires, from stopping the next run for a
    minute: that run reads with the other slots."""
    from prefect.concurrency.sync import concurrency

    _quiet_slot_timeouts()
    taken = 0

    def take() -> bool:
        nonlocal taken
        limit, active = _limit_slots(name, default_slots)
        slots = max(1, min(wanted, limit - active))
        try:
            # The shortest lease Prefect grants: a run killed outright frees its slots in about a minute.
            held.enter_context(
                concurrency(name, occupy=slots, strict=False, lease_duration=60, timeout_seconds=_ATTEMPT_SECONDS)
            )
        except TimeoutError:
            return False
        taken = slots
        return True

    wait_for(
        take,
        lambda: "other runs hold them; a killed run's slots come back when its one-minute lease expires",
        what=f"1 slot(s) of the Prefect global concurrency limit {name!r}",
        wait_seconds=wait_seconds,
        refusal=f"no slot of the Prefect global concurrency limit {name!r} came free",
    )
    return taken


class _SlotTimeoutLines(logging.Filter):
    """Drops the ERROR line Prefect's slot service logs when an attempt at a limit's slots times out:
    that timeout is how a run waits, and the run says what it waits for in its own line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.args
            and isinstance(record.args, tuple)
            and str(record.args[0]).startswith("ConcurrencySlotAcquisition")
            and "TimeoutError" in str(record.args[-1])
        )


_SLOT_TIMEOUT_LINES = _SlotTimeoutLines()


def _quiet_slot_timeouts() -> None:
    logging.getLogger("prefect._internal.concurrency").addFilter(_SLOT_TIMEOUT_LINES)  # added once at most


def source_slots(settings: TotesSettings, *, wanted: int) -> AbstractContextManager[int]:
    """Up to ``wanted`` connection slots of the source database (see :func:`database_slots`)."""
    return database_slots(
        settings.require_source_url(),
        purpose="source database",
        wanted=wanted,
        default_slots=settings.database_concurrency,
        wait_seconds=settings.lock_wait_seconds,
    )


def warehouse_slot(settings: TotesSettings) -> AbstractContextManager[int]:
    """One connection slot of the warehouse, for the stage that loads it."""
    return database_slots(
        settings.require_warehouse_url(),
        purpose="warehouse database",
        wanted=1,
        default_slots=settings.database_concurrency,
        wait_seconds=settings.lock_wait_seconds,
    )


@dataclass(frozen=True)
class SlotsInUse:
    """One database's connection slots as its limit says: ``active`` of ``limit`` taken."""

    name: str
    active: int
    limit: int


def prefect_slots_in_use() -> list[SlotsInUse] | None:
    """The slots of every database's Prefect global concurrency limit (``totes-db-…``), or None
    when runs use the local or temporary API, whose slots are advisory locks on each database."""
    if _local_api():
        return None
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        limits = client.read_global_concurrency_limits(limit=200, offset=0)
    return [
        SlotsInUse(name=limit.name, active=int(limit.active_slots), limit=int(limit.limit))
        for limit in limits
        if limit.name.startswith("totes-db-")
    ]
