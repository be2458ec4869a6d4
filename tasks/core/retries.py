"""Which failures are worth retrying, and the retry policy every totes task shares.

Transient: the network or a server is briefly unavailable (connection refused or reset, a
PostgreSQL restart or failover, S3 5xx or throttling, serialization failures, no connection left on
the server). Permanent: retrying cannot help (bad password, missing database or table, bad data, our
own validation errors, a database server out of shared memory, memory or disk), so the task fails at
once and the message names the cause.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

from prefect.tasks import exponential_backoff

from tasks.core.postgres import Connection, connect, resource_shortage

# SQLSTATE classes and codes (PostgreSQL appendix A) that a later attempt can get past. Class 53,
# insufficient resources, is decided apart: see RESOURCE_SHORTAGES in tasks/core/postgres.py.
_TRANSIENT_SQLSTATE_PREFIXES = ("08", "57P", "40001", "40P01", "55P03", "57014", "58")
_TRANSIENT_MESSAGES = re.compile(
    r"connection refused|could not connect|server closed the connection|connection reset|"
    r"broken pipe|timed out|timeout|terminating connection|the database system is (starting|shutting)|"
    r"slowdown|throttl|service unavailable|internal ?error|bad gateway|temporarily|"
    r"endpoint connection|connection (was )?(aborted|closed)|no route to host|no connection to the server",
    re.IGNORECASE,
)
_PERMANENT_MESSAGES = re.compile(
    r"password authentication failed|authentication failed|does not exist|permission denied|"
    r"no pg_hba.conf entry|invalid input syntax|access denied|nosuchbucket|invalidaccesskeyid|"
    r"signaturedoesnotmatch",
    re.IGNORECASE,
)
_TRANSIENT_HTTP_STATUS = {429, 500, 502, 503, 504}

T = TypeVar("T")


def _causes(error: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    return chain


def is_transient(error: BaseException) -> bool:
    """True if retrying the operation that raised ``error`` may succeed."""
    for cause in _causes(error):
        if getattr(cause, "transient", None) is False:  # an error that says so itself (CycleLockLost)
            return False
        if (shortage := resource_shortage(cause)) is not None:
            return shortage.transient
        sqlstate = getattr(cause, "sqlstate", None)
        if sqlstate:
            return sqlstate.startswith(_TRANSIENT_SQLSTATE_PREFIXES)
        response = getattr(cause, "response", None)
        if isinstance(response, dict):
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = str(response.get("Error", {}).get("Code", ""))
            if status in _TRANSIENT_HTTP_STATUS or "Throttl" in code or code == "SlowDown":
                return True
        text = str(cause)
        if _PERMANENT_MESSAGES.search(text):
            return False
        if isinstance(cause, ConnectionError | TimeoutError) or _TRANSIENT_MESSAGES.search(text):
            return True
    return False


def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry only failures that :func:`is_transient` accepts."""
    error = state.data if isinstance(state.data, BaseException) else None
    return error is not None and is_transient(error)


# Exponential backoff (2 s, 4 s, 8 s, ...) with +/-50 % jitter, transient failures only.
RETRY_POLICY: dict[str, Any] = {
    "retries": 4,
    "retry_delay_seconds": exponential_backoff(backoff_factor=2),
    "retry_jitter_factor": 0.5,
    "retry_condition_fn": retry_if_transient,
}


def call_retrying(call: Callable[[], T], *, purpose: str, attempts: int = 5) -> T:
    """``call()`` outside any task (a lock's connection, the lake check at a run's start): transient
    failures (a server restarting, an S3 endpoint briefly away) are retried as a task's would be,
    with back-off (1, 2, 4, 8 s); a permanent one fails at once."""
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except Exception as error:
            if attempt == attempts or not is_transient(error):
                raise
            delay = 2.0 ** (attempt - 1)
            logging.getLogger("totes.retries").warning(
                "%s; trying again in %.0f s (attempt %d of %d)", _naming(error, purpose), delay, attempt + 1, attempts
            )
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def _naming(error: BaseException, purpose: str) -> str:
    """The error's first line, prefixed with what was being done unless it already says so."""
    line = (str(error).strip() or type(error).__name__).splitlines()[0]
    return line if purpose in line else f"{purpose}: {line}"


def connect_retrying(url: str, *, purpose: str, attempts: int = 5) -> Connection:
    """A database connection opened outside any task, retried as :func:`call_retrying` does."""
    return call_retrying(lambda: connect(url, purpose=purpose), purpose=purpose, attempts=attempts)
