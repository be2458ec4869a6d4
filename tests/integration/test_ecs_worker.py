"""The ECS path up to the AWS API: prefect-aws's ECS worker, started with the command
``deployments/terraform/worker.tf`` gives it, against moto's ECS, EC2, IAM, Secrets Manager and CloudWatch
Logs (a ``ThreadedMotoServer`` on 127.0.0.1) and a real ``prefect server``.

The account is made as Terraform makes it (a VPC with two private subnets and a security group, the
cluster, the execution and task roles, the four secrets and the log group, all named from a ``name``
other than ``totes``), the pool from the committed base job template with the defaults Terraform's
``work_pool_base_job_template`` output adds, the deployment with ``prefect deploy`` of the committed
``prefect.yaml`` (its Docker build and push removed: no Docker engine here; a fixed image instead) and
the ``TOTES_DEPLOY_*`` variables docs/guides/production-ecs.md exports from Terraform's outputs. moto
records every request it receives; the test asserts the RegisterTaskDefinition and RunTask requests the
worker sent, and what moto kept of them.

What moto cannot emulate, and where the test therefore stops (at the accepted RunTask):

* the task's start: no image is pulled and no container runs, so ``prefect flow-run execute`` never
  starts and the flow run stays Pending; moto's task sits RUNNING;
* ECS reading the ``valueFrom`` secrets with the execution role and setting them in the container (and
  failing the start when it cannot), the ``awslogs`` driver writing to the log group, iam:PassRole and
  every other IAM check (moto enforces no policy), Fargate's networking (moto records an ENI in the first
  subnet with the security groups; nothing routes, no rule is checked);
* Fargate's task-level memory alone: moto's RunTask adds up container-level memory and fails without it,
  so the test fills it in as 0, as prefect-aws's own tests do; and moto fails RunTask in a VPC without
  DNS hostnames (it names the ENI's private DNS name), so the test's VPC has them, as a real one should.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs

import boto3
import pytest
import yaml

from tests.conftest import REPO
from tests.integration.conftest import PREFECT, free_port, wait_for

TEMPLATE = REPO / "deployments" / "ecs-base-job-template.json"
TEMPLATE_MODULE = REPO / "deployments" / "terraform" / "modules" / "work_pool_template"
POOL = "totes-ecs"  # prefect.yaml's pool; Terraform's output work_pool with the default name
REGION = "eu-west-2"
IMAGE = "123456789012.dkr.ecr.eu-west-2.amazonaws.com/totes:test"
API_KEY = "pnu_sentinel-prefect-api-key-0123456789"  # the worker's PREFECT_API_KEY (its ECS secret)


@dataclass
class Account:
    """What ``terraform apply`` leaves in AWS: its outputs, and the secrets' values (never to be sent)."""

    endpoint: str
    name: str
    subnet_ids: list[str]
    security_group_ids: list[str]
    outputs: dict[str, str]
    secret_values: list[str]

    def client(self, service: str):
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing-secret",
        )


@dataclass
class MotoServer:
    endpoint: str
    recording: Path  # every request the server received while recording, one JSON object a line


@pytest.fixture
def moto_server(tmp_path, monkeypatch) -> Iterator[MotoServer]:
    """moto's server on 127.0.0.1, its recorder writing in this test's folder."""
    from moto.ecs.models import EC2ContainerServiceBackend
    from moto.moto_api import recorder
    from moto.server import ThreadedMotoServer

    # Fargate takes memory at the task level alone; moto's RunTask adds up the containers' and fails on
    # None (prefect-aws's own test suite fills it in the same way).
    add_up = EC2ContainerServiceBackend._calculate_task_resource_requirements

    def with_container_memory(task_definition):
        for container in task_definition.container_definitions:
            container.setdefault("memory", 0)
        return add_up(task_definition)

    monkeypatch.setattr(
        EC2ContainerServiceBackend, "_calculate_task_resource_requirements", staticmethod(with_container_memory)
    )
    # The recorder writes to ./moto_recording unless told otherwise at import: keep it out of the checkout.
    recording = tmp_path / "moto-recording.jsonl"
    monkeypatch.setattr(recorder, "_location", str(recording))
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield MotoServer(f"http://127.0.0.1:{port}", recording)
    finally:
        recorder.stop_recording()
        server.stop()


def provision(endpoint: str) -> Account:
    """The resources of deployments/terraform that the worker's requests name, with ``var.name`` other
    than ``totes`` (names built from it, as Terraform builds them) and the outputs
    docs/guides/production-ecs.md exports."""
    name = f"acme-{uuid.uuid4().hex[:6]}"
    account = Account(endpoint, name, [], [], {}, [])
    ec2 = account.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    account.subnet_ids = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.42.{i}.0/24", AvailabilityZone=f"{REGION}{zone}")["Subnet"][
            "SubnetId"
        ]
        for i, zone in ((1, "a"), (2, "b"))
    ]
    account.security_group_ids = [
        ec2.create_security_group(GroupName=f"{name}-tasks", Description="flow-run tasks", VpcId=vpc)["GroupId"]
    ]
    cluster = account.client("ecs").create_cluster(clusterName=name)["cluster"]["clusterName"]
    iam = account.client("iam")
    assume = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}
            ],
        }
    )
    roles = {
        role: iam.create_role(RoleName=f"{name}-{role}", AssumeRolePolicyDocument=assume)["Role"]["Arn"]
        for role in ("execution", "task")
    }
    values = {
        "source-url": f"postgresql://etl_reader:source-{uuid.uuid4().hex}@totesys.internal:5432/totesys",
        "warehouse-url": f"postgresql://etl_loader:warehouse-{uuid.uuid4().hex}@warehouse.internal:5432/warehouse",
        "sftp-url": f"sftp://terrific:sftp-{uuid.uuid4().hex}@sftp.partner.example/outbox",
        "prefect-api-key": API_KEY,
    }
    secrets = account.client("secretsmanager")
    arns = {
        key: secrets.create_secret(Name=f"{name}/{key}", SecretString=value)["ARN"] for key, value in values.items()
    }
    log_group = f"/{name}/etl"
    account.client("logs").create_log_group(logGroupName=log_group)
    account.outputs = {
        "ecs_cluster": cluster,
        "task_role_arn": roles["task"],
        "execution_role_arn": roles["execution"],
        "source_url_secret_arn": arns["source-url"],
        "warehouse_url_secret_arn": arns["warehouse-url"],
        "sftp_url_secret_arn": arns["sftp-url"],
        "prefect_api_key_secret_arn": arns["prefect-api-key"],
        "flow_run_log_group": log_group,
        "lake_url": f"s3://{name}-lake/totes",
        "alert_topic_arn": f"arn:aws:sns:{REGION}:123456789012:{name}-alerts",
    }
    account.secret_values = [
        *values.values(),
        *(re.search(r":([^:@/]+)@", v).group(1) for v in values.values() if "@" in v),
    ]
    return account


def deploy_environment(account: Account) -> dict[str, str]:
    """The TOTES_DEPLOY_* variables of docs/guides/production-ecs.md's step, from Terraform's outputs."""
    out = account.outputs
    return {
        "TOTES_DEPLOY_ECS_CLUSTER": out["ecs_cluster"],
        "TOTES_DEPLOY_TASK_ROLE_ARN": out["task_role_arn"],
        "TOTES_DEPLOY_EXECUTION_ROLE_ARN": out["execution_role_arn"],
        "TOTES_DEPLOY_SOURCE_URL_SECRET_ARN": out["source_url_secret_arn"],
        "TOTES_DEPLOY_WAREHOUSE_URL_SECRET_ARN": out["warehouse_url_secret_arn"],
        "TOTES_DEPLOY_SFTP_URL_SECRET_ARN": out["sftp_url_secret_arn"],
        "TOTES_DEPLOY_PREFECT_API_KEY_SECRET_ARN": out["prefect_api_key_secret_arn"],
        "TOTES_DEPLOY_LOG_GROUP": out["flow_run_log_group"],
        "TOTES_DEPLOY_LAKE_URL": out["lake_url"],
        "TOTES_DEPLOY_ALERT_TOPIC_ARN": out["alert_topic_arn"],
        "TOTES_DEPLOY_SFTP_HOST_KEYS": "[sftp.partner.example]:22 ssh-ed25519 AAAAexample",
        "AWS_DEFAULT_REGION": REGION,
    }


def pool_template(subnet_ids: list[str], security_group_ids: list[str]) -> dict:
    """Terraform's output work_pool_base_job_template: the committed template with the flow-run tasks'
    network as the defaults of ``subnets`` and ``security_groups`` (checked against the module itself by
    ``test_terraform_renders_the_pool_template``)."""
    template = json.loads(TEMPLATE.read_text())
    properties = template["variables"]["properties"]
    properties["subnets"]["default"] = subnet_ids
    properties["security_groups"]["default"] = security_group_ids
    return template


WORKER_TF = (REPO / "deployments" / "terraform" / "worker.tf").read_text()


def worker_command() -> list[str]:
    """The command of the worker's container in deployments/terraform/worker.tf, for the pool ``POOL``."""
    listed = re.search(r"^\s*command\s*=\s*\[(.*)\]\s*$", WORKER_TF, re.MULTILINE)
    assert listed, "worker.tf: no command = [...] line"
    words = [word.strip() for word in listed.group(1).split(",")]
    command = [POOL if word == "local.pool_name" else json.loads(word) for word in words]
    assert command[0] == "prefect"
    return [PREFECT, *command[1:]]


def worker_environment(api_url: str, home: Path) -> dict[str, str]:
    """The worker container's environment in worker.tf (its variables and its one secret), here."""
    names = re.findall(r'\{\s*name\s*=\s*"([A-Z_]+)",\s*value(?:From)?\s*=', WORKER_TF)
    assert sorted(names) == ["HOME", "PREFECT_API_KEY", "PREFECT_API_URL"], names
    return {"PATH": os.environ["PATH"], "HOME": str(home), "PREFECT_API_URL": api_url, "PREFECT_API_KEY": API_KEY}


def prefect(api_url: str, *args: str, env: dict[str, str] | None = None, check: bool = True):
    result = subprocess.run(
        [PREFECT, "--no-prompt", *args],
        cwd=REPO,
        env=dict(os.environ, PREFECT_API_URL=api_url) | (env or {}),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check:
        assert result.returncode == 0, f"prefect {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def api(api_url: str, path: str):
    try:
        with urllib.request.urlopen(f"{api_url}{path}", timeout=10) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise


def recorded_requests(path: Path) -> list[dict]:
    """moto's recording: each request as service, action and (JSON protocols) its body."""
    found = []
    for line in path.read_text().splitlines() if path.exists() else []:
        entry = json.loads(line)
        body = base64.b64decode(entry["body"]) if entry.get("body_encoded") else (entry.get("body") or "").encode()
        headers = {key.lower(): value for key, value in entry["headers"].items()}
        scope = re.search(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/", headers.get("authorization", ""))
        service = scope.group(1) if scope else "?"
        if "x-amz-target" in headers:
            action, request = headers["x-amz-target"].split(".")[-1], json.loads(body or b"{}")
        else:
            action, request = parse_qs(body.decode()).get("Action", ["?"])[0], None
        found.append({"service": service, "action": action, "request": request, "raw": body.decode(errors="replace")})
    return found


def test_ecs_worker_sends_the_committed_configuration_to_aws(prefect_server, moto_server, tmp_path):
    from moto.moto_api import recorder

    account = provision(moto_server.endpoint)
    aws_env = {
        "AWS_ENDPOINT_URL": moto_server.endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing-secret",
        "AWS_DEFAULT_REGION": REGION,
    }

    # Step 1 of docs/guides/production-ecs.md: Terraform starts the worker before the pool exists. It
    # must not create it.
    worker_log = tmp_path / "worker.log"
    worker_env = worker_environment(prefect_server, tmp_path / "worker-home") | aws_env
    worker_env["PREFECT_WORKER_QUERY_SECONDS"] = "1"  # the test's own: poll every second, not every ten
    recorder.reset_recording()
    recorder.start_recording()
    with worker_log.open("w") as log:
        worker = subprocess.Popen(
            worker_command(),
            cwd=tmp_path,
            env=worker_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(
            lambda: (
                f"Work pool '{POOL}' not found" in worker_log.read_text()
                or api(prefect_server, f"/work_pools/{POOL}") is not None
            ),
            timeout=120,
            what=f"the worker to poll for the missing pool:\n{worker_log.read_text()}",
        )
        assert api(prefect_server, f"/work_pools/{POOL}") is None, "the worker created the pool"

        # A pool from the committed template as it is (no network): no flow run can be created on it,
        # so none can start in a default VPC.
        prefect(prefect_server, "work-pool", "create", POOL, "--type", "ecs", "--base-job-template", str(TEMPLATE))
        production = yaml.safe_load((REPO / "prefect.yaml").read_text())
        assert "prefect_docker.deployments.steps.build_docker_image" in production["build"][0]
        production["build"] = production["push"] = None  # no Docker engine here
        for deployment in production["deployments"]:
            deployment["work_pool"]["job_variables"]["image"] = IMAGE
        derived = tmp_path / "prefect.yaml"
        derived.write_text(yaml.safe_dump(production))
        prefect(
            prefect_server,
            "deploy",
            "--prefect-file",
            str(derived),
            "--name",
            "totesys-etl",
            env=deploy_environment(account),
        )
        refused = prefect(prefect_server, "deployment", "run", "totesys-etl/totesys-etl", check=False)
        assert refused.returncode != 0, refused.stdout
        assert "'subnets' is a required property" in " ".join((refused.stdout + refused.stderr).split())

        # Step 3: the pool from Terraform's template, over the one above.
        rendered = tmp_path / "totes-ecs-pool.json"
        rendered.write_text(json.dumps(pool_template(account.subnet_ids, account.security_group_ids)))
        prefect(
            prefect_server,
            "work-pool",
            "create",
            POOL,
            "--type",
            "ecs",
            "--overwrite",
            "--base-job-template",
            str(rendered),
        )
        started = prefect(prefect_server, "deployment", "run", "totesys-etl/totesys-etl").stdout
        flow_run_id = re.search(r"UUID:\s*(\S+)", started).group(1)
        wait_for(
            lambda: (
                (api(prefect_server, f"/flow_runs/{flow_run_id}") or {}).get("infrastructure_pid")
                or api(prefect_server, f"/flow_runs/{flow_run_id}")["state_type"] in {"CRASHED", "FAILED"}
            ),
            timeout=120,
            what=f"the worker to start the flow run's ECS task:\n{worker_log.read_text()}",
        )
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=60)
        recorder.stop_recording()
    flow_run = api(prefect_server, f"/flow_runs/{flow_run_id}")
    assert flow_run["state_type"] == "PENDING", worker_log.read_text()

    requests = recorded_requests(moto_server.recording)
    worker_calls = [(r["service"], r["action"]) for r in requests]
    registered = [r["request"] for r in requests if r["action"] == "RegisterTaskDefinition"]
    run = [r["request"] for r in requests if r["action"] == "RunTask"]
    # The family's latest revision (none yet: match_latest_revision_in_family), the registration, the
    # run; besides, only the ECS observer's SQS queue lookup. No EC2 call (the worker infers no default
    # VPC: the network is the pool's) and no secret read (ECS does that, at the task's start).
    assert [action for service, action in worker_calls if service == "ecs"] == [
        "DescribeTaskDefinition",
        "RegisterTaskDefinition",
        "RunTask",
    ], worker_calls
    assert {service for service, _ in worker_calls} <= {"ecs", "sqs"}, worker_calls
    out = account.outputs
    ecs = account.client("ecs")
    task_definition_arn = ecs.describe_task_definition(taskDefinition="totes-etl")["taskDefinition"][
        "taskDefinitionArn"
    ]

    # What the task runs: the image, 1 vCPU and 4 GiB, the roles, the logs, and the secrets as ARNs.
    assert registered[0] == {
        "family": "totes-etl",
        "containerDefinitions": [
            {
                "image": IMAGE,
                "name": "totes",
                "secrets": [
                    {"name": "TOTES_SOURCE_URL", "valueFrom": out["source_url_secret_arn"]},
                    {"name": "TOTES_WAREHOUSE_URL", "valueFrom": out["warehouse_url_secret_arn"]},
                    {"name": "TOTES_SFTP_URL", "valueFrom": out["sftp_url_secret_arn"]},
                    {"name": "PREFECT_API_KEY", "valueFrom": out["prefect_api_key_secret_arn"]},
                ],
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {
                        "awslogs-create-group": "false",
                        "awslogs-group": out["flow_run_log_group"],
                        "awslogs-region": REGION,
                        "awslogs-stream-prefix": "totes",
                    },
                },
            }
        ],
        "cpu": "1024",
        "executionRoleArn": out["execution_role_arn"],
        "memory": "4096",
        "requiresCompatibilities": ["FARGATE"],
        "networkMode": "awsvpc",
    }
    # The run: the cluster, the private network, the task role, `prefect flow-run execute`, no secret.
    environment = {item["name"]: item["value"] for item in run[0]["overrides"]["containerOverrides"][0]["environment"]}
    assert run[0] == {
        "clientToken": run[0]["clientToken"],  # botocore's idempotency token
        "cluster": out["ecs_cluster"],
        "launchType": "FARGATE",
        "networkConfiguration": {
            "awsvpcConfiguration": {
                "subnets": account.subnet_ids,
                "securityGroups": account.security_group_ids,
                "assignPublicIp": "DISABLED",
            }
        },
        "overrides": {
            "containerOverrides": [
                {
                    "command": ["prefect", "flow-run", "execute"],
                    "cpu": 1024,
                    "environment": run[0]["overrides"]["containerOverrides"][0]["environment"],
                    "memory": 4096,
                    "name": "totes",
                }
            ],
            "cpu": "1024",
            "memory": "4096",
            "taskRoleArn": out["task_role_arn"],
        },
        "tags": run[0]["tags"],
        "taskDefinition": task_definition_arn,
    }
    tags = {tag["key"]: tag["value"] for tag in run[0]["tags"]}
    assert (tags["prefect.io/flow-run-id"], tags["prefect.io/deployment-name"], tags["prefect.io/work-pool-name"]) == (
        flow_run_id,
        "totesys-etl",
        POOL,
    )
    deployment = api(prefect_server, "/deployments/name/totesys-etl/totesys-etl")
    # Prefect's address and the run's identity, the worker's own Prefect settings (worker.tf sets HOME,
    # not PREFECT_HOME; the test adds its poll interval) and prefect.yaml's env: no key, no URL.
    assert environment == {
        "PREFECT_API_URL": prefect_server,
        "PREFECT_WORKER_QUERY_SECONDS": "1.0",
        "PREFECT_SERVER_EPHEMERAL_ENABLED": "True",  # Prefect's default profile, the worker's as in ECS
        "PREFECT__FLOW_RUN_ID": flow_run_id,
        "PREFECT__FLOW_ID": flow_run["flow_id"],
        "PREFECT__FLOW_NAME": "totesys-etl",
        "PREFECT__DEPLOYMENT_ID": deployment["id"],
        "PREFECT__DEPLOYMENT_NAME": "totesys-etl",
        "PREFECT__WORKER_NAME": environment["PREFECT__WORKER_NAME"],
        "TOTES_LAKE_URL": out["lake_url"],
        "TOTES_ALERT_SNS_TOPIC_ARN": out["alert_topic_arn"],
        "TOTES_SFTP_HOST_KEYS": deploy_environment(account)["TOTES_DEPLOY_SFTP_HOST_KEYS"],
    }
    # No secret's value in anything the worker sent or logged, nor in what Prefect holds.
    sent = "\n".join(
        [*(r["raw"] for r in requests), json.dumps(deployment), json.dumps(flow_run), worker_log.read_text()]
    )
    assert [value for value in account.secret_values if value in sent] == []

    # What moto kept: the task in the cluster with those overrides, its ENI in a private subnet with
    # the security group, and the task definition with the secrets as valueFrom ARNs.
    task_arn = flow_run["infrastructure_pid"].split("::", 1)[1]
    assert flow_run["infrastructure_pid"] == f"{out['ecs_cluster']}::{task_arn}"
    task = ecs.describe_tasks(cluster=out["ecs_cluster"], tasks=[task_arn])["tasks"][0]
    assert task["taskDefinitionArn"] == task_definition_arn
    assert task["overrides"]["taskRoleArn"] == out["task_role_arn"]
    assert task["overrides"]["containerOverrides"][0]["command"] == ["prefect", "flow-run", "execute"]
    eni = {detail["name"]: detail["value"] for detail in task["attachments"][0]["details"]}
    assert eni["subnetId"] in account.subnet_ids
    interface = account.client("ec2").describe_network_interfaces(NetworkInterfaceIds=[eni["networkInterfaceId"]])
    assert [g["GroupId"] for g in interface["NetworkInterfaces"][0]["Groups"]] == account.security_group_ids
    kept = ecs.describe_task_definition(taskDefinition=task_definition_arn)["taskDefinition"]
    assert kept["containerDefinitions"][0]["secrets"] == registered[0]["containerDefinitions"][0]["secrets"]
    assert (kept["executionRoleArn"], kept["cpu"], kept["memory"]) == (out["execution_role_arn"], "1024", "4096")


def test_terraform_renders_the_pool_template(tmp_path):
    """deployments/terraform/modules/work_pool_template (no provider, so it runs offline) gives the
    committed template with the two network defaults, as ``pool_template`` has it."""
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("terraform is not installed: the work pool template module is not checked")
    env = dict(os.environ, TF_DATA_DIR=str(tmp_path / "tf-data"), TF_IN_AUTOMATION="1", CHECKPOINT_DISABLE="1")
    state = str(tmp_path / "terraform.tfstate")
    subnets, groups = ["subnet-0a", "subnet-0b"], ["sg-0c"]

    def run(*args: str) -> str:
        result = subprocess.run(
            [terraform, f"-chdir={TEMPLATE_MODULE}", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"terraform {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    before = sorted(path.name for path in TEMPLATE_MODULE.iterdir())
    run("init", "-input=false", "-no-color")
    run(
        "apply",
        "-auto-approve",
        "-input=false",
        "-no-color",
        f"-state={state}",
        f"-var=subnet_ids={json.dumps(subnets)}",
        f"-var=security_group_ids={json.dumps(groups)}",
    )
    rendered = json.loads(run("output", "-no-color", f"-state={state}", "-raw", "base_job_template"))
    assert sorted(path.name for path in TEMPLATE_MODULE.iterdir()) == before  # nothing left in the checkout
    assert rendered == pool_template(subnets, groups)
