"""Assets and events on a real Prefect server (``prefect server start``): `totes run` and `totes files`
materialize each table they changed, and no other, with lineage and metadata; totes's own events
(``totes.batch.loaded``, ``totes.rows.quarantined``, ``totes.source.schema_drift``,
``totes.file.quarantined``) arrive; and the example automation of ``deployments/automations.yaml``
starts a downstream deployment when a batch has loaded."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from datetime import UTC, date, datetime

import yaml

from tasks.core.asset_keys import AssetKeys
from tasks.schema import SOURCE_TABLES, STAR_TABLES
from tests.conftest import REPO
from tests.integration.conftest import (
    PREFECT,
    Feeds,
    call_api,
    create_downstream_deployment,
    execute,
    null_units_sold,
    rates_file,
    scalar,
    wait_for,
)


def events_since(url: str, since: datetime, *prefixes: str) -> list[dict]:
    """Every event whose name starts with one of ``prefixes``, occurred after ``since``."""
    page = call_api(
        url,
        "/events/filter",
        {"filter": {"event": {"prefix": list(prefixes)}, "occurred": {"since": since.isoformat()}}, "limit": 50},
    )
    events = list(page["events"])
    while page.get("next_page"):
        with urllib.request.urlopen(page["next_page"], timeout=30) as response:
            page = json.load(response)
        events += page["events"]
    return events


def materialized(url: str, since: datetime) -> dict[str, dict]:
    """Asset key -> the payload of its materialization event since ``since``."""
    events = events_since(url, since, "prefect.asset.materialization.")
    assert all(e["event"] == "prefect.asset.materialization.succeeded" for e in events), events
    return {e["resource"]["prefect.resource.id"]: e for e in events}


def run(pipeline, url: str, *args: str) -> datetime:
    """`totes <args>` against the server; when it started."""
    started = datetime.now(UTC)
    child = pipeline.run_cli(*args, env={"PREFECT_API_URL": url})
    _, err = child.communicate(timeout=300)
    assert child.returncode in (0, 1), err[-3000:]
    return started


def settle(url: str, since: datetime, *, expected: int, prefixes: tuple[str, ...]) -> None:
    """Wait until the server has stored ``expected`` events (they are written asynchronously)."""
    wait_for(lambda: len(events_since(url, since, *prefixes)) >= expected, timeout=60, what=f"{expected} events stored")


def test_runs_materialize_what_they_changed_and_emit_totes_events(
    prefect_server, deployed_pipeline, sftp_server, versioned_files_url, tmp_path
):
    pipeline, url = deployed_pipeline, prefect_server
    keys = AssetKeys.of(
        source_url=pipeline.source_url,
        lake_url=pipeline.lake_url,
        warehouse_url=pipeline.warehouse_url,
        files_url=versioned_files_url,
        sftp_url=sftp_server.url,
    )
    downstream = create_downstream_deployment(url)
    automation = next(
        a
        for a in yaml.safe_load((REPO / "deployments" / "automations.yaml").read_text())["automations"]
        if a["name"] == "totes-batch-loaded-runs-downstream"
    )
    definition = json.dumps({"automations": [automation]}).replace("${TOTES_DOWNSTREAM_DEPLOYMENT_ID}", downstream)
    (tmp_path / "automation.yaml").write_text(definition)
    subprocess.run(
        [PREFECT, "--no-prompt", "automation", "create", "--from-file", str(tmp_path / "automation.yaml")],
        env=dict(os.environ, PREFECT_API_URL=url),
        check=True,
        capture_output=True,
        timeout=120,
    )

    # 1. The full load changes every table of every zone: each is materialized, with its lineage.
    first = run(pipeline, url, "run")
    every = 2 * len(SOURCE_TABLES) + len(STAR_TABLES)
    settle(url, first, expected=every, prefixes=("prefect.asset.materialization.",))
    assets = materialized(url, first)
    expected_keys = (
        {keys.raw(t) for t in SOURCE_TABLES}
        | {keys.star(t) for t in STAR_TABLES}
        | {keys.warehouse_table(t) for t in STAR_TABLES}
    )
    assert set(assets) == expected_keys
    staff = assets[keys.star("dim_staff")]
    assert {r["prefect.resource.id"] for r in staff["related"] if r["prefect.resource.role"] == "asset"} == {
        keys.raw("staff"),
        keys.raw("department"),
    }
    assert assets[keys.raw("sales_order")]["payload"]["rows"] == pipeline_rows(pipeline, "sales_order")
    loaded = assets[keys.warehouse_table("fact_sales_order")]["payload"]
    assert loaded["rows_changed"] == pipeline_rows(pipeline, "sales_order")
    (batch,) = events_since(url, first, "totes.batch.loaded")
    assert batch["payload"]["batch_id"] == loaded["batch_id"]
    assert batch["payload"]["tables"]["fact_sales_order"] == loaded["rows_changed"]
    # The automation of deployments/automations.yaml ran the downstream deployment for that batch.
    wait_for(lambda: downstream_runs(url, downstream), timeout=60, what="the automation's flow run")
    assert downstream_runs(url, downstream)[0]["parameters"] == {"batch_id": loaded["batch_id"]}

    # 2. One design changes: its raw table, its star table and its warehouse table, nothing else.
    execute(
        pipeline.source_url,
        "update design set design_name = 'Renamed', last_updated = (now() at time zone 'UTC') where design_id = 1",
    )
    second = run(pipeline, url, "run")
    settle(url, second, expected=1, prefixes=("totes.batch.loaded",))
    settle(url, second, expected=3, prefixes=("prefect.asset.materialization.",))
    assert set(materialized(url, second)) == {
        keys.raw("design"),
        keys.star("dim_design"),
        keys.warehouse_table("dim_design"),
    }

    # 3. A bad row and a new source column: each is an event operators can act on.
    execute(pipeline.source_url, *null_units_sold(3), "alter table design add column colour text")
    pipeline.churn(orders=5)
    third = run(pipeline, url, "run")
    settle(url, third, expected=2, prefixes=("totes.rows.", "totes.source."))
    (set_aside,) = events_since(url, third, "totes.rows.quarantined")
    assert set_aside["payload"]["table"] == "sales_order" and set_aside["payload"]["rows"] == 1
    assert set_aside["resource"]["prefect.resource.id"] == "totes.table.sales_order"
    star_sales = keys.star("fact_sales_order")
    wait_for(lambda: star_sales in materialized(url, third), timeout=60, what="star.fact_sales_order materialized")
    warned = materialized(url, third)[star_sales]["payload"]["warnings"]
    assert [w.split(" (")[0] for w in warned] == ["sales_order: 1 row(s) rejected and kept in the lake's quarantine"]
    (drift,) = events_since(url, third, "totes.source.schema_drift")
    assert drift["payload"]["stopped"] is False and "colour" in " ".join(drift["payload"]["problems"])

    # 4. The file feeds: a good file materializes the feed's files and its table; a bad one is an event.
    feeds = Feeds(sftp_server.root, versioned_files_url, pipeline.warehouse_url)
    feeds.drop("rates-1.csv", rates_file(date(2024, 3, 1), 3))
    feeds.drop("bad.csv", rates_file(date(2024, 3, 20), 2).replace(b"1.26340000", b"1.2634abc", 1))
    fourth = run(pipeline, url, "files")
    settle(url, fourth, expected=1, prefixes=("totes.file.",))
    (bad,) = events_since(url, fourth, "totes.file.quarantined")
    assert bad["payload"]["file"] == "bad.csv" and "1.2634abc" in bad["payload"]["problem"]
    settle(url, fourth, expected=2, prefixes=("prefect.asset.materialization.",))
    assert set(materialized(url, fourth)) == {
        keys.feed_files("exchange_rates"),
        keys.warehouse_table("fact_exchange_rate"),
    }


def pipeline_rows(pipeline, table: str) -> int:
    return int(scalar(pipeline.source_url, f"select count(*) from {table}"))


def downstream_runs(url: str, deployment_id: str) -> list[dict]:
    return call_api(url, "/flow_runs/filter", {"deployments": {"id": {"any_": [deployment_id]}}})
