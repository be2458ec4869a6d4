"""The run report: rows per table per stage, printed by the CLI and published as a Prefect artifact."""

from __future__ import annotations

from dataclasses import dataclass, field
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

    @property
    def freshness_seconds(self) -> float | None:
        """How far the warehouse is behind the source: from the time before which every source
        change is in the warehouse, to the end of this run."""
        if self.source_horizon is None or self.finished_at is None:
            return None
        return (self.finished_at.replace(tzinfo=None) - self.source_horizon).total_seconds()

    def rows(self) -> list[dict[str, object]]:
        table = [
            {"table": name, "stage": "ingest", "rows": self.ingested.get(name, 0)} for name in SOURCE_TABLES
        ]
        for name in STAR_TABLES:
            table.append({"table": name, "stage": "transform", "rows": self.transformed.get(name, 0)})
            table.append({"table": name, "stage": "load", "rows": self.loaded.get(name, 0)})
        return table

    def deleted_text(self) -> str:
        """Star rows marked deleted, per table ("" if none)."""
        return ", ".join(f"{name} {rows}" for name, rows in sorted(self.deleted.items()) if rows)

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
        if marked := self.deleted_text():
            lines.append(f"deleted in the source, marked _deleted_at: {marked}")
        if self.freshness_seconds is not None:
            lines.append(f"freshness: the warehouse holds every source change before {self.source_horizon:%Y-%m-%d %H:%M:%S} UTC ({self.freshness_seconds:.0f} s behind)")
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
        lines += ["| source table | new versions ingested |", "|---|---:|"]
        lines += [f"| {name} | {self.ingested.get(name, 0)} |" for name in SOURCE_TABLES]
        lines += ["", "| star table | rows built | rows inserted or changed |", "|---|---:|---:|"]
        lines += [
            f"| {name} | {self.transformed.get(name, 0)} | {self.loaded.get(name, 0)} |" for name in STAR_TABLES
        ]
        if marked := self.deleted_text():
            lines += ["", f"**Deleted in the source** (rows marked `_deleted_at`): {marked}"]
        lines += ["", "## Data-quality warnings", ""]
        lines += [f"- {warning}" for warning in self.warnings] or ["None."]
        return "\n".join(lines)


def add_counts(total: dict[str, int], more: dict[str, int]) -> dict[str, int]:
    return {name: total.get(name, 0) + more.get(name, 0) for name in total.keys() | more.keys()}


@task(name="publish-run-report", cache_policy=NO_CACHE)
def publish_run_report(summary: RunSummary) -> RunSummary:
    """Publish the run report as a markdown artifact and the counts as a table artifact."""
    summary.finished_at = datetime.now(UTC)
    create_markdown_artifact(
        key="totes-run-report", markdown=summary.as_markdown(), description="totes run report"
    )
    create_table_artifact(
        key="totes-run-counts",
        table=summary.rows(),
        description=f"Rows per table per stage; batches loaded: {', '.join(summary.batches_loaded) or 'none'}",
    )
    return summary


@dataclass
class FeedReport:
    """What one files cycle did for one feed."""

    feed: str
    files_on_sftp: int = 0
    new_versions: list[str] = field(default_factory=list)
    identical_resends: list[str] = field(default_factory=list)
    newly_staged: list[str] = field(default_factory=list)
    unstaged: list[str] = field(default_factory=list)
    files_loaded: list[str] = field(default_factory=list)
    files_removed: list[str] = field(default_factory=list)
    rows_inserted: int = 0
    rows_deleted: int = 0
    quarantined: list[str] = field(default_factory=list)  # refused for the first time in this run
    still_quarantined: list[str] = field(default_factory=list)
    error: str | None = None  # the feed could not be processed at all


@dataclass
class FilesSummary:
    """What one ``totesys-files`` cycle did, feed by feed."""

    feeds: list[FeedReport] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """New quarantines and failed feeds: what makes the run fail (and alert) after the rest loaded."""
        found = []
        for report in self.feeds:
            found += [f"feed {report.feed}: quarantined {message}" for message in report.quarantined]
            if report.error:
                found.append(f"feed {report.feed} failed: {report.error}")
        return found

    def deleted_text(self) -> str:
        """Star rows marked deleted, per table ("" if none)."""
        return ", ".join(f"{name} {rows}" for name, rows in sorted(self.deleted.items()) if rows)

    def as_text(self) -> str:
        lines = [f"{'feed':<18}{'on sftp':>8}{'new':>6}{'same':>6}{'staged':>8}{'loaded':>8}{'removed':>8}{'rows in':>9}{'rows out':>9}"]
        for r in self.feeds:
            lines.append(
                f"{r.feed:<18}{r.files_on_sftp:>8}{len(r.new_versions):>6}{len(r.identical_resends):>6}"
                f"{len(r.newly_staged):>8}{len(r.files_loaded):>8}{len(r.files_removed):>8}"
                f"{r.rows_inserted:>9}{r.rows_deleted:>9}"
            )
        for r in self.feeds:
            lines += [f"quarantined: {message}" for message in r.quarantined]
            lines += [f"still quarantined: {message}" for message in r.still_quarantined]
            if r.error:
                lines.append(f"failed: feed {r.feed}: {r.error}")
        return "\n".join(lines)

    def as_markdown(self) -> str:
        lines = ["# totes files report", "", "| feed | files on SFTP | new versions | identical re-sends | staged | files loaded | files removed | rows in | rows out |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        lines += [
            f"| {r.feed} | {r.files_on_sftp} | {len(r.new_versions)} | {len(r.identical_resends)} | "
            f"{len(r.newly_staged)} | {len(r.files_loaded)} | {len(r.files_removed)} | {r.rows_inserted} | {r.rows_deleted} |"
            for r in self.feeds
        ]
        lines += ["", "## Quarantined files", ""]
        quarantined = [f"- **new:** {m}" for r in self.feeds for m in r.quarantined]
        quarantined += [f"- still: {m}" for r in self.feeds for m in r.still_quarantined]
        lines += quarantined or ["None."]
        failed = [f"- {r.feed}: {r.error}" for r in self.feeds if r.error]
        if failed:
            lines += ["", "## Failed feeds", "", *failed]
        return "\n".join(lines)


@task(name="publish-files-report", cache_policy=NO_CACHE)
def publish_files_report(summary: FilesSummary) -> FilesSummary:
    create_markdown_artifact(key="totes-files-report", markdown=summary.as_markdown(), description="totes files report")
    return summary
