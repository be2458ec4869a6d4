"""Which Prefect API this process talks to: totes's local background Prefect server (started by
the command line, ``flows/cli/local_api.py``, and recorded in ``$PREFECT_HOME``) or another one. The
stages need to know (under the local server, a database's connection slots are advisory locks, not
Prefect's global concurrency limits); only the command line starts and stops the server."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LocalApi:
    """A background Prefect server that totes started: where it listens and its process.
    ``idle_minutes``: it stops by itself after that many minutes without a request (0: never;
    None: started by a totes without the idle stop, which never stops by itself)."""

    url: str
    pid: int
    log: str
    idle_minutes: float | None = None


def prefect_home() -> Path:
    """Prefect's home folder (``PREFECT_HOME``, default ``~/.prefect``), where its database lives."""
    return Path(os.environ.get("PREFECT_HOME") or "~/.prefect").expanduser()


def local_api_state_file() -> Path:
    """Where the running local server's address and process are recorded."""
    return prefect_home() / "totes-local-api.json"


def recorded_local_api() -> LocalApi | None:
    """The local server as last recorded (alive or not); None if none is."""
    try:
        return LocalApi(**json.loads(local_api_state_file().read_text()))
    except (OSError, ValueError, TypeError):
        return None


def is_local_api(url: str | None) -> bool:
    """True when ``url`` is the API of totes's local background server (recorded, alive or not)."""
    recorded = recorded_local_api()
    return url is not None and recorded is not None and recorded.url == url
