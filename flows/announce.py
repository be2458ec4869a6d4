"""What each stage changed, as Prefect asset materializations (tasks/core/assets.py): the flows call
these once a stage has committed its part (a manifest written, a transaction committed).

Lineage: source table -> ``raw/<table>`` -> ``star/<star table>`` (from the source tables it is
built from) -> the warehouse table; an SFTP feed directory -> the feed's raw files -> its warehouse
table. Only the tables a stage changed are materialized.
"""

from __future__ import annotations

from tasks.core.asset_keys import STAR_SOURCES, AssetKeys
from tasks.core.assets import Materialization, publish_materializations
from tasks.core.manifests import RawTableEntry
from tasks.core.reports import RunSummary
from tasks.feeds.declarations import Feed
from tasks.feeds.report import FeedReport


def announce_ingested(keys: AssetKeys, batch_id: str, tables: dict[str, RawTableEntry]) -> None:
    """The raw tables the batch added versions or delete marks to."""
    publish_materializations(
        "ingest",
        [
            Materialization(
                key=keys.raw(table),
                name=f"raw.{table}",
                description=f"Every version of ToteSys's {table} the lake holds, batch by batch (Parquet).",
                upstream=(keys.source_table(table),),
                metadata={"batch_id": batch_id, "rows": entry.data.rows, "deleted": _deleted(entry)},
            )
            for table, entry in tables.items()
            if entry.data.rows or _deleted(entry)
        ],
    )


def _about(warnings: list[str], tables: tuple[str, ...]) -> list[str]:
    """The data-quality warnings about these tables (each starts "<table>: ...")."""
    return [warning for warning in warnings if warning.split(":", 1)[0] in tables]


def _deleted(entry: RawTableEntry) -> int:
    return entry.deleted.rows if entry.deleted else 0


def announce_transformed(keys: AssetKeys, batch_id: str, transformed: RunSummary) -> None:
    """The star tables the batch built rows of."""
    publish_materializations(
        "transform",
        [
            Materialization(
                key=keys.star(table),
                name=f"star.{table}",
                description=f"The rows of {table} each batch built (Parquet), for the warehouse's load.",
                upstream=tuple(keys.raw(source) for source in STAR_SOURCES[table]),
                metadata={
                    "batch_id": batch_id,
                    "rows": rows,
                    "warnings": _about(transformed.warnings, STAR_SOURCES[table]),
                },
            )
            for table, rows in transformed.transformed.items()
            if rows
        ],
    )


def announce_loaded(keys: AssetKeys, batch_id: str, loaded: RunSummary) -> None:
    """The warehouse tables the batch's load transaction changed (rows merged or marked deleted)."""
    tables = [table for table in STAR_SOURCES if loaded.loaded.get(table) or loaded.deleted.get(table)]
    publish_materializations(
        "load",
        [
            Materialization(
                key=keys.warehouse_table(table),
                name=f"warehouse.{table}",
                description=f"The warehouse's {table} (star schema).",
                upstream=(keys.star(table),),
                metadata={
                    "batch_id": batch_id,
                    "rows_changed": loaded.loaded.get(table, 0),
                    "rows_marked_deleted": loaded.deleted.get(table, 0),
                    "warnings": _about(loaded.warnings, (table,)),
                },
            )
            for table in tables
        ],
    )


def announce_feed(keys: AssetKeys, feed: Feed, report: FeedReport) -> None:
    """A feed's raw files (new versions fetched) and its warehouse table (files loaded or removed)."""
    materializations = []
    if report.new_versions:
        materializations.append(
            Materialization(
                key=keys.feed_files(feed.name),
                name=f"files.{feed.name}",
                description=f"Every version of the files of feed {feed.name} (versioned raw zone).",
                upstream=(keys.feed_directory(feed.directory),),
                metadata={"new_versions": len(report.new_versions)},
            )
        )
    if report.files_loaded or report.files_removed:
        materializations.append(
            Materialization(
                key=keys.warehouse_table(feed.target_table),
                name=f"warehouse.{feed.target_table}",
                description=f"The warehouse's {feed.target_table}: exactly the rows of feed {feed.name}'s files.",
                upstream=(keys.feed_files(feed.name),),
                metadata={
                    "files_loaded": len(report.files_loaded),
                    "files_removed": len(report.files_removed),
                    "rows_inserted": report.rows_inserted,
                    "rows_deleted": report.rows_deleted,
                },
            )
        )
    publish_materializations("files", materializations)
