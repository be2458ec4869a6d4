"""One Prefect global concurrency limit per database: every totes run, on every worker, takes its
connections' slots from it, so together they never swamp a database."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qs, urlsplit

_UNSAFE_IN_LIMIT_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def database_limit_name(url: str) -> str:
    """The name of a database's Prefect global concurrency limit: host, port and database name
    (never the user or the password), e.g. ``totes-db-totesys.example.com-5432-totesys``."""
    parts = urlsplit(url)
    host = parse_qs(parts.query).get("host", [parts.hostname or "localhost"])[0]
    name = f"totes-db-{host}-{parts.port or 5432}-{parts.path.lstrip('/')}"
    return _UNSAFE_IN_LIMIT_NAME.sub("-", name).strip("-")[:120]


def _limit_slots(name: str, default_slots: int) -> int:
    """The slots of the global concurrency limit ``name``, created with ``default_slots`` if it does
    not exist (an operator may have tuned an existing one with ``prefect gcl update``)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            return int(client.read_global_concurrency_limit_by_name(name).limit)
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=default_slots))
            except ObjectAlreadyExists:
                return int(client.read_global_concurrency_limit_by_name(name).limit)  # another run made it
            return default_slots


@contextmanager
def database_slots(url: str, *, wanted: int, default_slots: int) -> Iterator[int]:
    """Hold up to ``wanted`` slots of the database's Prefect global concurrency limit for a stage;
    yield how many were taken: the stage opens at most that many connections at once.

    Slots are taken once per stage, not per task: with Prefect's own server, concurrent slot
    requests are answered "retry in 2 s", which would add seconds to every run.
    """
    from prefect.concurrency.sync import concurrency

    name = database_limit_name(url)
    slots = max(1, min(wanted, _limit_slots(name, default_slots)))
    # The shortest lease Prefect grants: a run killed outright frees its slots within about a minute.
    with concurrency(name, occupy=slots, strict=False, lease_duration=60):
        yield slots
