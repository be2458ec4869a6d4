"""``make bench-codecs``: what the lake's Parquet choices cost, measured on a lake a bench run wrote.

For a raw table, a content index and two star tables of the lake, each written again in memory with
every codec and two row-group sizes, then read back: seconds to write, seconds to read, and bytes.
The lake writes zstd (pyarrow's default level) in files of 100,000 rows, one row group each; this
says what the alternatives would change, on this machine, beside that choice measured in the same run.

    python -m bench.codecs .totes/bench/lake-100 [--results bench/results/codecs.md]
"""

from __future__ import annotations

import argparse
import io
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

# (zone folder, table): the largest raw table, its content index, and the star tables the load copies most.
TABLES = (("raw", "payment"), ("raw", "_content_payment"), ("star", "fact_payment"), ("star", "dim_transaction"))
CODECS = ("zstd", "lz4", "snappy", "none")
# The lake's (100,000: one per file) between a smaller and a larger one.
ROW_GROUPS = (16_384, 100_000, 1_048_576)
LAKE_ROW_GROUP = 100_000
REPEATS = 3


@dataclass(frozen=True)
class Trial:
    table: str
    codec: str
    row_group: int
    rows: int
    bytes: int
    write_seconds: float
    read_seconds: float


def read_lake_table(lake: Path, zone: str, table: str) -> pa.Table:
    files = sorted((lake / zone / table).rglob("*.parquet"))
    if not files:
        msg = f"no Parquet files under {lake / zone / table}: run `make bench` (or totes run) on this lake first"
        raise SystemExit(msg)
    return pa.concat_tables(pq.read_table(path) for path in files)


def trial(name: str, data: pa.Table, codec: str, row_group: int) -> Trial:
    """Best of REPEATS writes and reads (the machine's noise only ever adds time)."""
    writes, reads, size = [], [], 0
    for _ in range(REPEATS):
        buffer = io.BytesIO()
        started = time.perf_counter()
        pq.write_table(data, buffer, compression=codec, row_group_size=row_group)
        writes.append(time.perf_counter() - started)
        size = buffer.tell()
        buffer.seek(0)
        started = time.perf_counter()
        pq.read_table(buffer)
        reads.append(time.perf_counter() - started)
    return Trial(name, codec, row_group, data.num_rows, size, min(writes), min(reads))


def markdown(trials: list[Trial], lake: Path) -> str:
    lines = [
        "# Parquet codecs and row groups",
        "",
        f"`python -m bench.codecs {lake}`: each table written again in memory (best of {REPEATS}). "
        "The lake writes zstd in row groups of 100,000 rows (the rows marked *).",
        "",
        "| table | rows | codec | row group | MiB | write s | read s | size × zstd | write × zstd | read × zstd |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for t in trials:
        base = next(b for b in trials if b.table == t.table and b.codec == "zstd" and b.row_group == LAKE_ROW_GROUP)
        mark = " *" if t is base else ""
        lines.append(
            f"| {t.table}{mark} | {t.rows:,} | {t.codec} | {t.row_group:,} | {t.bytes / 2**20:.1f} | "
            f"{t.write_seconds:.2f} | {t.read_seconds:.2f} | {t.bytes / base.bytes:.2f} | "
            f"{t.write_seconds / base.write_seconds:.2f} | {t.read_seconds / base.read_seconds:.2f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.codecs", description=__doc__.split("\n\n")[0])
    parser.add_argument("lake", type=Path, help="a local lake folder a bench run (or totes run) wrote")
    parser.add_argument("--results", type=Path, default=Path(__file__).parent / "results" / "codecs.md")
    args = parser.parse_args()
    trials = []
    for zone, table in TABLES:
        data = read_lake_table(args.lake, zone, table)
        for codec in CODECS:
            for row_group in ROW_GROUPS:
                trials.append(found := trial(f"{zone}/{table}", data, codec, row_group))
                print(
                    f"{found.table:<24} {codec:<7} {row_group:>9,} {found.bytes / 2**20:8.1f} MiB "
                    f"write {found.write_seconds:6.2f} s read {found.read_seconds:6.2f} s",
                    flush=True,
                )
    report = markdown(trials, args.lake)
    args.results.write_text(report)
    print("\n" + report)
    print(f"written: {args.results}")


if __name__ == "__main__":
    main()
