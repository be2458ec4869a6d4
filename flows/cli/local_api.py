"""totes's local Prefect server: for a user without ``PREFECT_API_URL``, one Prefect server in the
background, started by the first ``totes`` command that needs it and found again by the next.

Without it, Prefect starts a temporary server inside every process, which cost 8-15 s of every run
measured here. The server runs detached (its own session: it outlives the command, and a killed
command does not take it down); its address, process and log are in ``$PREFECT_HOME`` (default
``~/.prefect``): ``totes-local-api.json`` and ``totes-local-api.log``. It keeps its runs in
Prefect's own database there, so the UI shows every run. ``totes local-api stop`` ends it.

It is Prefect's own server app (``prefect.server.api.server.create_app``, as ``prefect server
start`` serves it) run by this module (``python -m flows.cli.local_api``), with two differences: it
stops by itself after ``TOTES_LOCAL_API_IDLE_MINUTES`` without a request (every request counts, the
UI's included; a running command asks it something now and then; the next command starts it again),
and it idles cheaply: the services no totes command uses (schedules, late runs, workers, automations,
leases, telemetry) are off and its background-task worker looks for work every 2 s, not 0.25 s.

A server that has died is found dead by its health check (a refused connection answers at once)
and started again; one that does not answer within ``wait_seconds`` is not used: the command falls
back to the temporary server and says so.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tasks.core.prefect_api import LocalApi, local_api_state_file, prefect_home, recorded_local_api

log = logging.getLogger("totes.local_api")

# A health check's patience: a live server on loopback answers in milliseconds.
_HEALTH_TIMEOUT_SECONDS = 2.0

# The default of TOTES_LOCAL_API_IDLE_MINUTES (the commands pass the setting in).
DEFAULT_IDLE_MINUTES = 30.0

# Answered by the server's own middleware, not by Prefect's app, and not counted as a request: how
# long the server has been quiet (``totes local-api status`` asks without resetting the clock).
_QUIET_PATH = "/totes-local-api/quiet"

# Services of a Prefect server that no totes command uses, off in the local server (the user's own
# environment variable wins): deployment schedules and late runs, workers and work queues, paused
# runs, cancellation of child runs, global concurrency leases (under the local API the slots are
# advisory locks), automations, telemetry. Task runs, events and logs (the UI's pages) keep theirs.
_UNUSED_SERVICES = {
    "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_FOREMAN_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_CANCELLATION_CLEANUP_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_CLEANUP_RECONCILER_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_REPOSSESSOR_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}


@dataclass(frozen=True)
class Quiet:
    """How long the running local server has gone without a request, and when it stops."""

    seconds: float
    in_flight: int
    idle_minutes: float

    def stops_in_seconds(self) -> float | None:
        """Seconds until it stops by itself if nothing uses it; None if it never does."""
        if self.idle_minutes <= 0:
            return None
        if self.in_flight:
            return self.idle_minutes * 60
        return max(0.0, self.idle_minutes * 60 - self.seconds)


def stopped_when_idle() -> tuple[datetime, float] | None:
    """When the last local server stopped by itself, and after how many quiet minutes; None if it
    did not (never started, running, ended by ``totes local-api stop``, killed)."""
    try:
        note = json.loads(local_api_state_file().read_text())
        return datetime.fromisoformat(note["stopped_when_idle"]), float(note["idle_minutes"])
    except (OSError, ValueError, TypeError, KeyError):
        return None


def quiet(api: LocalApi) -> Quiet | None:
    """How long the server ``api`` has gone without a request (asking does not count as one); None
    if it does not say: not answering, or started by a totes without the idle stop."""
    try:
        # bandit B310: the URL is our own loopback server's, from our state file
        address = api.url.removesuffix("/api") + _QUIET_PATH
        with urllib.request.urlopen(address, timeout=_HEALTH_TIMEOUT_SECONDS) as answer:  # noqa: S310  # nosec B310
            return Quiet(**json.loads(answer.read()))
    except (OSError, ValueError, TypeError):
        return None


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
    recorded = recorded_local_api()
    return recorded if recorded is not None and healthy(recorded.url) else None


def look_at_local_api() -> tuple[LocalApi, Quiet | None] | None:
    """The recorded local server if it answers, and how long it has been quiet, asked without
    counting as a request (None for a server of a totes without the idle stop); None if none answers."""
    recorded = recorded_local_api()
    if recorded is None:
        return None
    state = quiet(recorded)
    if state is not None:
        return recorded, state
    return (recorded, None) if healthy(recorded.url) else None


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


def ensure_local_api(*, wait_seconds: float, idle_minutes: float = DEFAULT_IDLE_MINUTES) -> LocalApi:
    """The local server, started in the background if none answers; one started here stops by
    itself after ``idle_minutes`` without a request (0: never).

    Raises:
        RuntimeError: the server did not answer within ``wait_seconds`` (the reason is in its log).
    """
    with _one_starter():
        recorded = recorded_local_api()
        if recorded is not None and _alive(recorded.pid):
            # Answering, or still starting for a command killed while it waited: wait for that one
            # rather than start a second.
            if _answers_within(recorded, wait_seconds=wait_seconds):
                return recorded
            _stop(recorded)
        return _start(wait_seconds=wait_seconds, idle_minutes=idle_minutes)


@contextmanager
def kept_awake(api: LocalApi) -> Iterator[None]:
    """While the block runs, a request to ``api`` every third of its quiet spell (at most every
    5 min): a command that waits long without a word to the API (for a lock, on a long query) does
    not find the server gone when it speaks again. A killed command stops asking."""
    if not api.idle_minutes:
        yield
        return
    every = min(300.0, max(1.0, api.idle_minutes * 60 / 3))
    done = threading.Event()

    def ask() -> None:
        while not done.wait(every):
            healthy(api.url)

    threading.Thread(target=ask, name="totes-local-api-awake", daemon=True).start()
    try:
        yield
    finally:
        done.set()


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


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start(*, wait_seconds: float, idle_minutes: float) -> LocalApi:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    log_path = prefect_home() / "totes-local-api.log"
    env = _UNUSED_SERVICES | {key: value for key, value in os.environ.items() if key != "PREFECT_API_URL"}
    log.info("Starting a local Prefect server in the background at %s (log: %s)", url, log_path)
    began = time.monotonic()
    with open(log_path, "ab") as server_log:
        # -P and the cwd: a `tasks` or `prefect` folder where the command stands cannot shadow ours.
        server = subprocess.Popen(  # noqa: S603 - our own module, arguments ours
            [
                sys.executable,
                "-P",
                "-m",
                "flows.cli.local_api",
                "--port",
                str(port),
                "--idle-minutes",
                f"{idle_minutes:g}",
                "--prefect-home",
                str(prefect_home().resolve()),
            ],
            env=env,
            cwd=prefect_home(),
            stdin=subprocess.DEVNULL,
            stdout=server_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    # Recorded before it answers: a command killed while it waits leaves a server the next finds.
    started = LocalApi(url=url, pid=server.pid, log=str(log_path), idle_minutes=idle_minutes)
    local_api_state_file().write_text(json.dumps(asdict(started)))
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
        recorded = recorded_local_api()
        local_api_state_file().unlink(missing_ok=True)
        # Only a server that answers is signalled: a dead one's process id may be another's by now.
        if recorded is None or not healthy(recorded.url):
            return None
        _stop(recorded)
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline and healthy(recorded.url):
            time.sleep(0.25)
        return recorded


class _Activity:
    """ASGI middleware around Prefect's app: the time of the last request and the requests and
    websockets in flight. It answers ``_QUIET_PATH`` itself, without counting it as a request."""

    def __init__(self, app: Any, *, idle_minutes: float):
        self.app = app
        self.idle_minutes = idle_minutes
        self.last = time.monotonic()
        self.in_flight = 0

    def quiet_seconds(self) -> float:
        return 0.0 if self.in_flight else time.monotonic() - self.last

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):  # the lifespan
            await self.app(scope, receive, send)
            return
        if scope["type"] == "http" and scope["path"] == _QUIET_PATH:
            answer = Quiet(seconds=self.quiet_seconds(), in_flight=self.in_flight, idle_minutes=self.idle_minutes)
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
            )
            await send({"type": "http.response.body", "body": json.dumps(asdict(answer)).encode()})
            return
        self.in_flight += 1
        self.last = time.monotonic()
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            self.last = time.monotonic()


def _say(text: str) -> None:
    """A line of the server's log (its stdout)."""
    print(f"{datetime.now().astimezone():%H:%M:%S} | totes local-api: {text}", flush=True)


def _leave_if_quiet(activity: _Activity, idle_seconds: float) -> bool:
    """True when the server may stop: still quiet while no command is finding or starting it. Its
    record becomes a note of the stop, so the next command starts a new server rather than wait on
    this one, and ``totes local-api status`` says what happened."""
    prefect_home().mkdir(parents=True, exist_ok=True)
    with open(prefect_home() / "totes-local-api.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # a command is checking on the server: it is about to be used
            return False
        try:
            if activity.quiet_seconds() < idle_seconds:
                return False
            recorded = recorded_local_api()
            if recorded is not None and recorded.pid == os.getpid():
                note = {
                    "stopped_when_idle": datetime.now().astimezone().isoformat(),
                    "idle_minutes": activity.idle_minutes,
                }
                local_api_state_file().write_text(json.dumps(note))
            return True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


async def _serve_until_quiet(server: Any, activity: _Activity) -> None:
    idle_seconds = activity.idle_minutes * 60

    async def watch() -> None:
        # A check every 30 s (sooner for short settings): a few microseconds of work each.
        every = min(30.0, max(0.5, idle_seconds / 10))
        while not server.should_exit:
            await asyncio.sleep(every)
            if activity.quiet_seconds() >= idle_seconds and _leave_if_quiet(activity, idle_seconds):
                _say(f"no request for {activity.idle_minutes:g} min: stopping (the next totes command starts it again)")
                server.should_exit = True

    watcher = asyncio.ensure_future(watch()) if idle_seconds > 0 else None
    try:
        await server.serve()
    finally:
        if watcher is not None:
            watcher.cancel()


def _serve(*, port: int, idle_minutes: float) -> None:
    """The server process: Prefect's server app as ``prefect server start`` serves it (one process,
    its services in it), behind the activity middleware, until quiet for ``idle_minutes``."""
    import uvicorn
    from prefect.server.api.server import create_app
    from prefect.settings import get_current_settings

    settings = get_current_settings().server
    _slower_background_worker()
    activity = _Activity(create_app(final=True), idle_minutes=idle_minutes)
    config = uvicorn.Config(
        activity,
        host="127.0.0.1",
        port=port,
        timeout_keep_alive=settings.api.keepalive_timeout,
        ws_ping_interval=settings.api.websocket_ping_interval,
        ws_ping_timeout=settings.api.websocket_ping_timeout,
        log_level=str(settings.logging_level).lower(),
    )
    stops = f"stops after {idle_minutes:g} min without a request" if idle_minutes > 0 else "never stops by itself"
    _say(f"Prefect {_prefect_version()} API at http://127.0.0.1:{port}/api, UI at http://127.0.0.1:{port}; it {stops}")
    asyncio.run(_serve_until_quiet(uvicorn.Server(config), activity))
    _say("stopped")


def _slower_background_worker() -> None:
    """Prefect's worker of background tasks (docket) looks for due work every 0.25 s. With the
    services that give it work off, what is left (hourly clean-ups, chores after an API call) can
    wait 2 s: 40 % less idle CPU, measured here. Left as it is if Prefect's module changes."""
    from datetime import timedelta
    from functools import partial

    try:
        from prefect.server.api import background_workers
    except ImportError:
        return
    worker = getattr(background_workers, "Worker", None)
    if isinstance(worker, type):
        every = timedelta(seconds=2)
        slower = partial(worker, minimum_check_interval=every, scheduling_resolution=every)
        setattr(background_workers, "Worker", slower)  # noqa: B010 - rebinding Prefect's name, not an attribute of ours


def _prefect_version() -> str:
    import prefect

    return str(prefect.__version__)


if __name__ == "__main__":
    arguments = argparse.ArgumentParser(description="totes's local Prefect server (started by the totes commands)")
    arguments.add_argument("--port", type=int, required=True)
    arguments.add_argument("--idle-minutes", type=float, default=DEFAULT_IDLE_MINUTES)
    arguments.add_argument(
        "--prefect-home", type=Path, help="PREFECT_HOME, as an absolute path (the server runs in it)"
    )
    options = arguments.parse_args()
    if options.prefect_home:  # before Prefect reads its settings
        os.environ["PREFECT_HOME"] = str(options.prefect_home)
    _serve(port=options.port, idle_minutes=options.idle_minutes)
