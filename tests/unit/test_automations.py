"""deployments/automations.yaml stays complete: the crash alert names every flow prefect.yaml deploys,
the documented production step sets every variable the file takes, and the documentation sections its
comments (and prefect.yaml's, deployments/README.md's) cite exist."""

from __future__ import annotations

import re

import pytest
import yaml
from prefect.flows import load_flow_from_entrypoint

from tests.conftest import REPO

AUTOMATIONS = REPO / "deployments" / "automations.yaml"
PRODUCTION = (REPO / "docs" / "guides" / "production-ecs.md").read_text()


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


def test_the_documented_step_sets_every_variable_of_the_file():
    # The steps of "Run it in production": the page up to its first section.
    assert PRODUCTION.startswith("# Run it in production\n")
    production = PRODUCTION.split("\n## ", 1)[0]
    variables = set(re.findall(r"\$\{([A-Z_]+)\}", AUTOMATIONS.read_text()))
    assert variables == {"TOTES_ALERT_BLOCK_DOCUMENT_ID", "TOTES_DOWNSTREAM_DEPLOYMENT_ID"}
    assert {v for v in variables if f"export {v}=" not in production} == set()
    assert "envsubst < deployments/automations.yaml" in production


@pytest.mark.parametrize(
    "path", ["deployments/automations.yaml", "prefect.yaml", "deployments/README.md"], ids=lambda p: p
)
def test_cited_doc_sections_exist(path):
    # Comments wrap: join their lines before looking for docs/PAGE.md "Section" or docs/PAGE.md, "Section".
    text = " ".join(line.lstrip("# ").strip() for line in (REPO / path).read_text().splitlines())
    cited = re.findall(r'(docs/[\w./-]+\.md),? (?:section )?"([^"]+)"', text)
    assert cited, f"{path} cites no section of the documentation"
    missing = [
        (page, section)
        for page, section in cited
        if not (REPO / page).is_file()
        or section not in re.findall(r"^#+ (.+?)\s*$", (REPO / page).read_text(), re.MULTILINE)
    ]
    assert missing == []
    # The README no longer holds these sections: a citation of it would point nowhere.
    assert re.findall(r'README,? (?:section )?"([^"]+)"', text) == []
