"""``python -m bench.rebuild``: ``totes rebuild`` at production length, on a default PostgreSQL.

A lake of many small batches, made in seconds: a seeded source, ``totes run``, ``totes churn``,
``totes run`` (a full batch, then a churn batch), then copies of the churn batch's manifests under
the next batch ids, 15 minutes apart (:func:`clone_batches`): what a cycle every 15 minutes
leaves in the lake, 96 a day. For each count of batches, ``totes rebuild --yes`` into a fresh
warehouse database of the embedded PostgreSQL (the ``pgserver`` wheel, its default settings:
``max_connections`` 100, ``max_locks_per_transaction`` 64), while a thread polls ``pg_locks``: the
most locks one backend held at once. ``--code DIR`` runs the rebuild of another checkout (e.g. the
code before, exported with ``git archive HEAD``), for before/after figures.

Usage: python -m bench.rebuild [--batches 50 200 1000] [--code DIR ...] [--scale 0.02] [--work DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# The locks of every backend of the database but the asker's, per backend.
_LOCKS_PER_BACKEND = (
    "select count(*) from pg_locks as locks join pg_stat_activity as activity on activity.pid = locks.pid "
    "where activity.datname = current_database() and locks.pid <> pg_backend_pid() group by locks.pid"
)


# The rebuild's last line: "Warehouse rebuilt from 200 lake batch(es); the swap took 0.3 s".
_SWAP = re.compile(r"the swap took ([\d.]+) s")


def clone_batches(lake_url: str, count: int) -> list[str]:
    """``count`` more batches, each a copy of the lake's last (its raw and star manifests, naming the
    same Parquet files) under the next batch id, 15 minutes apart; their ids. A copy reads as a cycle
    that found the same rows again: loading it re-observes them, the warehouse ends as after the last
    real batch, and the next cycle carries on from the same watermarks."""
    from tasks.core.lake import STAR, Lake, batch_sequence, new_batch_id
    from tasks.load.history import batch_time

    lake = Lake.from_url(lake_url)
    last = lake.list_batches(STAR)[-1]
    raw, star = lake.read_raw_manifest(last), lake.read_star_manifest(last)
    made = []
    for step in range(1, count + 1):
        batch_id = new_batch_id(batch_sequence(last) + step, batch_time(last) + timedelta(minutes=15 * step))
        lake.write_raw_manifest(dataclasses.replace(raw, batch_id=batch_id))
        lake.write_star_manifest(dataclasses.replace(star, batch_id=batch_id))
        made.append(batch_id)
    return made


class PeakLocks:
    """The most locks one backend of the database held at once, polled every 10 ms in a thread."""

    def __init__(self, url: str):
        self.url = url
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        from tasks.core.postgres import DatabaseError, connect

        with connect(self.url) as connection, connection.cursor() as cursor:
            while not self._stop.is_set():
                try:
                    cursor.execute(_LOCKS_PER_BACKEND)
                    self.peak = max([self.peak, *(count for (count,) in cursor.fetchall())])
                except DatabaseError:
                    pass  # the lock table full: this very query is refused (the rebuild's own error says so)
                connection.rollback()
                self._stop.wait(0.01)

    def __enter__(self) -> PeakLocks:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def totes(env: dict[str, str], *args: str, code: Path = REPO) -> subprocess.CompletedProcess:
    """``totes <args>`` from the checkout ``code`` (its own ``tasks`` and ``flows`` come first)."""
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args], cwd=code, env=env, capture_output=True, text=True, check=False
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[50, 200, 1000])
    parser.add_argument("--code", type=Path, nargs="+", default=[REPO], help="checkouts whose rebuild to measure")
    parser.add_argument("--scale", type=float, default=0.02, help="the seeded source's size")
    parser.add_argument("--work", type=Path, default=REPO / ".totes" / "bench-rebuild")
    args = parser.parse_args()

    from tasks.sandbox.embedded_postgres import recreate_databases, start_embedded_postgres

    work: Path = args.work
    server = start_embedded_postgres(work / "pg", fresh=True)
    urls = recreate_databases(server, ("bench_source", "bench_warehouse"))
    lake = work / "lake"
    shutil.rmtree(lake, ignore_errors=True)
    env = dict(os.environ, PREFECT_HOME=str(work / "prefect"), TOTES_SOURCE_URL=urls["bench_source"])
    env |= {"TOTES_WAREHOUSE_URL": urls["bench_warehouse"], "TOTES_LAKE_URL": str(lake)}
    env.pop("PREFECT_API_URL", None)
    results = []
    try:
        for command in (["seed", "--scale", str(args.scale)], ["run"], ["churn", "--orders", "20"], ["run"]):
            done = totes(env, *command)
            if done.returncode:
                raise RuntimeError(f"totes {' '.join(command)} failed:\n{done.stderr[-2000:]}")
        for batches in args.batches:
            copy = work / f"lake-{batches}"
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(lake, copy)
            clone_batches(str(copy), batches - 2)
            for code in args.code:
                name = f"bench_rebuild_{batches}"
                url = recreate_databases(server, (name,))[name]
                started = time.perf_counter()
                with PeakLocks(url) as locks:
                    done = totes(
                        env | {"TOTES_WAREHOUSE_URL": url, "TOTES_LAKE_URL": str(copy)},
                        *("-v", "rebuild", "--yes"),
                        code=code,
                    )
                seconds = time.perf_counter() - started
                failed = [line for line in done.stderr.splitlines() if line.startswith("totes rebuild: failed")]
                outcome = failed[-1][:300] if failed else "done"
                # The code before logged each batch merged: how far its first attempt got.
                first_attempt = done.stderr.split("out of shared memory")[0]
                results.append(
                    {
                        "code": str(code),
                        "batches": batches,
                        "seconds": round(seconds, 1),
                        "peak_locks": locks.peak,
                        "outcome": outcome,
                        "merged_before_failure": first_attempt.count("Rebuild: batch") if done.returncode else None,
                        # What readers waited for (the rebuild's last step; the code before: all of it).
                        "swap_seconds": float(swap.group(1)) if (swap := _SWAP.search(done.stderr)) else None,
                    }
                )
                print(json.dumps(results[-1]), flush=True)
    finally:
        totes(env, "local-api", "stop")
    (work / "results.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
