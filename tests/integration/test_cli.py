"""The public contract: ``totes seed``, ``totes churn`` and ``totes run`` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA
from tests.integration.conftest import Pipeline, scalar

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def local_pipeline(databases, prefect_api, tmp_path, monkeypatch) -> Pipeline:
    """A pipeline whose lake is a local folder, driven through the ``totes`` command."""
    monkeypatch.setenv("PREFECT_API_URL", prefect_api)
    return Pipeline(databases.source_url, databases.warehouse_url, str(tmp_path / "lake"), monkeypatch)


def totes(pipeline: Pipeline, *args: str) -> tuple[int, str, str]:
    child = pipeline.run_cli(*args)
    out, err = child.communicate(timeout=600)
    return child.returncode, out, err


# Skipped before its fixtures start the databases and the Prefect API for nothing.
@pytest.mark.skipif(
    not SHARED_DATA.is_file(),
    reason=f"the real ToteSys snapshot (shared/data, beside the checkout) is not at {SHARED_DATA}",
)
def test_real_totesys_dump_through_the_command_line(local_pipeline):
    code, out, err = totes(local_pipeline, "seed", "--from", str(SHARED_DATA))
    assert code == 0, err
    assert scalar(local_pipeline.source_url, "select count(*) from sales_order") == 6941
    assert scalar(local_pipeline.source_url, "select count(*) from payment") == 9899

    local_pipeline.checkpoint()
    code, out, err = totes(local_pipeline, "run")
    assert code == 0, err
    assert "fact_sales_order" in out and "6941" in out
    local_pipeline.assert_warehouse_matches_source()

    code, _, err = totes(local_pipeline, "churn", "--orders", "25")
    assert code == 0, err
    local_pipeline.checkpoint()
    # The next cycle the way a Prefect user developing locally runs a flow: its module as a script.
    script = subprocess.run(
        [sys.executable, str(REPO / "flows" / "etl.py")], capture_output=True, text=True, timeout=600, check=False
    )
    assert script.returncode == 0, script.stderr
    assert "totes run: done in" in script.stdout
    local_pipeline.assert_warehouse_matches_source()
    revenue = scalar(local_pipeline.warehouse_url, "select sum(units_sold * unit_price)::text from fact_sales_order")
    assert "." in revenue and len(revenue.split(".")[1]) == 2  # exact money, never float


def test_seed_refuses_to_overwrite_an_existing_source(local_pipeline):
    assert totes(local_pipeline, "seed", "--scale", "0.01")[0] == 0
    code, _, err = totes(local_pipeline, "seed", "--scale", "0.01")
    assert code == 1
    assert "already has ToteSys tables" in err and "--replace" in err
    assert totes(local_pipeline, "seed", "--scale", "0.01", "--replace")[0] == 0


def test_seed_scale_one_matches_the_real_database_shape(databases, monkeypatch):
    from tasks.core.postgres import connect
    from tasks.sandbox.totesys import seed_generated

    with connect(databases.source_url) as connection:
        counts = seed_generated(connection, 1)
    assert counts["sales_order"] == 11_000
    assert counts["purchase_order"] == 4_600
    assert counts["transaction"] == counts["payment"] == 15_600
    assert (counts["address"], counts["counterparty"], counts["staff"]) == (30, 20, 20)
    assert (counts["department"], counts["currency"], counts["payment_type"]) == (8, 3, 4)
    url = databases.source_url
    assert scalar(url, "select min(units_sold) >= 1000 and max(units_sold) <= 100000 from sales_order")
    assert scalar(url, "select min(unit_price) >= 2 and max(unit_price) <= 4 from sales_order")
    assert (
        scalar(
            url,
            "select count(*) from payment p join transaction t using (transaction_id) "
            "left join sales_order s on s.sales_order_id = t.sales_order_id "
            "where t.transaction_type = 'SALE' and p.payment_amount <> s.units_sold * s.unit_price",
        )
        == 0
    )
    assert (
        scalar(
            url,
            "select count(*) from information_schema.table_constraints "
            "where constraint_type = 'FOREIGN KEY' and table_schema = 'public'",
        )
        == 17
    )


def test_permanent_failure_exits_non_zero_with_one_line_and_no_password(local_pipeline, monkeypatch):
    secret = "Sup3r-Secret-pw"
    missing = local_pipeline.source_url.replace("//postgres:@", f"//postgres:{secret}@").replace(
        "/source_", "/no_such_database_"
    )
    child = local_pipeline.run_cli("run", env={"TOTES_SOURCE_URL": missing})
    out, err = child.communicate(timeout=300)
    assert child.returncode == 1
    last_line = err.strip().splitlines()[-1]
    assert last_line.startswith("totes run: failed:")
    assert "does not exist" in last_line
    assert secret not in out + err
    assert "Retrying" not in err  # a missing database is permanent: no retry


def test_run_without_configuration_names_the_missing_variable(local_pipeline, monkeypatch):
    child = local_pipeline.run_cli("run", env={"TOTES_WAREHOUSE_URL": ""})
    _, err = child.communicate(timeout=120)
    assert child.returncode == 2  # a settings problem: nothing ran
    assert "TOTES_WAREHOUSE_URL" in err.strip().splitlines()[-1]


def test_rebuild_asks_first_and_backfill_names_an_unknown_table(local_pipeline):
    local_pipeline.seed(scale=0.02)
    local_pipeline.checkpoint()
    code, _, err = totes(local_pipeline, "run")
    assert code == 0, err

    refused = local_pipeline.run_cli("rebuild", stdin=subprocess.DEVNULL)  # no terminal: no one to ask
    _, err = refused.communicate(timeout=300)
    assert refused.returncode == 2  # a usage problem: nothing ran
    assert err.strip().splitlines() == [
        "totes rebuild: the rebuild replaces every star table: confirm with --yes (no terminal to ask on)"
    ]
    code, out, err = totes(local_pipeline, "rebuild", "--yes")
    assert code == 0, err
    assert "totes rebuild: done in" in out
    local_pipeline.assert_warehouse_matches_source()

    code, _, err = totes(local_pipeline, "backfill", "--table", "sales_orders")
    assert code == 2
    assert err.strip().startswith("totes backfill: backfill: unknown source table(s) sales_orders;")


def test_version_help_json_status_for_monitors_and_doctor(local_pipeline):
    code, out, _ = totes(local_pipeline, "--version")
    assert code == 0 and out.startswith("totes 0.")
    for command in ("run", "backfill", "rebuild", "files", "status", "doctor", "demo"):
        code, out, _ = totes(local_pipeline, command, "--help")
        assert code == 0 and "examples:" in out and f"totes {command}" in out.split("examples:")[1], command

    code, out, err = totes(local_pipeline, "status", "--fail-if-stale", "60")
    assert code == 1 and "behind: the warehouse has loaded nothing yet" in err, err
    code, out, err = totes(local_pipeline, "doctor")
    assert code == 1 and "✗ source tables and grants: source table address does not exist" in out, out + err

    local_pipeline.seed(scale=0.02)
    local_pipeline.checkpoint()
    code, out, err = totes(local_pipeline, "doctor")
    assert code == 0, out + err  # no lake yet is a warning: the first run starts it
    assert "✓ source database" in out and "✓ warehouse database" in out and "every check passed" in out
    assert "! lake:" in out
    code, out, err = totes(local_pipeline, "run", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["batches_loaded"] and report["loaded"]["fact_sales_order"] > 0 and "freshness_seconds" in report
    code, out, err = totes(local_pipeline, "status", "--fail-if-stale", "60", "--fail-if-pending")
    assert code == 0, err
    code, out, err = totes(local_pipeline, "doctor", "--json")
    checks = {check["name"]: check for check in json.loads(out)["checks"]}
    assert code == 0 and checks["lake and warehouse"]["ok"], out
    assert "is loaded from this lake" in checks["lake and warehouse"]["found"]

    broken = local_pipeline.run_cli(
        "doctor", env={"TOTES_WAREHOUSE_URL": local_pipeline.warehouse_url.replace("/warehouse_", "/nowhere_")}
    )
    out, err = broken.communicate(timeout=300)
    assert broken.returncode == 1, out + err
    assert "✗ warehouse database:" in out and "does not exist" in out and "fix: check the database" in out
    assert "Traceback" not in out + err
