"""Alerts on failed runs (which deployment, which task, what error, and a link to the run) and on
runs that succeeded with new data-quality warnings (rows quarantined, inferred members, drift).

Delivered from the flows' ``on_failure`` hooks to an SNS topic (``TOTES_ALERT_SNS_TOPIC_ARN``: email
subscriptions, as hand-built pipelines do today with CloudWatch + SNS) and to any Prefect notification
block (``TOTES_ALERT_BLOCK``, e.g. ``slack-webhook/data-eng``). A run whose process is killed cannot
alert from inside: the Prefect automation in ``deployments/automations.yaml`` covers crashed runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from tasks.settings import TotesSettings, load_settings, scrub

log = logging.getLogger("totes.alerts")


@dataclass(frozen=True)
class FailureAlert:
    """What an operator needs to act on a failed run."""

    flow: str
    flow_run: str
    deployment: str
    failed_task: str
    error: str
    run_url: str

    @property
    def subject(self) -> str:
        return f"totes: {self.deployment} failed in {self.failed_task}"[:100]

    @property
    def body(self) -> str:
        return (
            f"The totes flow run {self.flow_run!r} ({self.flow}) failed.\n\n"
            f"Deployment: {self.deployment}\n"
            f"Failed task: {self.failed_task}\n"
            f"Error: {self.error}\n"
            f"Run: {self.run_url}\n"
        )


def _failed_task_runs(flow_run_id: Any) -> list[tuple[str, str]]:
    """(task run name, state message) of the failed task runs of a flow run and its subflows."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterParentFlowRunId,
        TaskRunFilter,
        TaskRunFilterState,
        TaskRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort, TaskRunSort

    with get_client(sync_client=True) as client:
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id])),
            sort=FlowRunSort.ID_DESC,
            limit=200,
        )
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id, *(c.id for c in children)])),
            task_run_filter=TaskRunFilter(
                state=TaskRunFilterState(type=TaskRunFilterStateType(any_=[StateType.FAILED, StateType.CRASHED]))
            ),
            sort=TaskRunSort.EXPECTED_START_TIME_DESC,
            limit=200,
        )
    # A subflow is recorded as a task run of its parent too: report the real tasks only.
    subflow_runs = {child.parent_task_run_id for child in children}
    return [
        (_task_name(run.name, run.dynamic_key), (run.state.message if run.state else None) or "")
        for run in runs
        if run.id not in subflow_runs
    ]


def _task_name(run_name: str, dynamic_key: str) -> str:
    """The task's name from its run's: Prefect names a run ``<task>-<first 3 characters of its
    dynamic key>`` unless the task sets its own run name (e.g. ``extract-sales_order``)."""
    for suffix in (f"-{dynamic_key}", f"-{dynamic_key[:3]}"):
        if dynamic_key and run_name.endswith(suffix):
            return run_name.removesuffix(suffix)
    return run_name


def _run_url(flow_run_id: Any) -> str:
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    base = PREFECT_UI_URL.value() or (PREFECT_API_URL.value() or "").removesuffix("/api")
    return f"{base}/runs/flow-run/{flow_run_id}" if base else f"flow run {flow_run_id}"


def describe_failure(flow: Any, flow_run: Any, state: Any, settings: TotesSettings | None) -> FailureAlert:
    """Build the alert of a failed flow run from Prefect's records (API) and the final state."""
    from prefect.runtime import deployment

    try:
        failed = _failed_task_runs(flow_run.id)
    except Exception as api_error:  # noqa: BLE001 - an alert must still go out if the API is the problem
        log.warning("could not read the failed task runs: %s", api_error)
        failed = []
    error = state.message or ""
    exception = state.data if isinstance(getattr(state, "data", None), BaseException) else None
    if exception is not None:
        error = f"{type(exception).__name__}: {exception}"
    return FailureAlert(
        flow=flow.name,
        flow_run=flow_run.name,
        deployment=deployment.name or f"{flow.name} (run without a deployment)",
        failed_task=", ".join(sorted({name for name, _ in failed})) or "the flow itself",
        error=scrub(error.strip(), settings)[:2000],
        run_url=_run_url(flow_run.id),
    )


@dataclass(frozen=True)
class DataQualityAlert:
    """A run that succeeded but set data aside or loaded it with a caveat: what, and where to look."""

    flow: str
    warnings: tuple[str, ...]
    run_url: str

    @property
    def subject(self) -> str:
        return f"totes: {self.flow} loaded with {len(self.warnings)} data-quality warning(s)"[:100]

    @property
    def body(self) -> str:
        listed = "\n".join(f"- {warning}" for warning in self.warnings)
        return (
            f"The totes flow {self.flow} completed; good data was loaded, but:\n\n{listed}\n\n"
            "Quarantined rows are in the lake (star/_quarantine_<table>, raw/_unreadable_<table>); a "
            "corrected row in the source arrives as a new version.\n"
            f"Run: {self.run_url}\n"
        )


def alert_on_warnings(flow_name: str, warnings: list[str]) -> list[str]:
    """Send a data-quality alert when a successful run has new warnings; returns where it went."""
    if not warnings:
        return []
    from prefect.runtime import flow_run

    settings = load_settings()
    alert = DataQualityAlert(
        flow=flow_name, warnings=tuple(scrub(w, settings) for w in warnings), run_url=_run_url(flow_run.id)
    )
    try:
        sent = deliver(alert, settings)
    except Exception as error:  # noqa: BLE001 - the run's data is loaded; a failed alert must not fail it
        log.error("could not send the data-quality alert: %s", scrub(str(error), settings))
        return []
    log.warning("%s\n%s", alert.subject, alert.body)
    return sent


def deliver(alert: FailureAlert | DataQualityAlert, settings: TotesSettings) -> list[str]:
    """Send the alert to every configured channel; returns where it went."""
    sent = []
    if settings.alert_sns_topic_arn:
        import boto3

        boto3.client("sns").publish(TopicArn=settings.alert_sns_topic_arn, Subject=alert.subject, Message=alert.body)
        sent.append(settings.alert_sns_topic_arn)
    if settings.alert_block:
        from prefect.blocks.core import Block

        # sync_compatible: the block itself when called from sync code; a notification block has notify()
        block: Any = Block.load(settings.alert_block)
        block.notify(body=alert.body, subject=alert.subject)
        sent.append(settings.alert_block)
    return sent


def alert_on_failure(flow: Any, flow_run: Any, state: Any) -> None:
    """Prefect ``on_failure`` hook of the totes flows (a failing subflow alerts through its parent)."""
    if getattr(flow_run, "parent_task_run_id", None) is not None:
        return
    settings = None
    try:
        settings = load_settings()
        alert = describe_failure(flow, flow_run, state, settings)
        sent = deliver(alert, settings)
        log.error("%s\n%s", alert.subject, alert.body)
        if sent:
            log.info("alert sent to %s", ", ".join(sent))
    except Exception as error:  # noqa: BLE001 - a failing alert must not mask the run's own failure
        log.error("could not send the failure alert: %s", scrub(str(error), settings))
