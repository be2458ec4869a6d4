"""totes's local Prefect server and what a run prints with it, as a user sees them: the server stops
by itself after a quiet spell (``TOTES_LOCAL_API_IDLE_MINUTES``), ``totes local-api status`` says
when it will and that it did, and the next command starts it again; a run prints its link in the
Prefect UI; the libraries' warnings stay out of the default output (``-v`` shows them)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from tests.integration.conftest import wait_for


def _totes(*args: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def _gone(pid: int) -> bool:
    """The process has ended (a zombie no one has reaped yet counts as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


_QUIET_COMMAND = """
import time

from flows.cli.main import _prefect_api
from flows.cli.local_api import look_at_local_api
from tasks.settings import load_settings

with _prefect_api(load_settings()):
    time.sleep(20)
    assert look_at_local_api() is not None, "the server stopped under a command"
"""


def test_the_local_api_stops_by_itself_after_a_quiet_spell_and_the_next_command_starts_it_again(tmp_path):
    from flows.cli.local_api import healthy, quiet
    from tasks.core.prefect_api import LocalApi

    home = tmp_path / "prefect-home"
    env = {name: value for name, value in os.environ.items() if not name.startswith(("TOTES_", "PREFECT_API"))}
    env |= {"PREFECT_HOME": str(home), "TOTES_LOCAL_API_IDLE_MINUTES": "0.2"}  # 12 s
    started = _totes("local-api", "start", env=env)
    assert started.returncode == 0, started.stderr
    api = LocalApi(**json.loads((home / "totes-local-api.json").read_text()))
    try:
        assert "it stops by itself after 0.2 minutes without a request" in started.stdout
        assert api.idle_minutes == 0.2

        # A request sets its quiet clock back; asking how quiet it is does not.
        time.sleep(2)
        assert quiet(api).seconds >= 2
        assert quiet(api).seconds >= 2
        assert healthy(api.url)
        assert quiet(api).seconds < 1.5
        status = _totes("local-api", "status", env=env)
        assert status.returncode == 0, status.stderr
        assert re.search(
            r"quiet for \d+ s; it stops by itself after 0\.2 minutes without a request \(at", status.stdout
        )

        wait_for(lambda: quiet(api) is None, timeout=60, what="the quiet server to stop")
        wait_for(lambda: _gone(api.pid), timeout=30, what="the quiet server's process to end")
        stopped = _totes("local-api", "status", env=env)
        assert stopped.returncode == 0, stopped.stderr
        assert re.search(
            r"not running: it stopped by itself at .* after 0\.2 minutes without a request \(the next totes run starts it\)",
            stopped.stdout,
        ), stopped.stdout
        assert "no request for 0.2 min: stopping" in Path(api.log).read_text()

        again = _totes("local-api", "start", env=env)
        assert again.returncode == 0, again.stderr
        assert "Starting a local Prefect server in the background" in again.stderr
        restarted = LocalApi(**json.loads((home / "totes-local-api.json").read_text()))
        assert restarted.pid != api.pid and healthy(restarted.url)

        # A command that goes quiet for longer than the spell (waiting for a lock, say) keeps it.
        waited = subprocess.run(
            [sys.executable, "-c", _QUIET_COMMAND], env=env, capture_output=True, text=True, timeout=120
        )
        assert waited.returncode == 0, waited.stdout + waited.stderr
        assert quiet(restarted) is not None
    finally:
        _totes("local-api", "stop", env=env)


# A command that meets two warnings after its start: a library's (what a partner's SFTP server that
# offers only finite-field Diffie-Hellman makes asyncssh do: cryptography's
# CryptographyDeprecationWarning, attributed to asyncssh) and one about totes's own code.
_WARNED_COMMAND = """
import sys
import warnings

from flows.cli import main as cli

read_settings = cli.load_settings


def load_settings():
    from asyncssh.crypto.dh import DH
    from asyncssh.kex_dh import _group14_g, _group14_p

    DH(_group14_g, _group14_p)
    warnings.warn_explicit("a warning about totes's own code", UserWarning, "tasks/example.py", 1, module="tasks.example")
    return read_settings()


cli.load_settings = load_settings
sys.exit(cli.main(sys.argv[1:]))
"""


def test_a_run_prints_its_link_in_the_prefect_ui_and_no_library_warnings(pipeline):
    from tasks.core.prefect_api import prefect_home

    pipeline.seed(scale=0.02)
    # Without PREFECT_API_URL, as a user: the session's local API (tests/conftest.py).
    env = {name: value for name, value in os.environ.items() if name != "PREFECT_API_URL"}
    run = subprocess.run(
        [sys.executable, "-c", _WARNED_COMMAND, "run"], env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    output = run.stdout + run.stderr
    ui = json.loads((prefect_home() / "totes-local-api.json").read_text())["url"].removesuffix("/api")
    links = re.findall(rf"In the Prefect UI: {re.escape(ui)}/runs/flow-run/[0-9a-f-]{{36}}$", output, re.M)
    assert len(links) == 1, output
    assert "CryptographyDeprecationWarning" not in output and "asyncssh" not in output
    assert "a warning about totes's own code" in output
    assert [line for line in output.splitlines() if "Warning:" in line] == [
        line for line in output.splitlines() if "a warning about totes's own code" in line
    ]

    verbose = subprocess.run(
        [sys.executable, "-c", _WARNED_COMMAND, "-v", "local-api"], env=env, capture_output=True, text=True, timeout=120
    )
    assert verbose.returncode == 0, verbose.stderr
    assert "CryptographyDeprecationWarning" in verbose.stderr, "-v shows the libraries' warnings"
