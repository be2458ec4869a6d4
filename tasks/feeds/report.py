"""The files cycle's report, feed by feed: printed by ``totes files`` and published as an artifact."""

from __future__ import annotations

from dataclasses import dataclass, field

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from tasks.feeds.fetch import FetchResult
from tasks.feeds.load import LoadResult
from tasks.feeds.stage import StageResult


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

    @classmethod
    def of(
        cls, feed: str, fetched: FetchResult, staged: StageResult, loaded: LoadResult, refused: list[str]
    ) -> FeedReport:
        """The report of a feed whose three stages ran."""
        return cls(
            feed=feed,
            files_on_sftp=len(fetched.latest),
            new_versions=fetched.new_versions,
            identical_resends=fetched.identical,
            newly_staged=staged.newly_staged,
            unstaged=staged.unstaged,
            files_loaded=list(loaded.loaded),
            files_removed=loaded.removed,
            rows_inserted=loaded.rows_inserted,
            rows_deleted=loaded.rows_deleted,
            quarantined=[*staged.new_quarantine, *refused],
            still_quarantined=staged.still_quarantined,
        )


@dataclass
class FeedsSummary:
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

    def as_text(self) -> str:
        lines = [
            f"{'feed':<18}{'on sftp':>8}{'new':>6}{'same':>6}{'staged':>8}{'loaded':>8}{'removed':>8}{'rows in':>9}{'rows out':>9}"
        ]
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
        lines = [
            "# totes files report",
            "",
            "| feed | files on SFTP | new versions | identical re-sends | staged | files loaded | files removed | rows in | rows out |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
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
def publish_feeds_report(summary: FeedsSummary) -> FeedsSummary:
    """Publish the files cycle's report as a markdown artifact."""
    create_markdown_artifact(key="totes-files-report", markdown=summary.as_markdown(), description="totes files report")
    return summary
