"""Every entrypoint of every prefect.yaml imports and resolves to a Prefect flow; the deployments are
declared once (prefect.yaml): the local file declares the same, and ``totes serve`` serves them."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
import yaml
from prefect.flows import Flow, load_flow_from_entrypoint

from flows.served import PREFECT_YAML, declared_deployments, served_deployments
from tests.conftest import REPO

FILES = [REPO / "prefect.yaml", REPO / "deployments" / "local.prefect.yaml"]
ENTRYPOINTS = sorted(
    {(path.name, d["name"], d["entrypoint"]) for path in FILES for d in yaml.safe_load(path.read_text())["deployments"]}
)


@pytest.mark.parametrize(("file", "deployment", "entrypoint"), ENTRYPOINTS)
def test_entrypoint_resolves_to_a_flow(file, deployment, entrypoint, monkeypatch):
    monkeypatch.chdir(REPO)
    assert isinstance(load_flow_from_entrypoint(entrypoint), Flow), f"{file}: {deployment}"


def test_both_files_declare_the_same_deployments():
    production, local = ([replace(d, description="") for d in declared_deployments(path.read_text())] for path in FILES)
    assert production == local, "deployments/local.prefect.yaml must declare what prefect.yaml declares"


def test_the_package_ships_prefect_yaml():
    assert PREFECT_YAML.read_text() == (REPO / "prefect.yaml").read_text()


def test_totes_serve_serves_what_prefect_yaml_declares(monkeypatch):
    monkeypatch.chdir(REPO)
    declared = {d.name: d for d in declared_deployments((REPO / "prefect.yaml").read_text())}
    served = {d.name: d for d in served_deployments(interval_seconds=600)}
    assert served.keys() == declared.keys()
    assert len(served) == 9
    for name, deployment in served.items():
        assert deployment.flow_name == load_flow_from_entrypoint(declared[name].entrypoint).name, name
        assert deployment.parameters == declared[name].parameters, name
        assert (deployment.concurrency_limit is not None) == declared[name].one_at_a_time, name
    intervals = {
        name: [s.schedule.interval for s in d.schedules if hasattr(s.schedule, "interval")]
        for name, d in served.items()
    }
    assert {name for name, found in intervals.items() if found} == {"totesys-etl", "totesys-files"}
    assert all(found == [timedelta(seconds=600)] for found in intervals.values() if found)
    (reconcile,) = served["totesys-reconcile"].schedules
    assert reconcile.schedule.cron == "30 2 * * *"
    assert served["totesys-reconcile"].parameters == {"reconcile": True}
    assert served["totesys-extract-table"].concurrency_limit is None
