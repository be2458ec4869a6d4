"""`make bench` works on a clean clone: the whole benchmark at a tiny scale, into a scratch folder.

Nothing here is timed (timed assertions do not belong in tests); the test checks that every variant
ran and wrote the same warehouse rows, and that the results and the chart were written.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO


def test_the_benchmark_runs_every_variant_and_writes_its_results(tmp_path):
    results = tmp_path / "results"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--scales",
            "0.02",
            "--baseline-insert-seconds",
            "600",
            "--fan-out-up-to",
            "0",
            "--results",
            str(results),
            "--work",
            str(tmp_path / "work"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    measured = {m["variant"]: m for m in json.loads((results / "results.json").read_text())["results"]}
    full, limit, baseline = (
        measured[v] for v in ("(a) totes run, full", "(d) physical limit", "(c) baseline pg8000+pandas")
    )
    # The three pipelines build the same star: the same rows per table.
    assert baseline["extra"]["details"]["complete"]
    assert full["rows"] == limit["rows"] == baseline["rows"] > 0
    assert baseline["extra"]["details"]["tables"] == limit["extra"]["tables"]
    assert measured["(b) totes run, incremental"]["rows"] > 0
    assert all(m["peak_rss_mib"] > 0 and m["cpu_seconds"] > 0 for m in measured.values())
    # Where a run's time goes: each stage's seconds, the rest its fixed cost.
    assert list(full["stages"]) == ["ingest", "transform", "load"]
    assert 0 < sum(full["stages"].values()) < full["seconds"]
    assert {"no-op totes run, local API", "no-op totes run, temporary API", "local API start (once)"} <= set(measured)
    # Fan-out (f) is left out here (--fan-out-up-to 0): three fan-out runs of eleven child processes
    # each took CI's test run past its budget; test_fan_out.py runs fan-out on two workers.
    assert "| 0.02 | (a) totes run, full |" in (results / "results.md").read_text()
    assert (results / "chart.png").read_bytes().startswith(b"\x89PNG")
