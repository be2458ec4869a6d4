"""Fan-out: the cycle's extracts as flow runs of their own on the work pool, each in its own
process (an ECS task in production), instead of threads of the cycle's process.

Each source table's extract is a run of the ``extract-table`` flow, through a deployment
(``run_deployment``): a deployment is what a work pool runs, with its own image, CPU and memory, and
every child shows in the UI under the cycle's run. The cycle plans the batch (its id, the previous
watermarks, the source horizon), submits one child per table worth its start-up — a table this run
reads at least ``TOTES_FAN_OUT_MIN_ROWS`` rows of (tasks/ingest/fan_out_plan.py) — reads the
others itself meanwhile, and waits. Each child takes one of
the source's connection slots (the per-database limit bounds them, however many workers there
are), writes its table's new versions into the raw zone as the cycle itself would, and hands its
manifest entry over through the lake. Only when every child has completed does the cycle record the
batch's manifest, then transform and load as ever: a child that fails, crashes or is killed fails
the cycle, which records nothing; the next run reads those tables again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, cast

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.exceptions import ObjectNotFound

from flows.plain_flow import plain_flow
from tasks.core.concurrency import source_slots
from tasks.core.manifests import Horizon, RawTableEntry
from tasks.ingest.tasks import (
    IngestPlan,
    extract_table_delta,
    hand_over_extract,
    read_handed_over_extracts,
    read_previous_entry,
)
from tasks.schema import SOURCE_TABLES
from tasks.settings import TotesSettings, load_settings

# How often the cycle asks the API how its extract runs are doing.
_POLL_SECONDS = 1.0


class FanOutFailed(RuntimeError):
    """An extract run did not complete: the cycle records nothing."""


@plain_flow(name="extract-table")
def extract_table(table: str, batch_id: str, previous_batch_id: str | None, horizon: dict[str, Any]) -> int:
    """One source table's extract for a batch that a cycle has planned (fan-out): its new versions
    into the raw zone and its manifest entry where the cycle reads it, holding one of the source's
    connection slots. Returns the new versions read. The cycle alerts if it fails."""
    settings = load_settings()
    started = Horizon.from_json(horizon)
    if table not in SOURCE_TABLES or started is None:
        msg = f"extract-table: unknown source table {table!r} or no horizon"
        raise ValueError(msg)
    with source_slots(settings, wanted=1):
        entry = extract_table_delta(table, batch_id, read_previous_entry(previous_batch_id, table), started)
    hand_over_extract(batch_id, table, entry)
    return entry.data.rows


def submit_extract_runs(
    plan: IngestPlan, horizon: Horizon, tables: frozenset[str], settings: TotesSettings
) -> dict[str, FlowRun]:
    """Submit one child flow run of ``settings.fan_out_deployment`` per table of ``tables``; return
    them without waiting.

    Raises:
        FanOutFailed: the deployment does not exist.
    """
    from prefect.deployments import run_deployment

    parameters = {"batch_id": plan.batch_id, "previous_batch_id": plan.previous_batch_id, "horizon": horizon.to_json()}
    runs: dict[str, FlowRun] = {}
    try:
        for table in sorted(tables):
            # async_dispatch: called from a sync flow, it returns the flow run itself.
            runs[table] = cast(
                FlowRun,
                run_deployment(
                    settings.fan_out_deployment, parameters={"table": table, **parameters}, timeout=0, as_subflow=True
                ),
            )
    except ObjectNotFound as error:
        msg = (
            f"fan-out needs the deployment {settings.fan_out_deployment!r} of the extract-table flow "
            "(prefect.yaml and deployments/local.prefect.yaml declare it: prefect deploy --all); nothing was recorded"
        )
        raise FanOutFailed(msg) from error
    if runs:
        get_run_logger().info(
            "Fan-out: %d extract run(s) submitted to %s for batch %s",
            len(runs),
            settings.fan_out_deployment,
            plan.batch_id,
        )
    return runs


def collect_extract_runs(
    plan: IngestPlan, horizon: Horizon, runs: dict[str, FlowRun], settings: TotesSettings
) -> dict[str, RawTableEntry]:
    """Wait until every child run has ended; return their tables' manifest entries. A child its
    worker could not start (``Failed to submit flow run to infrastructure``: a busy API, an ECS
    capacity or throttling error; ``Flow run could not start``: its process did not start) is
    submitted again, up to ``SUBMIT_ATTEMPTS`` times in all: it never ran, so it wrote nothing.

    Raises:
        FanOutFailed: a child ended in any state but Completed, or not all had ended within
            ``settings.fan_out_timeout_seconds``.
    """
    if not runs:
        return {}

    def submit_again(table: str) -> FlowRun:
        return submit_extract_runs(plan, horizon, frozenset({table}), settings)[table]

    _wait_for(dict(runs), timeout_seconds=settings.fan_out_timeout_seconds, submit_again=submit_again)
    return read_handed_over_extracts(plan.batch_id, sorted(runs))


# How many times a child is submitted when its worker cannot start it, and the pause before the
# second submission (the third waits twice as long).
SUBMIT_ATTEMPTS = 3
_RESUBMIT_PAUSE_SECONDS = 2.0
# What a worker says of a run it could not start (prefect.workers.base: before the infrastructure
# took it; the runner's executor: its process did not start): nothing of it ran.
_NOT_STARTED = ("Failed to submit flow run to infrastructure", "Flow run could not start")


def _wait_for(runs: dict[str, FlowRun], *, timeout_seconds: float, submit_again: Callable[[str], FlowRun]) -> None:
    """Wait until every run has ended, logging each as it does, and submitting again, after a
    pause, a run its worker could not start; raise if any did not complete."""
    logger = get_run_logger()
    started = time.monotonic()
    ended: dict[str, FlowRun] = {}
    submitted = dict.fromkeys(runs, 1)
    # Runs to submit again, and when: a throttled or busy API, or ECS short of capacity, needs a pause.
    due: dict[str, float] = {}
    with get_client(sync_client=True) as client:
        while len(ended) < len(runs):
            if time.monotonic() - started > timeout_seconds:
                waiting = ", ".join(sorted(set(runs) - set(ended)))
                msg = f"fan-out: extract runs still not ended after {timeout_seconds:.0f} s: {waiting}; nothing was recorded"
                raise FanOutFailed(msg)
            time.sleep(_POLL_SECONDS)
            for table in [table for table, at in due.items() if time.monotonic() >= at]:
                del due[table]
                runs[table] = submit_again(table)
            for table, run in runs.items():
                if table in ended or table in due:
                    continue
                current = client.read_flow_run(run.id)
                if current.state is None or not current.state.is_final():
                    continue
                message = current.state.message or ""
                if message.startswith(_NOT_STARTED) and submitted[table] < SUBMIT_ATTEMPTS:
                    pause = _RESUBMIT_PAUSE_SECONDS * submitted[table]
                    submitted[table] += 1
                    logger.warning(
                        "Fan-out: the extract run of %s could not be started (%s); submitting it again in %.0f s "
                        "(attempt %d of %d)",
                        table,
                        message,
                        pause,
                        submitted[table],
                        SUBMIT_ATTEMPTS,
                    )
                    due[table] = time.monotonic() + pause
                    continue
                ended[table] = current
                logger.info(
                    "Fan-out: extract of %s %s (%d of %d ended)", table, current.state.name, len(ended), len(runs)
                )
    failed = {table: run for table, run in ended.items() if run.state is None or run.state.type != StateType.COMPLETED}
    if failed:
        reasons = "; ".join(
            f"{table}: {run.name} {run.state.name if run.state else 'no state'}"
            + (f" ({run.state.message})" if run.state and run.state.message else "")
            for table, run in sorted(failed.items())
        )
        msg = f"fan-out: {len(failed)} extract run(s) did not complete: {reasons}; nothing was recorded"
        raise FanOutFailed(msg)


if __name__ == "__main__":
    # ``python flows/fan_out.py``: one ETL cycle with each big table's extract on the work pool, as ``totes run --fan-out`` runs it (the same settings, Prefect API, output and exit
    # status). Handed to the command line by name: no flow module depends on the CLI.
    import runpy
    import sys

    sys.argv = ["totes", "run", "--fan-out"]
    runpy.run_module("flows.cli", run_name="__main__", alter_sys=True)
