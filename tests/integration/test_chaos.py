"""Chaos: ``totes run`` and ``totes files`` killed with SIGKILL at random moments, on a churning source
and a changing SFTP folder, then run to completion; the warehouse must equal the independent
expectation, with no duplicate and nothing lost.

The short form runs in CI (``TOTES_CHAOS_KILLS``, default 6); ``make chaos`` runs the long form (50).
Each kill is aimed at a stage (extract and lake writes, watermark commit, transform, COPY and merge,
SFTP fetch, staging, feed load, or a random moment): the test reads the child's log and kills it a
random fraction of a second after the line that starts that stage. The random seed is printed, and
``TOTES_CHAOS_SEED`` replays the same choices.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import subprocess
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from decimal import Decimal

import pytest

from tasks.core.lake import Lake, batch_sequence
from tests.integration.conftest import Feeds, rates_file

# Where to aim a kill: (command, stage, the log line after which the stage runs, the longest delay
# after that line). Kills land just after the trigger line, inside the stage (or, for a stage that is
# over very fast at the test's scale, just after it: then the next stage).
TARGETS = (
    ("run", "extract and lake writes", "[read-source-horizon-", 0.3),
    ("run", "watermark commit", "[extract-payment]: Finished", 0.15),
    ("run", "transform", "[record-ingest-batch-", 0.4),
    ("run", "COPY and merge", "[migrate-warehouse-", 0.3),
    ("run", "anywhere (random time)", "Beginning flow run", 4.0),
    ("files", "fetch", "Beginning flow run", 1.0),
    ("files", "staging", "[fetch-exchange_rates]: Finished", 0.3),
    ("files", "feed load", "[stage-exchange_rates]: Finished", 0.3),
)


def kill_after(child: subprocess.Popen, trigger: str, delay: float) -> bool:
    """Read the child's log until ``trigger``, wait ``delay`` s, SIGKILL it. False if it ended first.

    The totes process alone is killed, as the OOM killer would; then its session, where Prefect's
    temporary local API (a child process that outlives it and holds the log pipe) still runs."""
    killed = False
    for line in child.stderr:
        if trigger in line:
            time.sleep(delay)
            child.kill()
            child.wait(timeout=60)
            killed = child.returncode == -9
            break
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)
    child.communicate(timeout=60)
    return killed


def change_feed_files(feeds: Feeds, rng: random.Random, day: int) -> None:
    """Drop a new rates file, amend one, or remove one."""
    present = sorted(p.name for p in feeds.folder.glob("*.csv"))
    action = rng.choice(["drop", "drop", "amend", "remove"]) if present else "drop"
    if action == "drop":
        feeds.drop(f"rates-{day:04d}.csv", rates_file(date(2023, 1, 1) + timedelta(days=7 * day), 7))
    elif action == "amend":
        name = rng.choice(present)
        first = date(2023, 1, 1) + timedelta(days=7 * int(re.search(r"\d+", name).group()))
        feeds.drop(
            name, rates_file(first, rng.randint(1, 7), {"GBP": Decimal(1), "USD": Decimal(rng.randint(120, 130)) / 100})
        )
    else:
        feeds.remove(rng.choice(present))


@pytest.mark.chaos
def test_sigkill_at_random_moments_then_rerun_converges(
    pipeline, sftp_server, versioned_files_url, prefect_api, monkeypatch, local_prefect_home
):
    kills_wanted = int(os.environ.get("TOTES_CHAOS_KILLS", "6"))
    seed = int(os.environ.get("TOTES_CHAOS_SEED", str(random.SystemRandom().randrange(10**6))))
    print(f"chaos: {kills_wanted} kills, seed {seed} (TOTES_CHAOS_SEED={seed} replays it)")
    rng = random.Random(seed)
    # The test's Prefect API is a temporary one, which never expires a killed run's leases on its
    # global concurrency limits: give the databases more slots than the kills can strand.
    monkeypatch.setenv("TOTES_DATABASE_CONCURRENCY", str(4 * kills_wanted + 8))
    env: dict[str, str | None] = {"PREFECT_API_URL": prefect_api}
    # As a new user runs it: no PREFECT_API_URL, so the runs share totes's local background Prefect
    # server (started by the first; a kill may land while it starts) and the connection slots are
    # advisory locks on the databases, with the default two slots.
    local = {"PREFECT_API_URL": None, "PREFECT_HOME": str(local_prefect_home), "TOTES_DATABASE_CONCURRENCY": "2"}
    feeds = Feeds(sftp_server.root, versioned_files_url, pipeline.warehouse_url)
    pipeline.seed(scale=0.05)

    def complete(command: str) -> None:
        if command == "run":
            pipeline.checkpoint()
        child = pipeline.run_cli(command, env=env)
        _, err = child.communicate(timeout=600)
        assert child.returncode == 0, f"totes {command} failed after the kills:\n{err[-3000:]}"

    # A first full cycle, so that kills land in incremental runs as well as in the first load.
    complete("run")
    hits: Counter[str] = Counter()
    finished = 0
    day = 0
    while sum(hits.values()) < kills_wanted:
        day += 1
        pipeline.churn(orders=rng.randint(5, 40))
        change_feed_files(feeds, rng, day)
        command, stage, trigger, longest = rng.choice(TARGETS)
        mode = rng.choice(["server", "local"])
        versions = pipeline.source_versions() if command == "run" else None
        child = pipeline.run_cli(command, env=env if mode == "server" else local, verbose=True, start_new_session=True)
        killed = kill_after(child, trigger, rng.uniform(0, longest))
        if killed:
            hits[f"{command}: {stage} ({mode} API)"] += 1
        else:
            finished += 1
        # A killed run may or may not have read the versions; a run that finished did read them.
        # (A version the next churn overwrites is gone from the source before any completed run
        # could read it: polling, like every non-CDC extractor, cannot see it.)
        if versions:
            pipeline.checkpoint(versions, required=not killed and child.returncode == 0)
    print(
        f"chaos: {sum(hits.values())} kills by stage aimed at: {dict(sorted(hits.items()))}; "
        f"{finished} runs finished before their kill"
    )

    # Two runs at once, one on each API (a schedule tick and a manual run): they take turns.
    pipeline.checkpoint()
    both = [pipeline.run_cli("run", env=env), pipeline.run_cli("run", env=local)]
    with ThreadPoolExecutor(2) as readers:  # read both logs at once: a full pipe would stall a run
        logs = list(readers.map(lambda child: child.communicate(timeout=600)[1], both))
    for child, err in zip(both, logs, strict=True):
        assert child.returncode == 0, f"concurrent totes run failed:\n{err[-3000:]}"
    complete("run")
    complete("files")
    sequences = [batch_sequence(batch) for batch in Lake.from_url(pipeline.lake_url).list_batches("raw")]
    assert sequences == list(range(1, len(sequences) + 1)), f"batch sequence numbers repeat or skip: {sequences}"
    pipeline.assert_warehouse_matches_source()
    assert feeds.actual() == feeds.expected(), "the exchange rates differ from the files on the SFTP server"
