"""The file feeds cycle: SFTP -> raw zone (versioned) -> staging zone -> warehouse, feed by feed."""

from __future__ import annotations

from prefect import flow, get_run_logger

from tasks.alerts import alert_on_failure
from tasks.extract import database_slots
from tasks.feed_stages import fetch_feed, load_feed, stage_feed
from tasks.feeds import load_feeds
from tasks.report import FeedReport, FilesSummary, publish_files_report
from tasks.settings import load_settings, scrub


class FeedFilesRefused(RuntimeError):
    """Some feed files were quarantined (or a feed failed) in this run; everything else loaded."""

    def __init__(self, summary: FilesSummary):
        super().__init__("; ".join(summary.problems))
        self.summary = summary


@flow(name="totesys-files", on_failure=[alert_on_failure])
def totesys_files(feeds: list[str] | None = None) -> FilesSummary:
    """One files cycle for every declared feed (or only ``feeds``): fetch changed files from SFTP into
    the versioned raw zone, stage the latest good version of each current file, and make each feed's
    warehouse table equal to exactly the staged files.

    A bad file is quarantined and the feed's other files still load; a failing feed does not stop
    the others. The run then fails, naming every newly quarantined file, so that it alerts once per
    bad file version.
    """
    logger = get_run_logger()
    settings = load_settings()
    declared = load_feeds(settings.feeds_file)
    unknown = sorted(set(feeds or []) - declared.keys())
    if unknown:
        msg = f"unknown feed(s) {', '.join(unknown)}; declared: {', '.join(declared)}"
        raise ValueError(msg)
    warehouse_url = settings.require_warehouse_url()
    summary = FilesSummary()
    for name in feeds or list(declared):
        report = FeedReport(feed=name)
        summary.feeds.append(report)
        try:
            fetched = fetch_feed(name)
            report.files_on_sftp = len(fetched.latest)
            report.new_versions, report.identical_resends = fetched.new_versions, fetched.identical
            staged = stage_feed(name, fetched.latest)
            report.newly_staged, report.unstaged = staged.newly_staged, staged.unstaged
            report.quarantined, report.still_quarantined = staged.new_quarantine, staged.still_quarantined
            with database_slots(warehouse_url, wanted=1, default_slots=settings.database_concurrency):
                loaded, refused = load_feed(name)
            report.files_loaded, report.files_removed = list(loaded.loaded), loaded.removed
            report.rows_inserted, report.rows_deleted = loaded.rows_inserted, loaded.rows_deleted
            report.quarantined += refused
        except Exception as error:  # noqa: BLE001 - one failing feed must not stop the others
            report.error = scrub(f"{type(error).__name__}: {error}", settings)
            logger.error("Feed %s failed: %s", name, report.error)
    publish_files_report(summary)
    if summary.problems:
        raise FeedFilesRefused(summary)
    return summary
