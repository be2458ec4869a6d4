"""``totes demo`` as a new user runs it (no PREFECT_API_URL, no database, no lake, nothing but Python):
it succeeds, and its output is for a person: short, no traceback (not even for the file it
quarantines on purpose), no task-run state chatter, no connection chatter, ending on ``totes status``."""

from __future__ import annotations

import os
import subprocess
import sys


def test_demo_runs_end_to_end_and_prints_a_short_readable_story(tmp_path):
    # The session's PREFECT_HOME (tests/conftest.py): the demo shares the session's local API.
    env = {name: value for name, value in os.environ.items() if not name.startswith(("TOTES_", "PREFECT_API"))}
    demo = subprocess.run(
        [sys.executable, "-m", "flows.cli", "demo", "--dir", str(tmp_path / "demo"), "--scale", "0.05"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = demo.stdout + demo.stderr
    print(output)
    assert demo.returncode == 0, demo.stderr
    lines = output.splitlines()
    assert len(lines) < 150, f"the demo printed {len(lines)} lines"
    assert "Traceback" not in output
    assert "Finished in state" not in output
    assert "asyncssh" not in output
    assert "quarantined" in output  # the malformed file, in one line of the feeds report
    assert "=== Where it all stands: totes status ===" in output
    assert "Pending: transform none; load none" in output
