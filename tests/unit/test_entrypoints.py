"""Every entrypoint of every prefect.yaml imports and resolves to a Prefect flow."""

from __future__ import annotations

import pytest
import yaml
from prefect.flows import Flow, load_flow_from_entrypoint

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
    names = [[(d["name"], d["entrypoint"]) for d in yaml.safe_load(p.read_text())["deployments"]] for p in FILES]
    assert names[0] == names[1]
