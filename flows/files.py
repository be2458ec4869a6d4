"""The file feeds cycle: SFTP -> raw zone (versioned) -> staging zone -> warehouse, feed by feed."""

from __future__ import annotations

from prefect import get_run_logger

from flows.announce import announce_feed
from flows.plain_flow import plain_flow
from tasks.core.alerts import alert_on_failure
from tasks.core.asset_keys import AssetKeys
from tasks.core.concurrency import database_slots
from tasks.core.locks import cycle_lock
from tasks.feeds.declarations import load_feeds
from tasks.feeds.fetch import fetch_feed
from tasks.feeds.load import load_feed
from tasks.feeds.report import FeedReport, FeedsSummary, publish_feeds_report
from tasks.feeds.stage import stage_feed
from tasks.settings import load_settings, scrub


class FeedFilesRefused(RuntimeError):
    """Some feed files were quarantined (or a feed failed) in this run; everything else loaded."""

    def __init__(self, summary: FeedsSummary):
        super().__init__("; ".join(summary.problems))
        self.summary = summary


@plain_flow(name="totesys-files", on_failure=[alert_on_failure])
def totesys_files(feeds: list[str] | None = None) -> FeedsSummary:
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
    keys = AssetKeys.from_settings(settings)
    summary = FeedsSummary()
    # One files cycle at a time: two would fetch, stage and load the same files against each other.
    with cycle_lock(warehouse_url, "files", wait_seconds=settings.lock_wait_seconds):
        for name in feeds or list(declared):
            try:
                fetched = fetch_feed(name)
                staged = stage_feed(name, fetched.latest)
                with database_slots(
                    warehouse_url,
                    purpose="warehouse database",
                    wanted=1,
                    default_slots=settings.database_concurrency,
                    wait_seconds=settings.lock_wait_seconds,
                ):
                    loaded, refused = load_feed(name)
                summary.feeds.append(FeedReport.of(name, fetched, staged, loaded, refused))
                announce_feed(keys, declared[name], summary.feeds[-1])
            except Exception as error:  # noqa: BLE001 - one failing feed must not stop the others
                summary.feeds.append(FeedReport(feed=name, error=scrub(f"{type(error).__name__}: {error}", settings)))
                logger.error("Feed %s failed: %s", name, summary.feeds[-1].error)
    publish_feeds_report(summary)
    if summary.problems:
        raise FeedFilesRefused(summary)
    return summary


if __name__ == "__main__":
    # ``python flows/files.py``: one file-feeds cycle, exactly as ``totes files`` runs it (the same settings, Prefect API, output and exit
    # status). Handed to the command line by name: no flow module depends on the CLI.
    import runpy
    import sys

    sys.argv = ["totes", "files"]
    runpy.run_module("flows.cli", run_name="__main__", alter_sys=True)
