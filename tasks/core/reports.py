"""The run report: rows per table per stage, printed by the CLI and published as a Prefect artifact."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from tasks.schema import SOURCE_TABLES, STAR_TABLES


@dataclass
class RunSummary:
    """What one ETL cycle did: new source versions ingested, star rows built, warehouse rows changed."""

    ingested: dict[str, int] = field(default_factory=dict)
    transformed: dict[str, int] = field(default_factory=dict)
    loaded: dict[str, int] = field(default_factory=dict)
    deleted: dict[str, int] = field(default_factory=dict)
    batches_loaded: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # The warnings no earlier run reported (a new column warns every run, but alerts once).
    new_warnings: list[str] = field(default_factory=list)
    source_horizon: datetime | None = None
    finished_at: datetime | None = None
    # Wall seconds of each stage's body (ingest, transform, load), locks and Prefect task runs
    # included: what a run spent on its work, beside what it paid to start (the CLI's last line).
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def freshness_seconds(self) -> float | None:
        """How far the warehouse is behind the source: from the time before which every source
        change is in the warehouse, to the end of this run."""
        if self.source_horizon is None or self.finished_at is None:
            return None
        return (self.finished_at.replace(tzinfo=None) - self.source_horizon).total_seconds()

    def rows(self) -> list[dict[str, object]]:
        table = [{"table": name, "stage": "ingest", "rows": self.ingested.get(name, 0)} for name in SOURCE_TABLES]
        for name in STAR_TABLES:
            table.append({"table": name, "stage": "transform", "rows": self.transformed.get(name, 0)})
            table.append({"table": name, "stage": "load", "rows": self.loaded.get(name, 0)})
        return table

    def deleted_text(self) -> str:
        """Star rows marked deleted, per table ("" if none)."""
        return ", ".join(f"{name} {rows}" for name, rows in sorted(self.deleted.items()) if rows)

    def then(self, later: RunSummary) -> RunSummary:
        """This stage's summary followed by a later stage's: counts added, lists joined, the source
        horizon of whichever read the source."""
        return RunSummary(
            ingested=add_counts(self.ingested, later.ingested),
            transformed=add_counts(self.transformed, later.transformed),
            loaded=add_counts(self.loaded, later.loaded),
            deleted=add_counts(self.deleted, later.deleted),
            batches_loaded=[*self.batches_loaded, *later.batches_loaded],
            warnings=[*self.warnings, *later.warnings],
            new_warnings=[*self.new_warnings, *later.new_warnings],
            source_horizon=later.source_horizon or self.source_horizon,
            stage_seconds=add_seconds(self.stage_seconds, later.stage_seconds),
        )

    def timed(self, stage: str, seconds: float) -> RunSummary:
        """This summary with the wall seconds one stage took added."""
        return replace(self, stage_seconds=add_seconds(self.stage_seconds, {stage: seconds}))

    def stages_text(self) -> str:
        """Seconds per stage, in the order they ran: "ingest 5.1 s, transform 6.4 s, load 8.5 s"."""
        return ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in self.stage_seconds.items())

    def as_text(self) -> str:
        """The run in a few lines: the rows ingested per source table on one line, then the star
        tables that were built or loaded with their rows (tables with nothing are left out)."""
        ingested = {name: rows for name in SOURCE_TABLES if (rows := self.ingested.get(name, 0))}
        lines = [
            "ingested: "
            + (
                f"{', '.join(f'{name} {rows}' for name, rows in ingested.items())} ({sum(ingested.values())} rows)"
                if ingested
                else "nothing new"
            )
        ]
        star = [name for name in STAR_TABLES if self.transformed.get(name, 0) or self.loaded.get(name, 0)]
        if star:
            lines.append(f"{'star table':<22}{'built':>10}{'loaded':>10}")
            lines += [f"{name:<22}{self.transformed.get(name, 0):>10}{self.loaded.get(name, 0):>10}" for name in star]
        batches = ", ".join(self.batches_loaded) or "none"
        lines.append(f"batches loaded: {batches}")
        if marked := self.deleted_text():
            lines.append(f"deleted in the source, marked _deleted_at: {marked}")
        if self.freshness_seconds is not None:
            lines.append(
                f"freshness: the warehouse holds every source change before {self.source_horizon:%Y-%m-%d %H:%M:%S} UTC ({self.freshness_seconds:.0f} s behind)"
            )
        if self.stage_seconds:
            lines.append(f"stages: {self.stages_text()}")
        lines.extend(f"warning: {warning}" for warning in self.warnings)
        return "\n".join(lines)

    def as_markdown(self) -> str:
        """The run report: counts per table per stage, freshness, data-quality warnings."""
        lines = ["# totes run report", ""]
        if self.freshness_seconds is not None:
            lines += [
                f"**Freshness:** the warehouse holds every source change committed before "
                f"{self.source_horizon:%Y-%m-%d %H:%M:%S} UTC, {self.freshness_seconds:.0f} s before this run ended.",
                "",
            ]
        lines += [f"**Batches loaded:** {', '.join(self.batches_loaded) or 'none'}", ""]
        if self.stage_seconds:
            lines += [f"**Stages:** {self.stages_text()}", ""]
        lines += ["| source table | new versions ingested |", "|---|---:|"]
        lines += [f"| {name} | {self.ingested.get(name, 0)} |" for name in SOURCE_TABLES]
        lines += ["", "| star table | rows built | rows inserted or changed |", "|---|---:|---:|"]
        lines += [f"| {name} | {self.transformed.get(name, 0)} | {self.loaded.get(name, 0)} |" for name in STAR_TABLES]
        if marked := self.deleted_text():
            lines += ["", f"**Deleted in the source** (rows marked `_deleted_at`): {marked}"]
        lines += ["", "## Data-quality warnings", ""]
        lines += [f"- {warning}" for warning in self.warnings] or ["None."]
        return "\n".join(lines)


def add_counts(total: dict[str, int], more: dict[str, int]) -> dict[str, int]:
    """Rows per table of two summaries, added."""
    return {name: total.get(name, 0) + more.get(name, 0) for name in total.keys() | more.keys()}


def add_seconds(total: dict[str, float], more: dict[str, float]) -> dict[str, float]:
    """Seconds per stage of two summaries, added, in the order the stages first ran."""
    return {stage: total.get(stage, 0.0) + more.get(stage, 0.0) for stage in [*total, *more]}


@task(name="publish-run-report", cache_policy=NO_CACHE)
def publish_run_report(summary: RunSummary) -> RunSummary:
    """Publish the run report as a markdown artifact and the counts as a table artifact."""
    summary.finished_at = datetime.now(UTC)
    create_markdown_artifact(key="totes-run-report", markdown=summary.as_markdown(), description="totes run report")
    create_table_artifact(
        key="totes-run-counts",
        table=summary.rows(),
        description=f"Rows per table per stage; batches loaded: {', '.join(summary.batches_loaded) or 'none'}",
    )
    return summary
