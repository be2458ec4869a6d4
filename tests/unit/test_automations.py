"""deployments/automations.yaml stays complete: the crash alert names every flow prefect.yaml deploys,
the README's step sets every variable the file takes, and the README sections its comments cite exist."""

from __future__ import annotations

import re

import pytest
import yaml
from prefect.flows import load_flow_from_entrypoint

from tests.conftest import REPO

AUTOMATIONS = REPO / "deployments" / "automations.yaml"
README = (REPO / "README.md").read_text()


def automation(name: str) -> dict:
    return next(a for a in yaml.safe_load(AUTOMATIONS.read_text())["automations"] if a["name"] == name)


def test_crash_alert_names_every_deployed_flow(monkeypatch):
    monkeypatch.chdir(REPO)
    deployed = {
        load_flow_from_entrypoint(deployment["entrypoint"]).name
        for deployment in yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]
    }
    related = automation("totes-run-crashed")["trigger"]["match_related"]
    assert related["prefect.resource.role"] == "flow"
    assert set(related["prefect.resource.name"]) == deployed


def test_the_readme_step_sets_every_variable_of_the_file():
    production = README.split("### Run it in production", 1)[1].split("\n### ", 1)[0]
    variables = set(re.findall(r"\$\{([A-Z_]+)\}", AUTOMATIONS.read_text()))
    assert variables == {"TOTES_ALERT_BLOCK_DOCUMENT_ID", "TOTES_DOWNSTREAM_DEPLOYMENT_ID"}
    assert {v for v in variables if f"export {v}=" not in production} == set()
    assert "envsubst < deployments/automations.yaml" in production


@pytest.mark.parametrize(
    "path", ["deployments/automations.yaml", "prefect.yaml", "deployments/README.md"], ids=lambda p: p
)
def test_cited_readme_sections_exist(path):
    # Comments wrap: join their lines before looking for README "Section" or README, "Section".
    text = " ".join(line.lstrip("# ").strip() for line in (REPO / path).read_text().splitlines())
    cited = re.findall(r'README,? (?:section )?"([^"]+)"', text)
    headings = set(re.findall(r"^#+ (.+?)\s*$", README, re.MULTILINE))
    assert [section for section in cited if section not in headings] == []
