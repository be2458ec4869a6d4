"""``make bench``: totes beside the baseline and the physical limit, on this machine, in one run.

For each scale: ``totes seed --scale N --delta-indexes`` into an embedded PostgreSQL, then, each on a
fresh warehouse database:

(a) ``totes run``, full load (lake in a fresh local folder, a running Prefect server);
    then a no-op ``totes run`` (nothing changed), the same without PREFECT_API_URL (the local API,
    and Prefect's temporary server), and
(b) ``totes churn`` touching about 0.1 % of the rows, then ``totes run`` (incremental), then
    ``totes reconcile`` (the deep pass, comparing every row's content; rows = source rows compared);
(c) the baseline (bench/baseline.py): pg8000 -> JSON -> pandas -> row-by-row INSERT, capped;
(d) the physical limit (bench/physical_limit.py): COPY (SELECT ...) TO STDOUT -> COPY FROM STDIN;
(f) up to scale 100: the full load with fan-out (``TOTES_FAN_OUT``) on a local process pool with 1
    and 2 workers (fresh warehouse and lake each), and a no-op fan-out run.

Every figure is a whole child process: wall time from start to exit (Python start-up, imports and
Prefect included), CPU time, and its peak RSS from the kernel (``wait4``); for a totes run, the
seconds of each stage. Rows are warehouse rows written. totes runs without pandas, as installed.
Results: bench/results/results.md, results.json and chart.png.

Usage: python -m bench [--scales 1 10 100] [--baseline-insert-seconds 60] [--fan-out-up-to 100]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
WORK = REPO / ".totes" / "bench"  # replaced by --work
BIN = Path(sys.executable).parent


@dataclass
class ChildRun:
    """One command as bench.measure saw it, and what it printed."""

    seconds: float
    cpu_seconds: float
    peak_rss_mib: float
    out: str

    @property
    def stages(self) -> dict[str, float]:
        """Seconds per stage, from `totes run`'s last line ("done in 9.1 s (ingest 2.0 s, ...; start-up,
        Prefect and the rest 4.0 s)"); {} for the other commands."""
        match = re.search(r"done in [\d.]+ s \((.*); start-up", self.out)
        if not match:
            return {}
        return {stage: float(seconds) for stage, seconds in re.findall(r"(\w+) ([\d.]+) s", match.group(1))}


@dataclass
class Measurement:
    scale: float
    variant: str
    seconds: float
    rows: int
    peak_rss_mib: float
    note: str = ""
    extra: dict = field(default_factory=dict)
    cpu_seconds: float = 0.0
    # Wall seconds of each stage of a totes run; the rest of `seconds` is its fixed cost (Python
    # start-up, imports, Prefect's flow and task-run bookkeeping, shutdown).
    stages: dict[str, float] = field(default_factory=dict)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    @property
    def fixed_seconds(self) -> float | None:
        return self.seconds - sum(self.stages.values()) if self.stages else None

    def breakdown(self) -> str:
        """ "ingest 5.1 + transform 6.4 + load 8.5 + fixed 8.0" ("" for a run that has no stages)."""
        if not self.stages:
            return ""
        return " + ".join(
            [*(f"{stage} {seconds:.1f}" for stage, seconds in self.stages.items()), f"fixed {self.fixed_seconds:.1f}"]
        )


def run_child(command: list[str], env: dict[str, str]) -> ChildRun:
    """One command's wall and CPU seconds, peak RSS and stdout, measured by bench.measure."""
    out_path, err_path, report = WORK / "child.out", WORK / "child.err", WORK / "child.json"
    with open(out_path, "w") as out, open(err_path, "w") as err:
        code = subprocess.call(
            [sys.executable, "-m", "bench.measure", str(report), *command], env=env, cwd=REPO, stdout=out, stderr=err
        )
    if code != 0:
        raise RuntimeError(f"{' '.join(command[:4])} failed ({code}):\n{err_path.read_text()[-3000:]}")
    measured = json.loads(report.read_text())
    return ChildRun(measured["seconds"], measured["cpu_seconds"], measured["peak_rss_kib"] / 1024, out_path.read_text())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_prefect_server(home: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = dict(os.environ, PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_UI_ENABLED="false")
    env.pop("PREFECT_API_URL", None)
    server = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            # bandit B310: our own http://127.0.0.1 server
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:  # noqa: S310 - our own local server's URL  # nosec B310
                if response.status == 200:
                    return server, url
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("prefect server did not start within 120 s")


# The baseline runs up to this scale (above it, its reads alone take tens of minutes and GiBs).
BASELINE_MAX_SCALE = 100.0


def fan_out_target(admin_url: str, tag: str) -> dict[str, str]:
    """A fresh warehouse and lake for one fan-out measurement."""
    from tasks.sandbox.embedded_postgres import recreate_databases

    name = f"bench_fanout_{tag}"
    lake = WORK / f"lake-fanout-{tag}"
    shutil.rmtree(lake, ignore_errors=True)
    return {"TOTES_WAREHOUSE_URL": recreate_databases(admin_url, (name,))[name], "TOTES_LAKE_URL": str(lake)}


@contextmanager
def process_workers(env: dict[str, str], count: int) -> Iterator[None]:
    """``count`` workers of the local process pool, with the measurement's settings, for its length."""
    workers = [
        subprocess.Popen(
            [str(BIN / "prefect"), "worker", "start", "--pool", FAN_OUT_POOL, "--limit", "6"],
            cwd=REPO,
            env=env | {"TOTES_HOME": str(REPO), "PREFECT_WORKER_QUERY_SECONDS": "1"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for _ in range(count)
    ]
    try:
        yield
    finally:
        for worker in workers:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=60)


# The pool of deployments/local.prefect.yaml, where fan-out's child deployment is registered.
FAN_OUT_POOL = "totes-local"


def deploy_fan_out_child(server_url: str) -> None:
    """The extract-table deployment on a local process pool of the bench's Prefect server."""
    env = dict(os.environ, PREFECT_API_URL=server_url, TOTES_HOME=str(REPO))
    for command in (
        ["work-pool", "create", FAN_OUT_POOL, "--type", "process"],
        ["deploy", "--prefect-file", "deployments/local.prefect.yaml", "--name", "totesys-extract-table"],
    ):
        subprocess.run(
            [str(BIN / "prefect"), "--no-prompt", *command], cwd=REPO, env=env, check=True, capture_output=True
        )


def extract_runs(server_url: str) -> int:
    """How many extract-table flow runs (fan-out's children) the bench's Prefect server has seen."""
    request = urllib.request.Request(  # noqa: S310 - the bench's own local server
        f"{server_url}/flow_runs/count",
        data=json.dumps({"flows": {"name": {"any_": ["extract-table"]}}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - the bench's own local server  # nosec B310
        return int(json.load(response))


def local_prefect_home() -> Path:
    """The PREFECT_HOME of the runs without PREFECT_API_URL: their local API lives there."""
    return WORK / "prefect-local"


def machine() -> dict[str, str]:
    cpu = "unknown CPU"
    try:
        match = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        cpu = match.group(1).strip() if match else cpu
    except OSError:
        pass
    memory = ""
    try:
        kib = int(re.search(r"MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text()).group(1))
        memory = f"{kib / 1024 / 1024:.0f} GiB"
    except (OSError, AttributeError):
        pass
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": memory,
        "python": platform.python_version(),
        "os": platform.platform(terse=True),
    }


def totes(*args: str) -> list[str]:
    return [str(BIN / "totes"), *args]


def warehouse_rows(url: str) -> int:
    from tasks.core.postgres import connect
    from tasks.sandbox.demo_queries import count_rows

    with connect(url) as connection:
        return sum(count_rows(connection).values())


def ingested_rows(summary: str) -> int:
    """Rows ingested, from `totes run`'s "ingested: address 30, ... (2449 rows)" line (0: "nothing new")."""
    match = re.search(r"^ingested: .*\((\d+) rows\)$", summary, re.MULTILINE)
    return int(match.group(1)) if match else 0


def bench_scale(
    scale: float, server_url: str, admin_url: str, insert_seconds: float, fan_out_up_to: float
) -> list[Measurement]:
    from tasks.sandbox.embedded_postgres import recreate_databases

    tag = str(scale).replace(".", "_")
    names = tuple(f"bench_{kind}_{tag}" for kind in ("source", "totes", "baseline", "limit"))
    urls = dict(
        zip(("source", "totes", "baseline", "limit"), recreate_databases(admin_url, names).values(), strict=True)
    )
    lake = WORK / f"lake-{tag}"
    shutil.rmtree(lake, ignore_errors=True)
    env = dict(
        os.environ,
        TOTES_SOURCE_URL=urls["source"],
        TOTES_WAREHOUSE_URL=urls["totes"],
        TOTES_LAKE_URL=str(lake),
        PREFECT_API_URL=server_url,
        PREFECT_LOGGING_LEVEL="WARNING",
        # totes as installed: without pandas, which only the baseline needs (see without_pandas/).
        PYTHONPATH=str(REPO / "bench" / "without_pandas"),
    )
    with_pandas = {k: v for k, v in env.items() if k != "PYTHONPATH"}
    results = []

    def record(variant: str, child: ChildRun, rows: int, note: str = "", **extra: object) -> None:
        m = Measurement(
            scale, variant, child.seconds, rows, child.peak_rss_mib, note, extra, child.cpu_seconds, child.stages
        )
        results.append(m)
        print(
            f"  scale {scale:g} {variant:<30} {m.seconds:8.1f} s {m.cpu_seconds:6.1f} s CPU {rows:>10} rows "
            f"{m.rows_per_second:>10,.0f} rows/s {m.peak_rss_mib:6.0f} MiB  {m.breakdown()}  {note}",
            flush=True,
        )

    child = run_child(totes("seed", "--scale", str(scale), "--delta-indexes"), env)
    source_rows = int(re.search(r"totes seed: (\d+) rows", child.out).group(1))
    record("seed (totes seed)", child, source_rows, "source rows written")

    child = run_child([sys.executable, "-m", "bench.physical_limit", urls["source"], urls["limit"]], env)
    limit = json.loads(child.out.strip().splitlines()[-1])
    record("(d) physical limit", child, limit["rows"], "COPY to COPY", tables=limit["tables"])

    child = run_child(totes("run"), env)
    record("(a) totes run, full", child, warehouse_rows(urls["totes"]))

    # On the same source state as (a) and (d): before the churn below. Above BASELINE_MAX_SCALE the
    # baseline is not run: it reads every row into pandas (2.7 GiB and 400 s at scale 100).
    if scale <= BASELINE_MAX_SCALE:
        work = WORK / f"baseline-{tag}"
        shutil.rmtree(work, ignore_errors=True)
        child = run_child(
            [
                sys.executable,
                "-m",
                "bench.baseline",
                urls["source"],
                urls["baseline"],
                str(work),
                "--insert-seconds",
                str(insert_seconds),
            ],
            with_pandas,
        )
        baseline = json.loads(child.out.strip().splitlines()[-1])
        note = (
            "complete"
            if baseline["complete"]
            else (
                f"stopped after {baseline['insert_seconds']:.0f} s of inserts: {baseline['rows']} of {baseline['rows_total']} rows; "
                f"all rows would take ~{baseline['projected_seconds'] / 60:.0f} min"
            )
        )
        record("(c) baseline pg8000+pandas", child, baseline["rows"], note, details=baseline)
        shutil.rmtree(work, ignore_errors=True)

    # (f) Fan-out on the local process pool, on the same source state as (a), each into a fresh
    # warehouse and lake: the cycle in this process, each table's extract a child run on a worker.
    if scale <= fan_out_up_to:
        for workers in (1, 2):
            fan_env = env | fan_out_target(admin_url, f"{tag}_{workers}")
            with process_workers(fan_env, workers):
                runs = extract_runs(server_url)
                child = run_child(totes("run"), fan_env | {"TOTES_FAN_OUT": "true"})
                rows = warehouse_rows(fan_env["TOTES_WAREHOUSE_URL"])
                children = extract_runs(server_url) - runs
                record(
                    f"(f) fan-out, {workers} worker(s)",
                    child,
                    rows,
                    f"{children} child run(s) (tables of ≥ 500,000 rows), the rest read by the cycle; RSS of the cycle only",
                    children=children,
                )
                if workers == 2:
                    runs = extract_runs(server_url)
                    child = run_child(totes("run"), fan_env | {"TOTES_FAN_OUT": "true"})
                    children = extract_runs(server_url) - runs
                    record(
                        "no-op fan-out, 2 workers",
                        child,
                        0,
                        f"{children} child runs: nothing to read",
                        children=children,
                    )
                    # What a child costs: every table a child (each with nothing to read) against none.
                    every = {"TOTES_FAN_OUT": "true", "TOTES_FAN_OUT_MIN_ROWS": "0"}
                    runs = extract_runs(server_url)
                    child = run_child(totes("run"), fan_env | every)
                    children = extract_runs(server_url) - runs
                    record(
                        "no-op fan-out, a child per table",
                        child,
                        0,
                        f"TOTES_FAN_OUT_MIN_ROWS=0: {children} child runs with nothing to read",
                        children=children,
                    )

    record("no-op totes run", run_child(totes("run"), env), 0, "Prefect server")
    local = {k: v for k, v in env.items() if k != "PREFECT_API_URL"} | {"PREFECT_HOME": str(local_prefect_home())}
    record("no-op totes run, local API", run_child(totes("run"), local), 0, "no PREFECT_API_URL: the local API")
    record(
        "no-op totes run, temporary API",
        run_child(totes("run"), local | {"TOTES_LOCAL_PREFECT_API": "temporary"}),
        0,
        "Prefect's temporary server, started by the run",
    )

    # About 0.1 % of the source's rows: one churn order writes ~6 rows (order, transaction, payment,
    # half a purchase order with its own, a paid flip, an amendment).
    orders = max(1, round(source_rows * 0.001 / 6))
    run_child(totes("churn", "--orders", str(orders)), env)
    before = warehouse_rows(urls["totes"])
    child = run_child(totes("run"), env)
    changed = ingested_rows(child.out)
    record(
        "(b) totes run, incremental",
        child,
        changed,
        f"{changed} source rows changed ({changed / source_rows:.2%})",
        warehouse_rows_added=warehouse_rows(urls["totes"]) - before,
    )

    # The deep pass on a source in step with the lake: its recurring cost (one hash of every row
    # on the server, per-range sums compared with the lake's, nothing read again).
    child = run_child(totes("reconcile"), env)
    record(
        "(e) totes reconcile, deep pass",
        child,
        source_rows,
        f"content of all {source_rows} source rows compared; {ingested_rows(child.out)} read again",
    )
    # Each scale's databases go once it is measured (scale 1000's hold tens of GB); its lake stays.
    drop_databases(admin_url, [*names, *(f"bench_fanout_{tag}_{workers}" for workers in (1, 2))])
    return results


def drop_databases(admin_url: str, names: list[str]) -> None:
    from tasks.core.postgres import connect

    with connect(admin_url) as connection:
        connection.adbc_connection.set_autocommit(True)
        with connection.cursor() as cursor:
            for name in names:
                cursor.execute(f'drop database if exists "{name}" with (force)')  # the bench's own names


def ratios(results: list[Measurement]) -> dict[tuple[float, str], tuple[float | None, float | None]]:
    """(throughput / limit's, throughput / baseline's) for each measurement with rows."""
    by = {(m.scale, m.variant): m for m in results}
    out = {}
    for m in results:
        limit = by.get((m.scale, "(d) physical limit"))
        base = by.get((m.scale, "(c) baseline pg8000+pandas"))
        if not m.rows or not m.variant.startswith(("(a)", "(c)", "(d)", "(f)")):
            out[(m.scale, m.variant)] = (None, None)
            continue
        out[(m.scale, m.variant)] = (
            m.rows_per_second / limit.rows_per_second if limit and limit.rows_per_second else None,
            m.rows_per_second / base.rows_per_second if base and base.rows_per_second else None,
        )
    return out


def markdown(results: list[Measurement], info: dict[str, str], started: datetime) -> str:
    ratio = ratios(results)
    lines = [
        "# totes benchmark",
        "",
        f"Measured {started:%Y-%m-%d %H:%M} UTC by `make bench` on {info['cpu']}, {info['cores']} cores, "
        f"{info['memory']}, Python {info['python']}, {info['os']}; PostgreSQL from the `pgserver` wheel "
        "(source and warehouses on one server, unix socket), lake in a local folder, a running Prefect "
        "server unless noted. Each figure is one child process, start-up included: wall time, CPU time "
        "(user + system, of the process and its children), warehouse rows written per second, peak RSS "
        "(kernel `ru_maxrss`), and for a totes run the wall seconds of each stage, fixed = the rest "
        "(Python start-up, imports, Prefect's bookkeeping, shutdown).",
        "",
        "| scale | run | wall time | CPU | rows | rows/s | peak RSS | × limit (d) | × baseline (c) | seconds per stage | note |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for m in results:
        to_limit, to_base = ratio[(m.scale, m.variant)]
        lines.append(
            f"| {f'{m.scale:g}' if m.scale else '–'} | {m.variant} | {m.seconds:.1f} s | {m.cpu_seconds:.1f} s | {m.rows:,} | {m.rows_per_second:,.0f} | "
            f"{m.peak_rss_mib:.0f} MiB | {'' if to_limit is None else f'{to_limit:.2f}'} | "
            f"{'' if to_base is None else f'{to_base:,.2g}' if to_base < 10 else f'{to_base:,.0f}'} | {m.breakdown()} | {m.note} |"
        )
    lines += ["", "## Against the targets", ""]
    lines += targets(results)
    return "\n".join(lines) + "\n"


def targets(results: list[Measurement]) -> list[str]:
    """The issue's targets, each beside what this run measured."""
    by = {(m.scale, m.variant): m for m in results}
    ratio = ratios(results)
    lines = []
    scales = sorted({m.scale for m in results if m.scale})
    main = 100.0 if 100.0 in scales else scales[-1]
    incremental = by.get((main, "(b) totes run, incremental"))
    noop, local = by.get((main, "no-op totes run")), by.get((main, "no-op totes run, local API"))
    for scale in scales:
        full_at = by.get((scale, "(a) totes run, full"))
        if full_at and ratio[(scale, full_at.variant)][0] is not None:
            to_limit, to_base = ratio[(scale, full_at.variant)]
            target = "≥ 0.6, stretch 0.8" if scale == 100 else "≥ 0.5" if scale >= 300 else "–"
            lines.append(
                f"- Full load at scale {scale:g}: {to_limit:.2f} × the physical limit's throughput (target {target})"
                + (f", {to_base:,.0f} × the baseline's" if to_base else "")
                + f"; {full_at.breakdown()} s; peak RSS {full_at.peak_rss_mib:.0f} MiB (target < 1024 MiB)."
            )
    if noop and local:
        lines.append(
            f"- No-op run at scale {main:g}: {noop.seconds:.1f} s with a Prefect server, {local.seconds:.1f} s "
            f"without PREFECT_API_URL (the local API) (target ≤ 2 s each); {noop.breakdown()} s."
        )
    if incremental and noop:
        lines.append(
            f"- Incremental after ~0.1 % churn at scale {main:g}: {incremental.seconds:.1f} s = the no-op run "
            f"+ {incremental.seconds - noop.seconds:.1f} s (target ≤ + 1 s); {incremental.breakdown()} s."
        )
    fulls = [m for m in results if m.variant == "(a) totes run, full"]
    if fulls:
        worst = max(fulls, key=lambda m: m.peak_rss_mib)
        lines.append(
            f"- Peak RSS of the full load: at most {worst.peak_rss_mib:.0f} MiB (scale {worst.scale:g}) "
            "(target < 1024 MiB at every scale)."
        )
        ten, top = by.get((10.0, "(a) totes run, full")), fulls[-1]
        if ten and top.scale > 10:
            lines.append(
                f"- Growth from scale 10 to {top.scale:g}: peak RSS {top.peak_rss_mib / ten.peak_rss_mib:.2f} ×, "
                f"time {top.seconds / ten.seconds:.1f} × for {top.rows / ten.rows:.0f} × the rows."
            )
    deep = by.get((main, "(e) totes reconcile, deep pass"))
    if deep and noop:
        lines.append(
            f"- Deep pass (`totes reconcile`) at scale {main:g}: {deep.seconds:.1f} s, against {noop.seconds:.1f} s "
            f"for a no-op run: {deep.seconds - noop.seconds:.1f} s to hash and compare {deep.rows:,} rows."
        )
    for scale in scales:
        one, two = by.get((scale, "(f) fan-out, 1 worker(s)")), by.get((scale, "(f) fan-out, 2 worker(s)"))
        fan_noop, plain_noop = by.get((scale, "no-op fan-out, 2 workers")), by.get((scale, "no-op totes run"))
        every = by.get((scale, "no-op fan-out, a child per table"))
        single = by.get((scale, "(a) totes run, full"))
        if one and two and single:
            lines.append(
                f"- Fan-out at scale {scale:g} (local process pool): ingest {one.stages.get('ingest', 0):.1f} s with 1 "
                f"worker, {two.stages.get('ingest', 0):.1f} s with 2, {single.stages.get('ingest', 0):.1f} s in one "
                f"process (target: 2 workers ≥ 1.3 × one process); whole runs {one.seconds:.1f}, {two.seconds:.1f} "
                f"and {single.seconds:.1f} s."
            )
        if fan_noop and plain_noop:
            lines.append(
                f"- No-op fan-out at scale {scale:g}: {fan_noop.seconds:.1f} s against {plain_noop.seconds:.1f} s "
                f"without fan-out (target ≤ + 2 s): no table needs a child."
            )
        if every and plain_noop and every.extra.get("children"):
            children = int(every.extra["children"])
            lines.append(
                f"- A child's cost on the local process pool: {every.seconds:.1f} s for a no-op run with all "
                f"{children} tables as children on 2 workers, against {plain_noop.seconds:.1f} s: "
                f"~{(every.seconds - plain_noop.seconds) * 2 / children:.1f} s of start-up per child (an ECS task "
                "adds its own start, typically 30-60 s on Fargate: hence only big reads get one)."
            )
    return lines


def chart(results: list[Measurement], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = ["(a) totes run, full", "(f) fan-out, 2 worker(s)", "(d) physical limit", "(c) baseline pg8000+pandas"]
    scales = sorted({m.scale for m in results})
    by = {(m.scale, m.variant): m for m in results}
    figure, (throughput, memory) = plt.subplots(1, 2, figsize=(11, 4.2))
    for variant in variants:
        points = [(s, by[(s, variant)]) for s in scales if (s, variant) in by]
        xs = [s for s, _ in points]
        throughput.plot(xs, [m.rows_per_second for _, m in points], marker="o", label=variant)
        memory.plot(xs, [m.peak_rss_mib for _, m in points], marker="o", label=variant)
    for axis, title, unit in (
        (throughput, "Throughput", "warehouse rows per second"),
        (memory, "Peak memory", "peak RSS (MiB)"),
    ):
        axis.set_xscale("log")
        axis.set_xlabel("scale (1 = the real ToteSys size)")
        axis.set_ylabel(unit)
        axis.set_title(title)
        axis.grid(True, alpha=0.3)
    throughput.set_yscale("log")
    throughput.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    global WORK  # the scratch folder every step uses: set once, from --work
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 10.0, 100.0])
    parser.add_argument(
        "--baseline-insert-seconds",
        type=float,
        default=60.0,
        help="stop the baseline's row-by-row inserts after this long (default 60)",
    )
    parser.add_argument(
        "--fan-out-up-to",
        type=float,
        default=100.0,
        help="measure fan-out (f) at scales up to this one (default 100; 0: not at all)",
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="where to write the results")
    parser.add_argument("--work", type=Path, default=WORK, help="scratch folder (databases, lakes)")
    args = parser.parse_args()
    WORK = args.work.resolve()
    started = datetime.now(UTC)
    info = machine()
    WORK.mkdir(parents=True, exist_ok=True)
    results_dir = args.results.resolve()
    results_dir.mkdir(parents=True, exist_ok=True)
    print(f"totes bench on {info['cpu']} ({info['cores']} cores, {info['memory']}); scales {args.scales}", flush=True)

    from tasks.sandbox.embedded_postgres import start_embedded_postgres

    admin_url = start_embedded_postgres(WORK / "pgdata", fresh=True)
    shutil.rmtree(WORK / "prefect", ignore_errors=True)
    server, server_url = start_prefect_server(WORK / "prefect")
    shutil.rmtree(local_prefect_home(), ignore_errors=True)
    local = dict(os.environ, PREFECT_HOME=str(local_prefect_home()))
    local.pop("PREFECT_API_URL", None)
    results: list[Measurement] = []
    try:
        # Its one-off start, measured: a user without a Prefect server pays it on the first run.
        child = run_child(totes("local-api", "start"), local)
        results.append(
            Measurement(
                0,
                "local API start (once)",
                child.seconds,
                0,
                child.peak_rss_mib,
                "totes local-api start",
                cpu_seconds=child.cpu_seconds,
            )
        )
        print(f"  local API started in {child.seconds:.1f} s", flush=True)
        deploy_fan_out_child(server_url)
        for scale in args.scales:
            print(f"scale {scale:g}:", flush=True)
            results += bench_scale(scale, server_url, admin_url, args.baseline_insert_seconds, args.fan_out_up_to)
    finally:
        subprocess.call(totes("local-api", "stop"), env=local, stdout=subprocess.DEVNULL)
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    report = markdown(results, info, started)
    (results_dir / "results.md").write_text(report)
    (results_dir / "results.json").write_text(
        json.dumps(
            {
                "machine": info,
                "measured_at": started.isoformat(),
                "results": [asdict(m) | {"rows_per_second": m.rows_per_second} for m in results],
            },
            indent=1,
        )
    )
    chart(results, results_dir / "chart.png")
    print("\n" + report)
    print(f"written: {results_dir / 'results.md'}, {results_dir / 'results.json'}, {results_dir / 'chart.png'}")


if __name__ == "__main__":
    main()
