"""``totes serve``: every deployment prefect.yaml declares, served from this process.

prefect.yaml is where the deployments are declared, once: their names, flows, parameters, schedules
and whether two runs may overlap. ``prefect deploy`` registers them for the ECS pool (and
deployments/local.prefect.yaml, checked against it by tests/unit/test_entrypoints.py, for a local
process pool); ``totes serve`` reads the same file — shipped in the package as flows/prefect.yaml, a
link to it — and serves them from one process, its intervals replaced by ``--interval``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import yaml
from prefect import Flow, serve
from prefect.deployments.runner import RunnerDeployment

PREFECT_YAML = Path(__file__).with_name("prefect.yaml")


@dataclass(frozen=True)
class DeclaredDeployment:
    """One deployment as prefect.yaml declares it, in what serving it needs."""

    name: str
    entrypoint: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    interval: int | None = None
    cron: str | None = None
    one_at_a_time: bool = False


def declared_deployments(text: str) -> list[DeclaredDeployment]:
    """The deployments a prefect.yaml declares (a deployment has one schedule at most)."""
    declared = []
    for body in yaml.safe_load(text)["deployments"]:
        schedule = (body.get("schedules") or [{}])[0]
        declared.append(
            DeclaredDeployment(
                name=body["name"],
                entrypoint=body["entrypoint"],
                description=" ".join(str(body.get("description", "")).split()),
                parameters=dict(body.get("parameters") or {}),
                interval=schedule.get("interval"),
                cron=schedule.get("cron"),
                one_at_a_time=(body.get("concurrency_limit") or {}).get("limit") == 1,
            )
        )
    return declared


def _flow(entrypoint: str) -> Flow[..., Any]:
    """The flow of an entrypoint, ``flows/etl.py:totesys_etl`` -> flows.etl.totesys_etl."""
    path, name = entrypoint.split(":")
    return cast(Flow[..., Any], getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), name))


def served_deployments(*, interval_seconds: int) -> list[RunnerDeployment]:
    """Every declared deployment, to serve from this process: the scheduled ones every
    ``interval_seconds`` (or on their cron), never two runs of one at once where prefect.yaml says
    so, the others on demand."""
    served = []
    for declared in declared_deployments(PREFECT_YAML.read_text()):
        # to_deployment is sync_compatible: called from sync code it returns the deployment itself.
        deployment = _flow(declared.entrypoint).to_deployment(
            name=declared.name,
            description=declared.description or None,
            interval=interval_seconds if declared.interval else None,
            cron=declared.cron,
            parameters=declared.parameters,
            concurrency_limit=1 if declared.one_at_a_time else None,
        )
        served.append(cast(RunnerDeployment, deployment))
    return served


def serve_deployments(*, interval_seconds: int) -> None:
    """``totes serve``: serve :func:`served_deployments` until stopped."""
    serve(*served_deployments(interval_seconds=interval_seconds))
