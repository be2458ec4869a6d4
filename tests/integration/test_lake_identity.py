"""A lake and a warehouse that know each other: the lake gets an identity with its first batch, the
warehouse records the lake it is loaded from, and `run`, `backfill` and `rebuild` refuse another
lake, an empty one or a missing one with one line — creating nothing, changing nothing. A rebuild
names the lake, its batches and the warehouse before it asks; `--adopt-lake` moves the warehouse
to another lake on purpose.

(On the code before: `totes rebuild --yes` with TOTES_LAKE_URL at an empty folder, a missing one
(which it created) or unset emptied every star table and exited 0; `totes run` with the wrong lake
wrote batches whose ids sort below the real ones, so the current views showed older versions.)"""

from __future__ import annotations

import os

import pytest

from tasks.core.lake import RAW, Lake
from tests.integration.conftest import execute, scalar

COUNTS = "(select count(*) from fact_sales_order), (select count(*) from dim_design)"


def cli(pipeline, *args: str, **env: str | None) -> tuple[int, str, str]:
    run = pipeline.run_cli(*args, env=env)
    out, err = run.communicate(timeout=600)
    return run.returncode, out, err


def counts(pipeline) -> str:
    return str(scalar(pipeline.warehouse_url, f"select row({COUNTS})::text"))


@pytest.fixture
def loaded(pipeline, prefect_api):
    pipeline.seed(scale=0.02)
    pipeline.run()
    return pipeline


@pytest.mark.parametrize("where", ["empty", "missing", "unset"])
def test_a_rebuild_from_an_empty_missing_or_default_lake_is_refused_and_creates_nothing(
    loaded, tmp_path, monkeypatch, where
):
    before = counts(loaded)
    folder = tmp_path / "elsewhere"
    if where == "empty":
        folder.mkdir()
    monkeypatch.chdir(tmp_path)  # the default lake is .totes/lake of the directory one stands in
    lake = None if where == "unset" else str(folder)
    code, _, err = cli(loaded, "rebuild", "--yes", TOTES_LAKE_URL=lake)
    assert code == 1, err
    (line,) = err.strip().splitlines()
    assert line.startswith("totes rebuild: failed: WrongLake: TOTES_LAKE_URL ") and "nothing was changed" in line, line
    assert "a rebuild from it would empty the warehouse" in line
    assert counts(loaded) == before
    assert folder.exists() == (where == "empty"), "a command that only reads a lake created its folder"
    assert not (tmp_path / ".totes").exists()


def test_a_run_with_the_wrong_lake_is_refused_and_writes_nothing_there(loaded, tmp_path):
    before = counts(loaded)
    wrong = tmp_path / "wrong-lake"
    code, _, err = cli(loaded, "run", TOTES_LAKE_URL=str(wrong))
    assert code == 1, err
    assert "WrongLake: TOTES_LAKE_URL" in err and "does not exist" in err and "is loaded from lake" in err, err
    assert not wrong.exists()
    code, _, err = cli(loaded, "backfill", "--table", "design", TOTES_LAKE_URL=str(wrong))
    assert code == 1 and "WrongLake" in err, err
    assert counts(loaded) == before


def test_another_lake_is_refused_until_a_rebuild_adopts_it(loaded, tmp_path, databases, monkeypatch):
    """A second lake of the same source (another environment's, a copy): refused by run and rebuild,
    named with both identities; `totes rebuild --adopt-lake` moves the warehouse to it, and from then
    on the first lake is the one refused."""
    first_lake = loaded.lake_url
    first = Lake.from_url(first_lake).read_identity()
    second_lake = str(tmp_path / "second-lake")
    # The second lake is made by a run into a warehouse of its own (the other environment).
    code, _, err = cli(loaded, "run", TOTES_LAKE_URL=second_lake, TOTES_WAREHOUSE_URL=databases.source_url)
    assert code == 0, err
    second = Lake.from_url(second_lake).read_identity()
    assert first is not None and second is not None and first.lake_id != second.lake_id

    code, _, err = cli(loaded, "run", TOTES_LAKE_URL=second_lake)
    assert code == 1 and f"is lake {second.lake_id}" in err and f"loaded from lake {first.lake_id}" in err, err
    assert "totes rebuild --adopt-lake" in err
    code, _, err = cli(loaded, "rebuild", "--yes", TOTES_LAKE_URL=second_lake)
    assert code == 1 and "WrongLake" in err, err

    loaded.churn(orders=3)
    code, out, err = cli(loaded, "rebuild", "--yes", "--adopt-lake", TOTES_LAKE_URL=second_lake)
    assert code == 0, err
    code, _, err = cli(loaded, "run", TOTES_LAKE_URL=second_lake)
    assert code == 0, err
    monkeypatch.setenv("TOTES_LAKE_URL", second_lake)
    loaded.checkpoint()
    loaded.assert_warehouse_matches_source()
    code, _, err = cli(loaded, "run", TOTES_LAKE_URL=first_lake)
    assert code == 1 and f"loaded from lake {second.lake_id}" in err, err


def test_a_warehouse_and_lake_from_before_identities_are_bound_on_the_next_run(loaded):
    """Upgrading: a warehouse loaded, and a lake written, before lakes had identities."""
    execute(loaded.warehouse_url, "drop table _totes_lake")
    lake = Lake.from_url(loaded.lake_url)
    lake.fs.rm(lake.full("_totes_lake.json"))
    loaded.churn(orders=3)
    loaded.run()
    identity = Lake.from_url(loaded.lake_url).read_identity()
    assert identity is not None
    assert scalar(loaded.warehouse_url, "select lake_id from _totes_lake") == identity.lake_id
    loaded.assert_warehouse_matches_source()


def test_the_rebuild_prompt_names_the_warehouse_the_lake_and_its_batches_and_no_is_exit_0(loaded):
    before = counts(loaded)
    main, terminal = os.openpty()  # input() asks on a terminal only
    try:
        run = loaded.run_cli("rebuild", stdin=terminal)
        os.write(main, b"n\n")
        out, err = run.communicate(timeout=300)
    finally:
        os.close(main)
        os.close(terminal)
    assert run.returncode == 0, err
    identity = Lake.from_url(loaded.lake_url).read_identity()
    batches = len(Lake.from_url(loaded.lake_url).list_batches(RAW))
    assert f"with the {batches} batch(es) of lake {identity.lake_id} at {loaded.lake_url}" in out, out
    assert "warehouse postgresql://" in out and "not confirmed; nothing changed" in out
    assert counts(loaded) == before
    run = loaded.run_cli("rebuild")  # no terminal at all: refused without --yes
    _, err = run.communicate(timeout=300)
    assert run.returncode == 2 and "confirm with --yes" in err, err
