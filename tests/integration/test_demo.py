"""``totes demo`` as a new user runs it (no PREFECT_API_URL, no database, no lake, nothing but Python):
it succeeds, and its output is for a person: short, no traceback (not even for the file it
quarantines on purpose), no task-run state chatter, no connection chatter, ending on ``totes status``
and a hand-over: what it left running and how to stop it, where the warehouse and the lake are and how
to query them, the Prefect UI; and the line it gives makes ``totes status`` work in the user's shell."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from tasks.core.prefect_api import prefect_home
from tasks.sandbox.embedded_postgres import embedded_postgres_pid


def test_demo_runs_end_to_end_and_prints_a_short_readable_story(tmp_path):
    # The session's PREFECT_HOME (tests/conftest.py): the demo shares the session's local API.
    env = {name: value for name, value in os.environ.items() if not name.startswith(("TOTES_", "PREFECT_API"))}
    demo_dir = tmp_path / "demo"
    demo = subprocess.run(
        [sys.executable, "-m", "flows.cli", "demo", "--dir", "demo", "--scale", "0.05"],
        env=env,
        cwd=tmp_path,  # where the user stands: the hand-over's paths are relative to it
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    output = demo.stdout + demo.stderr
    print(output)
    try:
        assert demo.returncode == 0, demo.stderr
        _assert_story(output)
        _assert_hand_over(output, demo_dir, env)
    finally:
        subprocess.run(
            [sys.executable, "-m", "tasks.sandbox.embedded_postgres", "stop", str(demo_dir / "pgdata")],
            env=env,
            timeout=60,
            check=False,
        )
    assert embedded_postgres_pid(demo_dir / "pgdata") is None, "the printed stop command stops the database"


def _assert_story(output: str) -> None:
    lines = output.splitlines()
    assert len(lines) < 170, f"the demo printed {len(lines)} lines"
    assert "Traceback" not in output
    assert "Finished in state" not in output
    assert "asyncssh" not in output
    assert "quarantined" in output  # the malformed file, in one line of the feeds report
    assert "=== Where it all stands: totes status ===" in output
    assert "Pending: transform none; load none" in output
    # Each of its six runs (two ETL cycles, four files cycles) printed its link in the Prefect UI.
    assert (
        len(re.findall(r"In the Prefect UI: http://127\.0\.0\.1:\d+/runs/flow-run/[0-9a-f-]{36}$", output, re.M)) == 6
    )


def _assert_hand_over(output: str, demo_dir, env: dict[str, str]) -> None:
    hand_over = output.split("=== What the demo leaves you ===")[1]
    api = json.loads((prefect_home() / "totes-local-api.json").read_text())
    postgres = embedded_postgres_pid(demo_dir / "pgdata")
    assert postgres is not None, "the demo leaves its PostgreSQL running, for the user to look around"
    assert (
        f"Left running: the embedded PostgreSQL (process {postgres}) and the local Prefect API (process {api['pid']})"
        in hand_over
    )
    assert "which stops by itself after 30 minutes without a request" in hand_over
    (stop_both,) = [
        line.split("To stop both now: ")[1] for line in hand_over.splitlines() if "To stop both now: " in line
    ]
    stop_postgres, stop_api = stop_both.split("; ")
    assert stop_postgres.endswith("-m tasks.sandbox.embedded_postgres stop demo/pgdata")
    assert stop_api.endswith("totes local-api stop")
    assert f"Prefect UI: {api['url'].removesuffix('/api')}" in hand_over
    warehouse = f"postgresql://postgres:@/warehouse?host={demo_dir / 'pgdata'}"
    assert f"Warehouse: {warehouse} (a unix socket, no password)" in hand_over
    assert "select * from current_fact_sales_order" in hand_over
    assert (
        "Lake: demo/lake" in hand_over and "pl.read_parquet('demo/lake/star/fact_sales_order/*/*.parquet')" in hand_over
    )

    # The line it gives, typed where the demo ran: totes status answers.
    (go_on,) = [line.strip() for line in hand_over.splitlines() if line.strip().startswith(". demo/totes.env;")]
    assert go_on.endswith(" status")
    status = subprocess.run(
        ["sh", "-c", go_on], cwd=demo_dir.parent, env=env, capture_output=True, text=True, timeout=300
    )
    assert status.returncode == 0, status.stderr
    assert "Pending: transform none; load none" in status.stdout
    assert "password" not in (demo_dir / "totes.env").read_text().lower()

    # The stop command it gives stops the database (the local API is the test session's: left running).
    stopped = subprocess.run(
        ["sh", "-c", stop_postgres], cwd=demo_dir.parent, env=env, capture_output=True, text=True, timeout=60
    )
    assert stopped.returncode == 0 and stopped.stdout.strip() == "stopped", stopped.stdout + stopped.stderr
