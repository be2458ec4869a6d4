"""Database URLs from AWS Secrets Manager (moto's server) and Prefect Secret blocks, in the documented
order of precedence, and no password in logs, artifacts or the lake afterwards."""

from __future__ import annotations

import json
import uuid
from urllib.parse import urlsplit

import boto3
import pytest

from tasks.core.lake import Lake
from tests.integration.conftest import Pipeline

SOURCE_PASSWORD = "src-Pa55-from-secrets-manager"
WAREHOUSE_PASSWORD = "dw-Pa55-from-a-prefect-block"


def with_password(url: str, password: str) -> str:
    return url.replace("//postgres:@", f"//postgres:{password}@")


def everything_prefect_recorded() -> str:
    """Every log line and artifact the Prefect API holds, as one text."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter
    from prefect.client.schemas.sorting import LogSort

    logs, artifacts = [], []
    with get_client(sync_client=True) as client:
        while page := client.read_logs(log_filter=LogFilter(), limit=200, offset=len(logs), sort=LogSort.TIMESTAMP_ASC):
            logs += page
        while page := client.read_artifacts(limit=200, offset=len(artifacts)):
            artifacts += page
    return "\n".join([log.message for log in logs] + [json.dumps(a.data, default=str) for a in artifacts])


def everything_in_the_lake(lake_url: str) -> bytes:
    lake = Lake.from_url(lake_url)
    lake.fs.invalidate_cache()
    return b"".join(lake.fs.cat_file(path) for path in lake.fs.find(lake.root))


@pytest.mark.parametrize("warehouse_secret_kind", ["prefect-block", "aws-rds-json"])
def test_urls_come_from_secrets_and_never_leak(
    databases, s3_lake_url, s3_endpoint, prefect_api, monkeypatch, warehouse_secret_kind
):
    from prefect.blocks.system import Secret

    secrets = boto3.client("secretsmanager", endpoint_url=s3_endpoint)
    source_secret = f"totes/source-{uuid.uuid4().hex[:8]}"
    secrets.create_secret(Name=source_secret, SecretString=with_password(databases.source_url, SOURCE_PASSWORD))
    monkeypatch.setenv("TOTES_SOURCE_URL_SECRET", source_secret)
    # Lower in precedence than the secret: must be ignored.
    monkeypatch.setenv("TOTES_SOURCE_URL", "postgresql://nobody@127.0.0.1:1/not_this_one")

    warehouse_url = with_password(databases.warehouse_url, WAREHOUSE_PASSWORD)
    if warehouse_secret_kind == "prefect-block":
        block = f"totes-warehouse-{uuid.uuid4().hex[:8]}"
        Secret(value=warehouse_url).save(block)
        monkeypatch.setenv("TOTES_WAREHOUSE_URL_BLOCK", block)
    else:
        parts = urlsplit(warehouse_url)
        rds_style = {
            "username": "postgres",
            "password": WAREHOUSE_PASSWORD,
            "host": parts.hostname or "",
            "port": 5432,
            "dbname": parts.path.strip("/"),
        }
        secret_id = f"totes/warehouse-{uuid.uuid4().hex[:8]}"
        # RDS-style JSON has no room for a unix socket: keep it as a URL in "url" for this server.
        secrets.create_secret(Name=secret_id, SecretString=json.dumps(rds_style | {"url": warehouse_url}))
        monkeypatch.setenv("TOTES_WAREHOUSE_URL_SECRET", secret_id)
    monkeypatch.setenv("TOTES_WAREHOUSE_URL", "postgresql://nobody@127.0.0.1:1/not_this_one_either")

    pipeline = Pipeline(databases.source_url, databases.warehouse_url, s3_lake_url, monkeypatch)
    monkeypatch.delenv("TOTES_SOURCE_URL")
    monkeypatch.delenv("TOTES_WAREHOUSE_URL")
    pipeline.seed(scale=0.02)
    pipeline.run()
    pipeline.assert_warehouse_matches_source()

    recorded = everything_prefect_recorded()
    assert "fact_sales_order" in recorded  # the report is there...
    for password in (SOURCE_PASSWORD, WAREHOUSE_PASSWORD):
        assert password not in recorded  # ...but no password
        assert password.encode() not in everything_in_the_lake(s3_lake_url)


def everything_the_api_holds_about_runs() -> str:
    """Every flow run's and task run's parameters, state name and state message (tracebacks of
    failed runs are logged, and read by :func:`everything_prefect_recorded`)."""
    from prefect.client.orchestration import get_client

    parts = []
    with get_client(sync_client=True) as client:
        for run in client.read_flow_runs(limit=200):
            parts += [json.dumps(run.parameters, default=str), str(run.state.message if run.state else "")]
        for task_run in client.read_task_runs(limit=200):
            parts += [
                json.dumps(task_run.task_inputs, default=str),
                str(task_run.state.message if task_run.state else ""),
            ]
    return "\n".join(parts)


def test_no_password_in_output_tracebacks_logs_artifacts_parameters_or_parquet_after_a_failed_run(
    databases, s3_lake_url, prefect_api, monkeypatch
):
    """`totes run` with passwords in both URLs: once through (ingest, transform and load write the
    lake and the warehouse), then made to fail (the warehouse database does not exist, so the run
    stops at its first step, the cycle lock): the passwords are nowhere."""
    pipeline = Pipeline(databases.source_url, databases.warehouse_url, s3_lake_url, monkeypatch)
    pipeline.seed(scale=0.02)
    source_with_password = with_password(databases.source_url, SOURCE_PASSWORD)
    warehouse_with_password = with_password(databases.warehouse_url, WAREHOUSE_PASSWORD)
    settings = {
        "TOTES_SOURCE_URL": source_with_password,
        "PREFECT_API_URL": prefect_api,
        "PREFECT_LOGGING_LEVEL": "DEBUG",
    }
    first = pipeline.run_cli("run", env=settings | {"TOTES_WAREHOUSE_URL": warehouse_with_password}, verbose=True)
    first_out, first_err = first.communicate(timeout=300)
    assert first.returncode == 0, first_err[-2000:]
    missing_warehouse = warehouse_with_password.replace("/warehouse_", "/gone_")
    child = pipeline.run_cli("run", env=settings | {"TOTES_WAREHOUSE_URL": missing_warehouse}, verbose=True)
    out, err = child.communicate(timeout=300)
    out, err = first_out + out, first_err + err
    assert child.returncode == 1, err[-2000:]
    assert "does not exist" in err and "***" in err  # the cause is named, the password masked
    assert "Traceback" in err  # Prefect logged the failed task's traceback: it is checked too
    everything = "\n".join([out, err, everything_prefect_recorded(), everything_the_api_holds_about_runs()])
    assert "fact_sales_order" in everything_in_the_lake(s3_lake_url).decode("latin-1")  # the lake was written
    for password in (SOURCE_PASSWORD, WAREHOUSE_PASSWORD):
        assert password not in everything
        assert password.encode() not in everything_in_the_lake(s3_lake_url)
