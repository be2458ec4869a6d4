"""Load, the feeds' last stage (a Prefect task): the staging zone -> the feed's warehouse table.

The table is made to hold exactly the rows of the staged files, in one transaction: rows of removed
or superseded files are deleted, rows of new versions inserted, and ``_totes_feed_file`` records the
loaded set. If it equals the staged set, load changes nothing. A new version whose rows cannot go in
(a lookup finds no dimension row, or another file holds its natural key) is refused whole and
quarantined; the file's previously loaded version stays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.core.assets import announce_file_quarantined
from tasks.core.manifests import REFUSED_AT_LOAD, QuarantineRecord
from tasks.core.postgres import Connection, Cursor, connect, copy_rows, execute_for_one, roll_back
from tasks.core.retries import RETRY_POLICY
from tasks.core.sql import SqlFolder
from tasks.core.warehouse import migrate_warehouse_schema
from tasks.feeds.declarations import Feed, declared_feed
from tasks.feeds.plans import plan_load
from tasks.feeds.store import FeedStore
from tasks.schema import FEED_TABLES, quote_ident
from tasks.settings import load_settings

FEEDS_SQL = SqlFolder("tasks.feeds")


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
    columns: list[str] = []
    joins: list[str] = []
    unresolved: list[str] = []
    for column in target.columns:
        lookup = feed.lookups.get(column)
        if lookup is None:
            columns.append(f"incoming.{quote_ident(column)}")
            continue
        alias = f"lookup_{len(joins)}"
        source = f"incoming.{quote_ident(lookup.column)}"
        columns.append(f"{alias}.{quote_ident(column)} as {quote_ident(column)}")
        joins.append(
            f"left join public.{quote_ident(lookup.table)} as {alias} on {alias}.{quote_ident(lookup.match)} = {source}"
        )
        # Only names from the declaration and the row's own value (as a literal) enter the message.
        unresolved.append(
            f"case when {alias}.{quote_ident(column)} is null then "
            f"'{lookup.column} ' || coalesce(quote_literal({source}), 'NULL') || ' is not in {lookup.table}' end"
        )
    resolve = FEEDS_SQL.read("create_feed_resolved").format(
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
        conflicts=FEEDS_SQL.read("select_feed_key_conflicts").format(**fields),
        delete=FEEDS_SQL.read("delete_feed_rows").format(**fields),
        insert=FEEDS_SQL.read("insert_feed_rows").format(**fields),
    )


def load_feed_files(
    connection: Connection,
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
            cursor.execute(FEEDS_SQL.read("take_feed_lock"), parameters=(feed.name,))
            cursor.execute(FEEDS_SQL.read("select_loaded_feed_files"), parameters=(feed.name,))
            loaded = dict(cursor.fetchall())
            plan = plan_load(staged, loaded)
            if plan.empty:
                roll_back(connection)
                return result
            cursor.execute("drop table if exists pg_temp._totes_feed_incoming")
            schema = feed.file_schema
            tables = [read_staged(path) for path in plan.load]
            incoming = pa.concat_tables(tables) if tables else schema.empty_table()
            copy_rows(cursor, "_totes_feed_incoming", incoming, mode="create", temporary=True)
            cursor.execute(sql.resolve)
            cursor.execute(FEEDS_SQL.read("create_feed_gone"))
            for path in plan.remove:
                cursor.execute(FEEDS_SQL.read("insert_feed_gone"), parameters=(path,))
            result.rejected = _reject_unloadable(cursor, sql)
            (result.rows_deleted,) = execute_for_one(cursor, sql.delete)
            (result.rows_inserted,) = execute_for_one(cursor, sql.insert)
            for statement in FEEDS_SQL.statements("record_loaded_feed_files"):
                cursor.execute(statement, parameters=(feed.name,))
        connection.commit()
    except BaseException:
        roll_back(connection)
        raise
    result.removed = plan.remove
    result.loaded = {path: version for path, version in plan.load.items() if path not in result.rejected}
    return result


def _reject_unloadable(cursor: Cursor, sql: FeedLoadSql) -> dict[str, str]:
    """Mark incoming files whose rows cannot go in; return file -> reason (naming the line)."""
    rejected: dict[str, str] = {}
    cursor.execute(FEEDS_SQL.read("select_unresolved_feed_rows"))
    for path, line, problem in cursor.fetchall():
        rejected[path] = f"{path} line {line}: {problem}"
    for path in rejected:
        cursor.execute(FEEDS_SQL.read("reject_feed_file"), parameters=(path,))
    # Rejecting a file that replaces an older version keeps the older rows, which can in turn
    # conflict with another incoming file: repeat until nothing changes.
    while True:
        cursor.execute(sql.conflicts)
        conflicts = cursor.fetchall()
        if not conflicts:
            return rejected
        for path, line, holder in conflicts:
            rejected[path] = f"{path} line {line}: its natural key is already held by {holder}"
            cursor.execute(FEEDS_SQL.read("reject_feed_file"), parameters=(path,))


@task(name="load-feed", task_run_name="load-{feed_name}", cache_policy=NO_CACHE, **RETRY_POLICY)
def load_feed(feed_name: str) -> tuple[LoadResult, list[str]]:
    """Converge the feed's warehouse table to the staging zone; return what changed and the messages
    of versions refused at load time for the first time."""
    logger = get_run_logger()
    settings = load_settings()
    feed = declared_feed(feed_name, settings.feeds_file)
    store = FeedStore(settings.feed_files_url)
    entries = store.staged(feed.name)
    by_path = {feed.source_path(name): (name, items[-1]) for name, items in entries.items()}
    staged = {path: version for path, (_, (version, _)) in by_path.items()}
    warehouse_url = settings.require_warehouse_url()
    with connect(warehouse_url, purpose="warehouse database") as connection:
        migrate_warehouse_schema(connection)
        result = load_feed_files(
            connection, feed, staged, lambda path: store.read_staged(by_path[path][1][1], feed.file_schema)
        )
    new_rejections = []
    for path, reason in result.rejected.items():
        name, (version, _) = by_path[path]
        record = QuarantineRecord(feed=feed.name, file=name, version=version, problem=reason, stage=REFUSED_AT_LOAD)
        if kept := store.quarantine(record):
            announce_file_quarantined(kept)
            new_rejections.append(reason)
        logger.error("Feed %s: version %s of %s not loaded: %s", feed.name, version, name, reason)
    for path, version in result.loaded.items():
        store.release(feed.name, by_path[path][0], version)
    logger.info(
        "Feed %s: %d file(s) loaded (%d rows in), %d removed (%d rows out)%s",
        feed.name,
        len(result.loaded),
        result.rows_inserted,
        len(result.removed),
        result.rows_deleted,
        "" if result.loaded or result.removed else ": the warehouse already equals the staged files",
    )
    return result, new_rejections
