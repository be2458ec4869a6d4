"""Stage, the feeds' second stage (a Prefect task): the raw zone -> the staging zone.

The staging zone holds exactly the latest good version of each file still on SFTP, parsed to typed
Parquet; a version that does not parse is quarantined and the file's previous good version stays.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.core.assets import announce_file_quarantined
from tasks.core.manifests import REFUSED_AT_PARSE
from tasks.core.retries import RETRY_POLICY
from tasks.feeds.declarations import Feed, declared_feed
from tasks.feeds.parsing import FeedFileError, parse_feed_file
from tasks.feeds.plans import plan_staging
from tasks.feeds.store import FeedStore
from tasks.settings import load_settings


@dataclass
class StageResult:
    staged: dict[str, str]  # file -> staged version
    newly_staged: list[str] = field(default_factory=list)
    unstaged: list[str] = field(default_factory=list)
    new_quarantine: list[str] = field(default_factory=list)  # messages, first time seen
    still_quarantined: list[str] = field(default_factory=list)


@task(name="stage-feed", task_run_name="stage-{feed_name}", cache_policy=NO_CACHE, **RETRY_POLICY)
def stage_feed(feed_name: str, latest: dict[str, str]) -> StageResult:
    """Make the staging zone hold exactly the latest good version of each file in ``latest``."""
    logger = get_run_logger()
    settings = load_settings()
    feed = declared_feed(feed_name, settings.feeds_file)
    store = FeedStore(settings.feed_files_url)
    staged = store.staged(feed.name)
    quarantined = store.quarantined(feed.name)
    refused_at_parse = {key for key, record in quarantined.items() if record.stage == REFUSED_AT_PARSE}
    plan = plan_staging(
        latest,
        {name: [v for v, _ in entries] for name, entries in staged.items()},
        refused_at_parse,
        keep_removed=feed.keep_removed,
    )
    result = StageResult(staged={})
    for name, version in plan.held_back:
        record = quarantined[(name, version)]
        result.still_quarantined.append(f"{feed.source_path(name)} (version {version}): {record.problem}")
    for name, version in plan.parse:
        data = store.read_raw(feed.name, name, version)
        try:
            table = parse_feed_file(feed, feed.source_path(name), data, version=version)
        except FeedFileError as error:
            if kept := store.quarantine(error.quarantine_record(feed=feed.name, file=name, version=version)):
                announce_file_quarantined(kept)
                result.new_quarantine.append(str(error))
            logger.error("Feed %s: quarantined version %s of %s: %s", feed.name, version, name, error)
            continue
        store.write_staged(feed.name, name, version, table)
        result.newly_staged.append(name)
        logger.info("Feed %s: staged %s version %s (%d rows)", feed.name, name, version, table.num_rows)
        # Only now that the new version is staged do its older versions go.
        for old_version, path in staged.get(name, []):
            if old_version != version:
                store.drop_staged(path)
    paths = {(name, v): p for name, entries in staged.items() for v, p in entries}
    for name, version in plan.drop:
        store.drop_staged(paths[(name, version)])
        if name not in latest:
            result.unstaged.append(name)
    if result.unstaged:
        logger.info("Feed %s: removed from SFTP, so unstaged: %s", feed.name, ", ".join(sorted(set(result.unstaged))))
    for message in result.still_quarantined:
        logger.warning("Feed %s: still quarantined until a corrected file arrives: %s", feed.name, message)
    result.staged = current_staged(store, feed)
    return result


def current_staged(store: FeedStore, feed: Feed) -> dict[str, str]:
    """file -> the version the loader takes (the newest staged, if a crash left two)."""
    return {name: entries[-1][0] for name, entries in store.staged(feed.name).items()}
