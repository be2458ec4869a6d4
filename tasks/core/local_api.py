"""totes's local Prefect server: for a user without ``PREFECT_API_URL``, one ``prefect server start``
in the background, started by the first ``totes`` command that needs it and found again by the next.

Without it, Prefect starts a temporary server inside every process, which cost 8-15 s of every run
measured here. The server runs detached (its own session: it outlives the command, and a killed
command does not take it down); its address, process and log are in ``$PREFECT_HOME`` (default
``~/.prefect``): ``totes-local-api.json`` and ``totes-local-api.log``. It keeps its runs in
Prefect's own database there, so the UI shows every run. ``totes local-api stop`` ends it.

A server that has died is found dead by its health check (a refused connection answers at once)
and started again; one that does not answer within ``wait_seconds`` is not used: the command falls
back to the temporary server and says so.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger("totes.local_api")

# A health check's patience: a live server on loopback answers in milliseconds.
_HEALTH_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True)
class LocalApi:
    """A background Prefect server that totes started: where it listens and its process."""

    url: str
    pid: int
    log: str


def prefect_home() -> Path:
    """Prefect's home folder (``PREFECT_HOME``, default ``~/.prefect``), where its database lives."""
    return Path(os.environ.get("PREFECT_HOME") or "~/.prefect").expanduser()


def _state_file() -> Path:
    return prefect_home() / "totes-local-api.json"


def _recorded() -> LocalApi | None:
    try:
        return LocalApi(**json.loads(_state_file().read_text()))
    except (OSError, ValueError, TypeError):
        return None


def is_local_api(url: str | None) -> bool:
    """True when ``url`` is the API of totes's local background server (recorded, alive or not)."""
    recorded = _recorded()
    return url is not None and recorded is not None and recorded.url == url


def healthy(url: str) -> bool:
    """True when the Prefect API at ``url`` answers its health check."""
    try:
        # bandit B310: the URL is our own loopback server's, from our state file
        with urllib.request.urlopen(f"{url}/health", timeout=_HEALTH_TIMEOUT_SECONDS) as answer:  # noqa: S310  # nosec B310
            return bool(answer.status == 200)
    except OSError:
        return False


def running_local_api() -> LocalApi | None:
    """The recorded local server, if it answers."""
    recorded = _recorded()
    return recorded if recorded is not None and healthy(recorded.url) else None


@contextmanager
def _one_starter() -> Iterator[None]:
    """Held while finding or starting the server: two commands at once start one server."""
    prefect_home().mkdir(parents=True, exist_ok=True)
    with open(prefect_home() / "totes-local-api.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_local_api(*, wait_seconds: float) -> LocalApi:
    """The local server, started in the background if none answers.

    Raises:
        RuntimeError: the server did not answer within ``wait_seconds`` (the reason is in its log).
    """
    with _one_starter():
        recorded = _recorded()
        if recorded is not None and _alive(recorded.pid):
            # Answering, or still starting for a command killed while it waited: wait for that one
            # rather than start a second.
            if _answers_within(recorded, wait_seconds=wait_seconds):
                return recorded
            _stop(recorded)
        return _start(wait_seconds=wait_seconds)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process by now
        return False
    return True


def _answers_within(api: LocalApi, *, wait_seconds: float) -> bool:
    deadline = time.monotonic() + wait_seconds
    while not healthy(api.url):
        if time.monotonic() > deadline or not _alive(api.pid):
            return False
        time.sleep(0.25)
    return True


def _stop(api: LocalApi) -> None:
    try:
        os.killpg(api.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass


def _prefect_command() -> str:
    beside = Path(sys.executable).parent / "prefect"
    return str(beside) if beside.exists() else (shutil.which("prefect") or "prefect")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start(*, wait_seconds: float) -> LocalApi:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    log_path = prefect_home() / "totes-local-api.log"
    env = {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}
    log.info("Starting a local Prefect server in the background at %s (log: %s)", url, log_path)
    began = time.monotonic()
    with open(log_path, "ab") as server_log:
        server = subprocess.Popen(  # noqa: S603 - Prefect's own command, arguments ours
            [_prefect_command(), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=server_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    # Recorded before it answers: a command killed while it waits leaves a server the next finds.
    started = LocalApi(url=url, pid=server.pid, log=str(log_path))
    _state_file().write_text(json.dumps(asdict(started)))
    deadline = began + wait_seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            msg = f"the local Prefect server exited with status {server.returncode} while starting; see {log_path}"
            raise RuntimeError(msg)
        if healthy(url):
            log.info("Local Prefect server ready in %.1f s: later runs use it", time.monotonic() - began)
            return started
        time.sleep(0.25)
    _stop(started)
    msg = f"the local Prefect server did not answer within {wait_seconds:.0f} s; see {log_path}"
    raise RuntimeError(msg)


def stop_local_api(*, wait_seconds: float = 30.0) -> LocalApi | None:
    """Stop the local server (its whole process group); the one stopped, or None if none ran."""
    with _one_starter():
        recorded = _recorded()
        _state_file().unlink(missing_ok=True)
        # Only a server that answers is signalled: a dead one's process id may be another's by now.
        if recorded is None or not healthy(recorded.url):
            return None
        _stop(recorded)
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline and healthy(recorded.url):
            time.sleep(0.25)
        return recorded
