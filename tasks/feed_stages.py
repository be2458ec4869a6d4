"""The file feeds' three stages, as Prefect tasks: fetch (SFTP -> raw), stage (raw -> staged), load
(staged -> warehouse).

Each stage converges its output to its input, so a rerun after a crash anywhere picks up where the
last run stopped and repeats nothing visible:

- fetch copies every file whose content changed since the last fetch into the raw zone as a new
  version (an identical re-send is recognised by its hash and stores nothing);
- stage makes the staging zone hold exactly the latest good version of each file still on SFTP,
  quarantining versions that do not parse;
- load makes the feed's warehouse table hold exactly the rows of the staged files, in one
  transaction: rows of removed or superseded files are deleted, rows of new versions inserted, and
  ``_totes_feed_file`` records the loaded set. If it equals the staged set, load changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import adbc_driver_postgresql.dbapi as adbc_postgres
import pyarrow as pa
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.extract import connect
from tasks.faults import RETRY_POLICY
from tasks.feed_lake import FeedStore
from tasks.feeds import (
    Feed,
    FeedFileError,
    FetchedFile,
    check_file_name,
    content_hash,
    files_to_download,
    load_feeds,
    parse_feed_file,
    plan_load,
    plan_staging,
    settled_files,
)
from tasks.schema import FEED_TABLES, quote_ident, read_sql, split_sql
from tasks.settings import TotesSettings, load_settings
from tasks.sftp import SftpSource
from tasks.warehouse import migrate, roll_back

# Quarantine records say at which stage a version was refused: a version refused at parse time is
# never staged; one refused at load time is staged and retried on every load (a dimension row it
# needs may arrive later).
PARSE, LOAD = "parse", "load"


def feed_source_path(feed: Feed, name: str) -> str:
    """The file's path on SFTP relative to the server's base path: what lineage columns record."""
    return f"{feed.directory.strip('/')}/{name}"


def _feed(settings: TotesSettings, name: str) -> Feed:
    feeds = load_feeds(settings.feeds_file)
    if name not in feeds:
        msg = f"no feed named {name!r} in {settings.feeds_file or 'the built-in feeds.toml'} (has {', '.join(feeds)})"
        raise KeyError(msg)
    return feeds[name]


def open_sftp(settings: TotesSettings) -> SftpSource:
    return SftpSource(
        settings.require_sftp_url(),
        key_file=settings.sftp_key_file,
        known_hosts=settings.sftp_known_hosts,
        host_keys=settings.sftp_host_keys,
        timeout_seconds=settings.sftp_timeout_seconds,
    )


# --- fetch -------------------------------------------------------------------------------------------


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
    feed = _feed(settings, feed_name)
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
        listing, waiting = settled_files(listing, seen, now=int(time.time()), min_age_seconds=feed.min_age_seconds)
        if waiting:
            logger.info(
                "Feed %s: %s modified less than %d s ago, left for a later run", feed.name,
                ", ".join(r.name for r in waiting), feed.min_age_seconds,
            )
        changed = files_to_download(listing, seen)
        logger.info(
            "Feed %s: %d file(s) on %s/%s, %d with a new size or mtime",
            feed.name, len(listing), sftp.where, feed.directory, len(changed),
        )
        for remote in changed:
            data = sftp.read(feed.directory, remote.name)
            sha256 = content_hash(data)
            latest = store.latest_raw(feed.name, remote.name)
            if latest is not None and latest[1] == sha256:
                version = latest[0]
                result.identical.append(remote.name)
            else:
                version = store.put_raw(feed.name, remote.name, data, sha256=sha256, size=remote.size, mtime=remote.mtime)
                result.new_versions.append(remote.name)
                logger.info("Feed %s: %s -> raw version %s (%d bytes)", feed.name, remote.name, version, len(data))
            seen[remote.name] = FetchedFile(size=remote.size, mtime=remote.mtime, sha256=sha256, version=version)
    # The state is a cache, written after the raw versions it describes: a crash before this line
    # makes the next fetch download again and find the same hashes.
    current = {remote.name: seen[remote.name] for remote in listing}
    store.write_fetch_state(feed.name, current)
    result.latest = {name: entry.version for name, entry in current.items()}
    if result.identical:
        logger.info("Feed %s: re-sent with identical content (no new version): %s", feed.name, ", ".join(result.identical))
    return result


# --- stage -------------------------------------------------------------------------------------------


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
    feed = _feed(settings, feed_name)
    store = FeedStore(settings.feed_files_url)
    staged = store.staged(feed.name)
    quarantined = store.quarantined(feed.name)
    refused_at_parse = {key for key, record in quarantined.items() if record.get("stage") == PARSE}
    plan = plan_staging(
        latest, {name: [v for v, _ in entries] for name, entries in staged.items()}, refused_at_parse,
        keep_removed=feed.keep_removed,
    )
    result = StageResult(staged={})
    for name, version in plan.held_back:
        record = quarantined[(name, version)]
        result.still_quarantined.append(f"{feed_source_path(feed, name)} (version {version}): {record['problem']}")
    for name, version in plan.parse:
        data = store.read_raw(feed.name, name, version)
        try:
            table = parse_feed_file(feed, feed_source_path(feed, name), data, version=version)
        except FeedFileError as error:
            if store.quarantine(feed.name, name, version, {**error.as_record(), "stage": PARSE}):
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


# --- load --------------------------------------------------------------------------------------------


@dataclass
class LoadResult:
    removed: list[str] = field(default_factory=list)  # files whose rows left the table
    loaded: dict[str, str] = field(default_factory=dict)  # file -> version now in the table
    rows_deleted: int = 0
    rows_inserted: int = 0
    rejected: dict[str, str] = field(default_factory=dict)  # file -> why its new version is not loaded


@dataclass(frozen=True)
class FeedLoadSql:
    """The statements that load one feed, with identifiers from the feed declaration (checked against
    tasks/schema.py) quoted."""

    resolve: str
    conflicts: str
    delete: str
    insert: str


def feed_load_sql(feed: Feed) -> FeedLoadSql:
    target = FEED_TABLES[feed.target_table]
    columns, joins, unresolved = [], [], []
    for column in target.columns:
        lookup = feed.lookups.get(column)
        if lookup is None:
            columns.append(f"incoming.{quote_ident(column)}")
            continue
        alias = f"lookup_{len(joins)}"
        source = f"incoming.{quote_ident(lookup.column)}"
        columns.append(f"{alias}.{quote_ident(column)} as {quote_ident(column)}")
        joins.append(
            f"left join public.{quote_ident(lookup.table)} as {alias} "
            f"on {alias}.{quote_ident(lookup.match)} = {source}"
        )
        # Only names from the declaration and the row's own value (as a literal) enter the message.
        unresolved.append(
            f"case when {alias}.{quote_ident(column)} is null then "
            f"'{lookup.column} ' || coalesce(quote_literal({source}), 'NULL') || ' is not in {lookup.table}' end"
        )
    resolve = read_sql("create_feed_resolved").format(
        target_columns=", ".join(columns),
        lookup_joins="\n".join(joins),
        unresolved=f"nullif(concat_ws('; ', {', '.join(unresolved)}), '')" if unresolved else "null::text",
    )
    key_match = " and ".join(f"kept.{quote_ident(k)} = accepted.{quote_ident(k)}" for k in feed.natural_key)
    fields = {
        "table": quote_ident(feed.target_table),
        "key": ", ".join(quote_ident(k) for k in feed.natural_key),
        "key_match": key_match,
        "columns": ", ".join(quote_ident(c) for c in target.columns),
    }
    return FeedLoadSql(
        resolve=resolve,
        conflicts=read_sql("select_feed_key_conflicts").format(**fields),
        delete=read_sql("delete_feed_rows").format(**fields),
        insert=read_sql("insert_feed_rows").format(**fields),
    )


def load_feed_files(
    connection: adbc_postgres.Connection,
    feed: Feed,
    staged: dict[str, str],
    read_staged: Callable[[str], pa.Table],
) -> LoadResult:
    """Converge the feed's table to the staged files in one transaction.

    ``staged`` maps each staged file's SFTP path to its version; ``read_staged(path)`` returns its
    parsed rows. New versions whose rows cannot go in (a lookup finds no dimension row, or a natural
    key another file already holds) are rejected whole: the file's previously loaded version, if
    any, stays.
    """
    sql = feed_load_sql(feed)
    result = LoadResult()
    try:
        with connection.cursor() as cursor:
            cursor.execute(read_sql("take_feed_lock"), parameters=(feed.name,))
            cursor.execute(read_sql("select_loaded_feed_files"), parameters=(feed.name,))
            loaded = dict(cursor.fetchall())
            plan = plan_load(staged, loaded)
            if plan.empty:
                connection.rollback()
                return result
            cursor.execute("drop table if exists pg_temp._totes_feed_incoming")
            schema = feed.file_schema
            tables = [read_staged(path) for path in plan.load]
            incoming = pa.concat_tables(tables) if tables else schema.empty_table()
            cursor.adbc_ingest("_totes_feed_incoming", incoming, mode="create", temporary=True)
            cursor.execute(sql.resolve)
            cursor.execute(read_sql("create_feed_gone"))
            for path in plan.remove:
                cursor.execute(read_sql("insert_feed_gone"), parameters=(path,))
            result.rejected = _reject_unloadable(cursor, sql)
            (result.rows_deleted,) = _fetch_one(cursor, sql.delete)
            (result.rows_inserted,) = _fetch_one(cursor, sql.insert)
            for statement in split_sql(read_sql("record_loaded_feed_files")):
                cursor.execute(statement, parameters=(feed.name,))
        connection.commit()
    except BaseException:
        roll_back(connection)
        raise
    result.removed = plan.remove
    result.loaded = {path: version for path, version in plan.load.items() if path not in result.rejected}
    return result


def _fetch_one(cursor: adbc_postgres.Cursor, statement: str) -> tuple:
    cursor.execute(statement)
    return cursor.fetchone()


def _reject_unloadable(cursor: adbc_postgres.Cursor, sql: FeedLoadSql) -> dict[str, str]:
    """Mark incoming files whose rows cannot go in; return file -> reason (naming the line)."""
    rejected: dict[str, str] = {}
    cursor.execute(read_sql("select_unresolved_feed_rows"))
    for path, line, problem in cursor.fetchall():
        rejected[path] = f"{path} line {line}: {problem}"
    for path in rejected:
        cursor.execute(read_sql("reject_feed_file"), parameters=(path,))
    # Rejecting a file that replaces an older version keeps the older rows, which can in turn
    # conflict with another incoming file: repeat until nothing changes.
    while True:
        cursor.execute(sql.conflicts)
        conflicts = cursor.fetchall()
        if not conflicts:
            return rejected
        for path, line, holder in conflicts:
            rejected[path] = f"{path} line {line}: its natural key is already held by {holder}"
            cursor.execute(read_sql("reject_feed_file"), parameters=(path,))


@task(name="load-feed", task_run_name="load-{feed_name}", cache_policy=NO_CACHE, **RETRY_POLICY)
def load_feed(feed_name: str) -> tuple[LoadResult, list[str]]:
    """Converge the feed's warehouse table to the staging zone; return what changed and the messages
    of versions refused at load time for the first time."""
    logger = get_run_logger()
    settings = load_settings()
    feed = _feed(settings, feed_name)
    store = FeedStore(settings.feed_files_url)
    entries = store.staged(feed.name)
    by_path = {feed_source_path(feed, name): (name, items[-1]) for name, items in entries.items()}
    staged = {path: version for path, (_, (version, _)) in by_path.items()}
    warehouse_url = settings.require_warehouse_url()
    with connect(warehouse_url, purpose="warehouse database") as connection:
        migrate(connection)
        result = load_feed_files(
            connection, feed, staged, lambda path: store.read_staged(by_path[path][1][1], feed.file_schema)
        )
    new_rejections = []
    for path, reason in result.rejected.items():
        name, (version, _) = by_path[path]
        if store.quarantine(feed.name, name, version, {"problem": reason, "stage": LOAD}):
            new_rejections.append(reason)
        logger.error("Feed %s: version %s of %s not loaded: %s", feed.name, version, name, reason)
    for path, version in result.loaded.items():
        store.release(feed.name, by_path[path][0], version)
    logger.info(
        "Feed %s: %d file(s) loaded (%d rows in), %d removed (%d rows out)%s",
        feed.name, len(result.loaded), result.rows_inserted, len(result.removed), result.rows_deleted,
        "" if result.loaded or result.removed else ": the warehouse already equals the staged files",
    )
    return result, new_rejections
