"""Deployments against a real Prefect server (`prefect server start` on 127.0.0.1):

* ``prefect deploy`` of the local-pool file (``deployments/local.prefect.yaml``), a real ``process``
  worker, and ``prefect deployment run totesys-etl/totesys-etl``;
* the production ``prefect.yaml`` registered against an ``ecs`` pool created from the committed base
  job template (ECS itself cannot run here, and neither can its Docker build: see that test);
* ``totes serve`` serving the deployments from one process, triggered the same way.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime

import pytest
import yaml

from tests.conftest import REPO
from tests.integration.conftest import PREFECT, call_api, create_downstream_deployment, wait_for


def prefect(api_url: str, *args: str, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    result = subprocess.run(
        [PREFECT, "--no-prompt", *args],
        cwd=REPO,
        env=dict(os.environ, PREFECT_API_URL=api_url) | (env or {}),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"prefect {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def flow_run_state(api_url: str, flow_run_id: str) -> str:
    with urllib.request.urlopen(f"{api_url}/flow_runs/{flow_run_id}", timeout=10) as response:
        return json.load(response)["state_type"]


def read_deployment(api_url: str, name: str) -> dict | None:
    try:
        with urllib.request.urlopen(f"{api_url}/deployments/name/{name}", timeout=5) as response:
            return json.load(response)
    except OSError:
        return None


def deployment_exists(api_url: str, name: str) -> bool:
    return read_deployment(api_url, name) is not None


def registered_since(api_url: str, name: str, since: datetime) -> bool:
    """True once ``name`` has been created or updated after ``since`` (UTC)."""
    found = read_deployment(api_url, name)
    return found is not None and datetime.fromisoformat(found["updated"].replace("Z", "+00:00")) > since


def run_deployment(api_url: str, name: str) -> str:
    output = prefect(api_url, "deployment", "run", name)
    # "UUID: <id>" is printed by `prefect deployment run`
    for line in output.splitlines():
        if "UUID:" in line:
            return line.split("UUID:")[1].strip()
    pytest.fail(f"no flow run id in:\n{output}")


def test_prefect_deploy_and_a_process_worker_run_the_cycle(prefect_server, deployed_pipeline):
    prefect(prefect_server, "work-pool", "create", "totes-local", "--type", "process")
    prefect(
        prefect_server,
        "deploy",
        "--all",
        "--prefect-file",
        "deployments/local.prefect.yaml",
        env={"TOTES_HOME": str(REPO)},
    )
    assert deployment_exists(prefect_server, "totesys-etl/totesys-etl")
    assert deployment_exists(prefect_server, "rebuild-warehouse/totesys-rebuild")
    assert deployment_exists(prefect_server, "totesys-etl/totesys-backfill")

    flow_run_id = run_deployment(prefect_server, "totesys-etl/totesys-etl")
    prefect(
        prefect_server,
        "worker",
        "start",
        "--pool",
        "totes-local",
        "--run-once",
        env={"TOTES_HOME": str(REPO)},
        timeout=600,
    )

    assert flow_run_state(prefect_server, flow_run_id) == "COMPLETED"
    deployed_pipeline.assert_warehouse_matches_source()


def test_totes_serve_runs_triggered_deployments(prefect_server, deployed_pipeline):
    started = datetime.now(UTC)
    served = deployed_pipeline.run_cli(
        "serve", "--interval", "3600", env={"PREFECT_API_URL": prefect_server}, start_new_session=True
    )
    try:
        wait_for(
            lambda: (
                registered_since(prefect_server, "totesys-etl/totesys-etl", started)
                and registered_since(prefect_server, "rebuild-warehouse/totesys-rebuild", started)
            ),
            timeout=120,
            what="totes serve to register its deployments",
        )
        flow_run_id = run_deployment(prefect_server, "totesys-etl/totesys-etl")
        wait_for(
            lambda: flow_run_state(prefect_server, flow_run_id) in {"COMPLETED", "FAILED", "CRASHED"},
            timeout=300,
            what="the served flow run",
        )
        assert flow_run_state(prefect_server, flow_run_id) == "COMPLETED"
    finally:
        os.killpg(served.pid, signal.SIGTERM)
        served.communicate(timeout=60)
    deployed_pipeline.assert_warehouse_matches_source()


def test_production_prefect_yaml_registers_on_an_ecs_pool(prefect_server, tmp_path):
    """ECS cannot run here (no AWS) and the build/push steps need a Docker engine this machine does not
    have, so this registers the production deployments with those two sections removed and a fixed
    image reference; everything else is the committed prefect.yaml and ECS base job template."""
    prefect(
        prefect_server,
        "work-pool",
        "create",
        "totes-ecs",
        "--type",
        "ecs",
        "--base-job-template",
        str(REPO / "deployments" / "ecs-base-job-template.json"),
    )
    production = yaml.safe_load((REPO / "prefect.yaml").read_text())
    assert production["build"][0]["prefect_docker.deployments.steps.build_docker_image"]["dockerfile"] == "Dockerfile"
    assert "prefect_docker.deployments.steps.push_docker_image" in production["push"][0]
    production["build"] = production["push"] = None
    image = "123456789012.dkr.ecr.eu-west-2.amazonaws.com/totes:test"
    for deployment in production["deployments"]:
        deployment["work_pool"]["job_variables"]["image"] = image
    derived = tmp_path / "prefect.yaml"
    derived.write_text(yaml.safe_dump(production))

    prefect(
        prefect_server,
        "deploy",
        "--all",
        "--prefect-file",
        str(derived),
        env={
            "TOTES_DEPLOY_ECS_CLUSTER": "totes",
            "TOTES_DEPLOY_LAKE_URL": "s3://lake/totes",
            "TOTES_DEPLOY_TASK_ROLE_ARN": "arn:aws:iam::123456789012:role/totes-task",
            "TOTES_DEPLOY_EXECUTION_ROLE_ARN": "arn:aws:iam::123456789012:role/totes-execution",
            "TOTES_DEPLOY_ALERT_TOPIC_ARN": "arn:aws:sns:eu-west-2:123456789012:totes-alerts",
            "TOTES_DEPLOY_SFTP_HOST_KEYS": "[sftp.example.com]:22 ssh-ed25519 AAAAexample",
            "AWS_DEFAULT_REGION": "eu-west-2",
        },
    )

    for name in (
        "totesys-etl/totesys-etl",
        "totesys-etl/totesys-reconcile",
        "totesys-etl/totesys-backfill",
        "ingest/totesys-ingest",
        "extract-table/totesys-extract-table",
        "transform/totesys-transform",
        "load/totesys-load",
        "rebuild-warehouse/totesys-rebuild",
        "totesys-files/totesys-files",
    ):
        deployment = read_deployment(prefect_server, name)
        assert deployment is not None, name
        assert deployment["work_pool_name"] == "totes-ecs"
        variables = deployment["job_variables"]
        assert variables["image"] == image
        assert variables["cluster"] == "totes"
        assert {s["name"] for s in variables["secrets"]} == {
            "TOTES_SOURCE_URL",
            "TOTES_WAREHOUSE_URL",
            "TOTES_SFTP_URL",
        }
        assert not any(key.endswith("_SECRET") for key in variables["env"])
        assert deployment["enforce_parameter_schema"] is True
    etl = read_deployment(prefect_server, "totesys-etl/totesys-etl")
    assert etl["schedules"][0]["schedule"]["interval"] == 900
    assert etl["global_concurrency_limit"]["limit"] == 1
    assert etl["concurrency_options"]["collision_strategy"] == "ENQUEUE"
    deep_pass = read_deployment(prefect_server, "totesys-etl/totesys-reconcile")
    assert deep_pass["parameters"] == {"reconcile": True}
    # Fan-out's children: smaller tasks than the cycle's, as many at once as the source's slots allow.
    child = read_deployment(prefect_server, "extract-table/totesys-extract-table")
    assert (child["job_variables"]["cpu"], child["job_variables"]["memory"]) == (512, 2048)
    assert (etl["job_variables"]["cpu"], etl["job_variables"]["memory"]) == (1024, 4096)
    assert child["global_concurrency_limit"] is None
    assert deep_pass["schedules"][0]["schedule"]["cron"] == "30 2 * * *"
    backfill = read_deployment(prefect_server, "totesys-etl/totesys-backfill")
    assert backfill["schedules"] == [] and backfill["parameters"] == {}  # run by hand, with the tables named


def test_crash_automation_definition_registers(prefect_server, tmp_path):
    # A real notification block on the server, whose id the committed definition takes.
    script = (
        "from prefect.blocks.notifications import CustomWebhookNotificationBlock as B;"
        "print(B(name='ops', url='http://127.0.0.1:9/hook', json_data={'text': '{{body}}'}).save('totes-ops'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=dict(os.environ, PREFECT_API_URL=prefect_server),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    block_id = result.stdout.strip().splitlines()[-1]
    # What `envsubst` does in the documented command.
    definition = (
        (REPO / "deployments" / "automations.yaml")
        .read_text()
        .replace("${TOTES_ALERT_BLOCK_DOCUMENT_ID}", block_id)
        .replace("${TOTES_DOWNSTREAM_DEPLOYMENT_ID}", create_downstream_deployment(prefect_server))
    )
    (tmp_path / "automations.yaml").write_text(definition)

    prefect(prefect_server, "automation", "create", "--from-file", str(tmp_path / "automations.yaml"))

    created = {automation["name"] for automation in call_api(prefect_server, "/automations/filter", {})}
    assert created == {"totes-run-crashed", "totes-batch-loaded-runs-downstream"}
