"""The documentation's reference cannot drift from the code: every setting of ``TotesSettings`` is in
the generated settings reference, every command and option of the ``totes`` parser in the generated
command-line reference, every command in the README's and the reference's tables of commands, every
deployment of prefect.yaml in docs/reference/deployments.md; every generated region of every page
renders; and the version the documentation shows is the one ``totes --version`` prints."""

from __future__ import annotations

import argparse
import re
from importlib.metadata import version

import pytest
import yaml

from docs_hooks import generate
from flows.cli.main import build_parser
from tasks.settings import TotesSettings
from tests.conftest import REPO

REGION = re.compile(r"<!-- totes:(?P<name>[a-z-]+)(?P<args>[^>]*?) -->.*?<!-- /totes:(?P=name) -->", re.DOTALL)


def test_every_setting_is_in_the_settings_reference():
    reference = generate.settings_reference()
    prefix = TotesSettings.model_config["env_prefix"]
    missing = [name for name in TotesSettings.model_fields if f"`{prefix}{name}`".upper() not in reference.upper()]
    assert missing == []
    # each with a description of its own, not an empty cell
    for setting in generate.settings():
        assert len(setting.description) > 20, setting.fields
        assert setting.default, setting.fields


def test_every_command_and_option_is_in_the_cli_reference():
    reference = generate.cli_reference()
    parser = build_parser()
    (commands,) = [action for action in parser._actions if action.dest == "command"]
    assert set(generate.commands()) == set(commands.choices) and len(commands.choices) >= 12
    for name, command in commands.choices.items():
        section = reference.split(f"## `totes {name}`\n", 1)[1].split("\n## ", 1)[0]
        options = [
            option
            for action in command._actions
            if not isinstance(action, argparse._HelpAction)
            for option in action.option_strings
        ]
        assert [option for option in options if option not in section] == [], name
        assert command.description and " ".join(command.description.split()) in section, name


@pytest.mark.parametrize("path", ["README.md", "docs/reference/cli.md"])
def test_the_tables_of_commands_list_every_command(path):
    listed = set(re.findall(r"^\| `totes ([a-z-]+)", (REPO / path).read_text(), re.MULTILINE))
    assert listed == set(generate.commands())


def test_every_deployment_is_in_the_deployments_reference():
    page = (REPO / "docs" / "reference" / "deployments.md").read_text()
    from prefect.flows import load_flow_from_entrypoint

    missing = []
    for deployment in yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]:
        flow = load_flow_from_entrypoint(str(REPO / deployment["entrypoint"])).name
        if f"`{flow}/{deployment['name']}`" not in page:
            missing.append(f"{flow}/{deployment['name']}")
    assert missing == []


def test_every_generated_region_renders():
    pages = sorted((REPO / "docs").rglob("*.md"))
    rendered = 0
    for page in pages:
        depth = len(page.relative_to(REPO / "docs").parts) - 1
        for match in REGION.finditer(page.read_text()):
            assert generate.render(match["name"], match["args"].split(), depth=depth).strip(), page
            rendered += 1
    assert rendered >= 10


def test_one_version_from_one_place():
    # pyproject.toml's version is what the documentation shows and what `totes --version` prints (the
    # installed package's metadata, made from pyproject.toml when it is installed).
    assert re.fullmatch(r"\d+\.\d+\.\d+", generate.version())
    assert version("totes") == generate.version()
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert f"## [{generate.version()}] - " in changelog
    assert changelog.index("## [Unreleased]") < changelog.index(f"## [{generate.version()}]")


# Variables the documentation names that are not settings of totes: the deployment step's, the tests'.
NOT_SETTINGS = {"TOTES_HOME", "TOTES_CHAOS_SEED", "TOTES_CHAOS_KILLS", "TOTES_ALERT_BLOCK_DOCUMENT_ID"}
NOT_SETTINGS |= {"TOTES_DOWNSTREAM_DEPLOYMENT_ID"}


def test_every_variable_the_documentation_names_is_a_setting():
    prefix = str(TotesSettings.model_config["env_prefix"])
    settings = {f"{prefix}{name}".upper() for name in TotesSettings.model_fields}
    pages = [REPO / "README.md", REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").rglob("*.md"))]
    unknown = {
        (page.relative_to(REPO).as_posix(), variable)
        for page in pages
        for variable in re.findall(r"\bTOTES_[A-Z0-9_]*[A-Z0-9]\b", page.read_text())
        if variable not in settings | NOT_SETTINGS and not variable.startswith("TOTES_DEPLOY_")
    }
    assert unknown == set()
