"""Fetch, the feeds' first stage (a Prefect task): SFTP -> the versioned raw zone of the feed store.

Every file whose content changed since the last fetch is copied as a new version; an identical
re-send is recognised by its hash and stores nothing. A rerun after a crash downloads again and finds
the same hashes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.core.manifests import FetchedFile
from tasks.core.retries import RETRY_POLICY
from tasks.feeds.declarations import declared_feed
from tasks.feeds.parsing import FeedFileError, check_file_name, content_hash
from tasks.feeds.plans import files_to_download, settled_files, too_recent_to_trust
from tasks.feeds.store import FeedStore
from tasks.settings import TotesSettings, load_settings

if TYPE_CHECKING:
    from tasks.feeds.sftp import SftpSource


def open_sftp(settings: TotesSettings) -> SftpSource:
    # Imported here: asyncssh costs every process that imports the feeds' report (every ETL run) its
    # import, and warns about ciphers nobody asked for.
    from tasks.feeds.sftp import SftpSource

    return SftpSource(
        settings.require_sftp_url(),
        key_file=settings.sftp_key_file,
        known_hosts=settings.sftp_known_hosts,
        host_keys=settings.sftp_host_keys,
        timeout_seconds=settings.sftp_timeout_seconds,
    )


@dataclass
class FetchResult:
    latest: dict[str, str]  # every current file of the feed -> its latest raw version
    new_versions: list[str] = field(default_factory=list)
    identical: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # names that cannot become lake objects


@task(name="fetch-feed", task_run_name="fetch-{feed_name}", cache_policy=NO_CACHE, **RETRY_POLICY)
def fetch_feed(feed_name: str) -> FetchResult:
    """Copy the feed's changed files from SFTP into the raw zone, one new version per change."""
    logger = get_run_logger()
    settings = load_settings()
    feed = declared_feed(feed_name, settings.feeds_file)
    store = FeedStore(settings.feed_files_url)
    store.check_versioning()
    seen = store.read_fetch_state(feed.name)
    result = FetchResult(latest={})
    with open_sftp(settings) as sftp:
        listing = []
        for remote in sftp.list(feed.directory):
            if not feed.matches(remote.name):
                continue
            try:
                check_file_name(remote.name)
            except FeedFileError as error:
                logger.warning("Feed %s: %s: skipped", feed.name, error)
                result.refused.append(remote.name)
                continue
            listing.append(remote)
        now = int(time.time())
        listing, waiting = settled_files(listing, seen, now=now, min_age_seconds=feed.min_age_seconds)
        if waiting:
            logger.info(
                "Feed %s: %s modified less than %d s ago, left for a later run",
                feed.name,
                ", ".join(r.name for r in waiting),
                feed.min_age_seconds,
            )
        changed = files_to_download(listing, seen, settling={remote.name for remote in waiting})
        logger.info(
            "Feed %s: %d file(s) on %s/%s, %d new, with a new size or mtime, or seen too soon after a change",
            feed.name,
            len(listing),
            sftp.where,
            feed.directory,
            len(changed),
        )
        for remote in changed:
            data = sftp.read(feed.directory, remote.name)
            sha256 = content_hash(data)
            latest = store.latest_raw(feed.name, remote.name)
            if latest is not None and latest[1] == sha256:
                version = latest[0]
                result.identical.append(remote.name)
            else:
                version = store.put_raw(
                    feed.name, remote.name, data, sha256=sha256, size=remote.size, mtime=remote.mtime
                )
                result.new_versions.append(remote.name)
                logger.info("Feed %s: %s -> raw version %s (%d bytes)", feed.name, remote.name, version, len(data))
            seen[remote.name] = FetchedFile(
                size=remote.size,
                mtime=remote.mtime,
                sha256=sha256,
                version=version,
                recheck=too_recent_to_trust(remote.mtime, now=now),
            )
    # The state is a cache, written after the raw versions it describes: a crash before this line
    # makes the next fetch download again and find the same hashes.
    current = {remote.name: seen[remote.name] for remote in listing}
    store.write_fetch_state(feed.name, current)
    result.latest = {name: entry.version for name, entry in current.items()}
    if result.identical:
        logger.info(
            "Feed %s: re-sent with identical content (no new version): %s", feed.name, ", ".join(result.identical)
        )
    return result
