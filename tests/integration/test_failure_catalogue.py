"""The failure catalogue, through the console command: every failure a user can cause or meet ends
with one line that says what failed, where, and what to do; a documented exit code per kind (1 the
work failed or was refused, 2 a usage or settings problem: nothing ran); no traceback without
``-v``; no secret anywhere in the output. The table of docs/operations/failures.md, "The failure
catalogue", lists exactly these cases (checked below).

The server requires passwords, and the password is ``postgres``: a substring of the scheme and the
user's own name, which the masking must neither leak nor garble into ``***ql://***:***@``."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import Pipeline, execute

PASSWORD = "postgres"
FAILURES = Path(__file__).parents[2] / "docs" / "operations" / "failures.md"


@dataclass(frozen=True)
class Case:
    """One catalogue case: the documentation's name for it, the command, the settings it changes (None
    removes one; ``{source}``, ``{warehouse}``, ``{port}``, ``{tmp}`` are filled in), the exit code,
    and a fragment of the one line the command ends with (on stderr)."""

    name: str
    command: tuple[str, ...]
    env: dict[str, str | None]
    exit_code: int
    line: str


CATALOGUE = [
    Case(
        "source host unknown",
        ("run",),
        {"TOTES_SOURCE_URL": "postgresql://postgres:postgres@totesys.invalid:{port}/totesys"},
        1,
        "totes run: failed: ConnectionFailed: cannot connect to the source database "
        "postgresql://postgres:***@totesys.invalid:{port}/totesys: could not translate host name",
    ),
    Case(
        "source password wrong",
        ("run",),
        {"TOTES_SOURCE_URL": "postgresql://postgres:wrong-secret@127.0.0.1:{port}/totesys"},
        1,
        "cannot connect to the source database postgresql://postgres:***@127.0.0.1:{port}/totesys: "
        'connection to server at "127.0.0.1", port {port} failed: FATAL:  password authentication failed for user "postgres"',
    ),
    Case(
        "source database missing",
        ("run",),
        {"TOTES_SOURCE_URL": "postgresql://postgres:postgres@127.0.0.1:{port}/totesys_typo"},
        1,
        'database "totesys_typo" does not exist',
    ),
    Case(
        "source role without SELECT",
        ("run",),
        {"TOTES_SOURCE_URL": "postgresql://no_select:postgres@127.0.0.1:{port}/totesys"},
        1,
        "SourceNotReadable: the source role no_select cannot SELECT source table(s) address, counterparty",
    ),
    Case(
        "warehouse password wrong",
        ("run",),
        {"TOTES_WAREHOUSE_URL": "postgresql://postgres:wrong-secret@127.0.0.1:{port}/warehouse"},
        1,
        "cannot connect to the warehouse database postgresql://postgres:***@127.0.0.1:{port}/warehouse",
    ),
    Case(
        "settings missing",
        ("run",),
        {"TOTES_SOURCE_URL": None, "TOTES_WAREHOUSE_URL": None},
        2,
        "totes run: TOTES_SOURCE_URL is not set: give the postgresql:// URI of the ToteSys source database; "
        "TOTES_WAREHOUSE_URL is not set: give the postgresql:// URI of the warehouse database",
    ),
    Case(
        "settings malformed",
        ("run",),
        {"TOTES_SCHEMA_DRIFT_POLICY": "{bad", "TOTES_DATABASE_CONCURRENCY": "abc"},
        2,
        "TOTES_SCHEMA_DRIFT_POLICY is not valid JSON",
    ),
    Case(
        "setting not a URL",
        ("run",),
        {"TOTES_WAREHOUSE_URL": "mysql://dw/warehouse"},
        2,
        "TOTES_WAREHOUSE_URL must be a postgresql:// URI (got scheme 'mysql')",
    ),
    Case(
        "lake URL is a file",
        ("run",),
        {"TOTES_LAKE_URL": "{tmp}/a-file"},
        1,
        "TOTES_LAKE_URL {tmp}/a-file is a file, not a folder",
    ),
    Case(
        "wrong lake",
        ("run",),
        {"TOTES_LAKE_URL": "{tmp}/empty-lake"},
        1,
        "WrongLake: TOTES_LAKE_URL {tmp}/empty-lake does not exist, but the warehouse",
    ),
    Case(
        "lake bucket missing",
        ("run",),
        {"TOTES_LAKE_URL": "s3://no-such-bucket-for-totes/lake"},
        1,
        "LakeNotFound: the lake's bucket 'no-such-bucket-for-totes' does not exist: create it, or correct TOTES_LAKE_URL",
    ),
    Case(
        "Prefect API unreachable",
        ("run",),
        {"PREFECT_API_URL": "http://127.0.0.1:1/api"},
        1,
        "totes run: failed: RuntimeError: Failed to reach API at http://127.0.0.1:1/api/ (PREFECT_API_URL): start "
        "that server or correct the URL (and PREFECT_API_KEY), or unset it to use the local API",
    ),
    Case(
        "SFTP server unreachable",
        ("files",),
        {"TOTES_SFTP_URL": "sftp://feeds:postgres@127.0.0.1:1/in"},
        1,
        "totes files: failed: FeedFilesRefused: feed exchange_rates failed: SftpError: cannot connect to the SFTP "
        "server sftp://feeds@127.0.0.1:1: Connect call failed",
    ),
    Case(
        "feeds without SFTP",
        ("files",),
        {"TOTES_SFTP_URL": None},
        2,
        "totes files: TOTES_SFTP_URL is not set: give the sftp:// URL of the feeds' SFTP server",
    ),
    Case(
        "unknown feed",
        ("files", "--feed", "nosuch"),
        {"TOTES_SFTP_URL": "sftp://feeds:postgres@127.0.0.1:1/in"},
        2,
        "totes files: unknown feed(s) nosuch; the feeds: exchange_rates",
    ),
    Case(
        "unknown table",
        ("backfill", "--table", "nosuch"),
        {},
        2,
        "totes backfill: backfill: unknown source table(s) nosuch",
    ),
    Case(
        "rebuild not confirmed",
        ("rebuild",),
        {},
        2,
        "totes rebuild: the rebuild replaces every star table: confirm with --yes (no terminal to ask on)",
    ),
]


@pytest.fixture
def served(own_postgres, s3_endpoint, tmp_path, monkeypatch) -> Pipeline:
    """A loaded pipeline on a server that checks passwords (``postgres``), a lake in a local folder."""
    own_postgres.create_database("totesys")
    own_postgres.create_database("warehouse")
    own_postgres.require_password(PASSWORD)
    source = own_postgres.url("totesys", password=PASSWORD)
    warehouse = own_postgres.url("warehouse", password=PASSWORD)
    pipeline = Pipeline(source, warehouse, str(tmp_path / "lake"), monkeypatch)
    pipeline.seed(scale=0.01)
    execute(source, f"create role no_select login password '{PASSWORD}'")
    (tmp_path / "a-file").write_text("not a lake")
    code = pipeline.run_cli("run").wait(timeout=300)
    assert code == 0
    return pipeline


def test_every_failure_is_one_line_with_its_exit_code_and_no_secret(served, own_postgres, tmp_path):
    fill = {"{port}": str(own_postgres.port), "{tmp}": str(tmp_path)}

    def filled(text: str) -> str:
        for mark, value in fill.items():
            text = text.replace(mark, value)
        return text

    def run(case: Case) -> tuple[Case, int, str, str]:
        env = {name: None if value is None else filled(value) for name, value in case.env.items()}
        child = served.run_cli(*case.command, env=env)
        out, err = child.communicate(timeout=600)
        return case, child.returncode, out, err

    # Three commands at a time, those that retry an unreachable service first (the SFTP case waits
    # out its back-off, about 30 s): in sequence, the catalogue took a minute and a half of CI.
    ordered = sorted(CATALOGUE, key=lambda case: "unreachable" not in case.name)
    with ThreadPoolExecutor(max_workers=3) as pool:
        outcomes = list(pool.map(run, ordered))
    problems = []
    for case, returncode, out, err in sorted(outcomes, key=lambda outcome: CATALOGUE.index(outcome[0])):
        lines = err.strip().splitlines()
        last = lines[-1] if lines else ""
        expected = filled(case.line)
        if returncode != case.exit_code:
            problems.append(f"{case.name}: exit {returncode}, expected {case.exit_code}: {last}")
        if expected not in last:
            problems.append(f"{case.name}: the last line is {last!r}, expected it to hold {expected!r}")
        if "Traceback" in out + err:
            problems.append(f"{case.name}: a traceback")
        if re.search(r"://[^:/@\s]*:(postgres|wrong-secret)@", out + err) or "wrong-secret" in out + err:
            problems.append(f"{case.name}: a password in the output")
        if "***ql://" in out + err:
            problems.append(f"{case.name}: the masking garbled a URL")
    assert not problems, "\n".join(problems)


def test_the_documentation_lists_exactly_the_catalogue():
    text = FAILURES.read_text()
    section = text[text.index("\n## The failure catalogue\n") + 1 :]
    section = section.split("\n## ", 1)[0]
    listed = re.findall(r"^\| ([A-Za-z][^|]*?) \| `totes ", section, re.MULTILINE)
    assert listed == [case.name for case in CATALOGUE]
