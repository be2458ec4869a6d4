"""The run report: rows per table per stage, printed by the CLI and published as a Prefect artifact."""

from __future__ import annotations

from dataclasses import dataclass, field

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from tasks.schema import SOURCE_TABLES, STAR_TABLES


@dataclass
class RunSummary:
    """What one ETL cycle did: new source versions ingested, star rows built, warehouse rows changed."""

    ingested: dict[str, int] = field(default_factory=dict)
    transformed: dict[str, int] = field(default_factory=dict)
    loaded: dict[str, int] = field(default_factory=dict)
    batches_loaded: list[str] = field(default_factory=list)

    def rows(self) -> list[dict[str, object]]:
        table = [
            {"table": name, "stage": "ingest", "rows": self.ingested.get(name, 0)} for name in SOURCE_TABLES
        ]
        for name in STAR_TABLES:
            table.append({"table": name, "stage": "transform", "rows": self.transformed.get(name, 0)})
            table.append({"table": name, "stage": "load", "rows": self.loaded.get(name, 0)})
        return table

    def as_text(self) -> str:
        """A plain-text table: source tables with rows ingested, star tables with rows built/loaded."""
        lines = [f"{'table':<22}{'ingested':>10}{'built':>10}{'loaded':>10}"]
        for name in SOURCE_TABLES:
            lines.append(f"{name:<22}{self.ingested.get(name, 0):>10}{'':>10}{'':>10}")
        for name in STAR_TABLES:
            lines.append(
                f"{name:<22}{'':>10}{self.transformed.get(name, 0):>10}{self.loaded.get(name, 0):>10}"
            )
        batches = ", ".join(self.batches_loaded) or "none"
        lines.append(f"batches loaded: {batches}")
        return "\n".join(lines)


def add_counts(total: dict[str, int], more: dict[str, int]) -> dict[str, int]:
    return {name: total.get(name, 0) + more.get(name, 0) for name in total.keys() | more.keys()}


@task(name="publish-run-report", cache_policy=NO_CACHE)
def publish_run_report(summary: RunSummary) -> RunSummary:
    """Publish the per-table counts as a table artifact of the flow run."""
    create_table_artifact(
        key="totes-run-counts",
        table=summary.rows(),
        description=f"Rows per table per stage; batches loaded: {', '.join(summary.batches_loaded) or 'none'}",
    )
    return summary
