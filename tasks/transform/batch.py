"""One raw batch -> its star rows, the join state carried to the next batch, and its warnings. Pure.

Star batches are built strictly in batch order: each one starts from the previous one's *carried
state* (the latest address, counterparty, department and staff rows, and the dates dim_date covers),
so rebuilding the warehouse from the lake alone gives the same rows.

:func:`build_batch` is a generator: it yields star rows and set-aside rows as it builds them, one raw
file of a big table at a time (memory bounded by a file, not the batch), and returns the rest of the
batch's outcome. The caller writes what is yielded; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date

import polars as pl

from tasks.schema import DELETES_MARK, FACT_TABLES, SOURCE_TABLES, STAR_TABLES
from tasks.transform.builders import (
    ROW_WISE_BUILDERS,
    build_dim_date_extension,
    build_joined_dimensions,
    build_row_wise,
    describe_rejections,
    empty_source_frame,
    referenced_date_range,
    split_invalid_rows,
    split_orphans,
    widen_date_range,
)

# Source tables other dimensions join to; their latest rows travel from batch to batch.
JOIN_STATE_TABLES = ("address", "counterparty", "department", "staff")
# Those among them that are rebuilt when their parent changes (their hard-deleted rows leave the state).
CHILD_STATE_TABLES = ("counterparty", "staff")
# (child, parent, the child's foreign key, the parent's key): a child row naming no parent row is
# left out of its dimension until the parent arrives.
JOIN_STATE_PARENTS = (
    ("staff", "department", "department_id", "department_id"),
    ("counterparty", "address", "legal_address_id", "address_id"),
)


@dataclass(frozen=True)
class BatchFrames:
    """One raw batch as frames, all with the raw-zone schemas.

    Attributes:
        tables: per source table, its new versions as chunks (one per raw file; may be a lazy
            iterable that reads a file per step). A table that is missing brought no versions.
        unreadable: per source table, the rows ingest could not read exactly (with ``_reason``).
        deleted: per source table, the keys found hard-deleted in the source (with ``_deleted_at``).
    """

    tables: Mapping[str, Iterable[pl.DataFrame]] = field(default_factory=dict)
    unreadable: Mapping[str, pl.DataFrame] = field(default_factory=dict)
    deleted: Mapping[str, pl.DataFrame] = field(default_factory=dict)


@dataclass(frozen=True)
class CarriedState:
    """What the previous star batch left for this one: the latest row of each key of the join-state
    tables, and the dates dim_date covers."""

    join_state: Mapping[str, pl.DataFrame] = field(default_factory=dict)
    date_range: tuple[date, date] | None = None

    def rows(self, table: str) -> pl.DataFrame:
        return self.join_state.get(table, empty_source_frame(table))


@dataclass(frozen=True)
class StarRows:
    """Rows of one star table, with its columns in order."""

    table: str
    frame: pl.DataFrame


@dataclass(frozen=True)
class SetAside:
    """Source rows that cannot become warehouse rows (quarantined), with ``_reason``."""

    source: str
    frame: pl.DataFrame


@dataclass(frozen=True)
class BuiltBatch:
    """The outcome of a batch besides its rows.

    Attributes:
        join_state: the new carried state, per join-state table; None where it is unchanged (the
            previous batch's files still hold it).
        date_range: the dates dim_date covers after this batch.
        deleted: per star table, the keys to mark ``_deleted_at`` (star key and ``_deleted_at``).
        warnings: the batch's data-quality warnings, in the order they arose.
    """

    join_state: dict[str, pl.DataFrame | None]
    date_range: tuple[date, date] | None
    deleted: dict[str, pl.DataFrame]
    warnings: list[str]


BatchPart = StarRows | SetAside


def build_batch(frames: BatchFrames, carried: CarriedState) -> Generator[BatchPart, None, BuiltBatch]:
    """Build every star table of one batch from its raw frames and the carried state.

    Yields the rows set aside (unreadable, invalid, orphaned) and the star rows: facts and
    dim_transaction one raw chunk at a time, then the other dimensions and dim_date. Returns the
    new carried state, the delete marks and the warnings.

    Rows are quarantined when they cannot become warehouse rows (see
    :func:`~tasks.transform.builders.split_invalid_rows`); a child row naming no parent stays in
    the carried state (its parent may arrive later, which rebuilds it) but is left out of this
    batch's dimension, with a warning. A key deleted in the source leaves the carried state of
    child tables, so a parent's change cannot bring it back; parents stay for lookups.
    """
    warnings: list[str] = []

    def set_aside(source: str, rejected: pl.DataFrame) -> Iterable[BatchPart]:
        if rejected.height:
            warnings.append(describe_rejections(source, rejected))
            yield SetAside(source, rejected)

    for source, unreadable in frames.unreadable.items():
        yield from set_aside(source, unreadable)
    deleted_keys = {source: marks[SOURCE_TABLES[source].key[0]] for source, marks in frames.deleted.items()}

    referenced: tuple[date, date] | None = None
    for source in ROW_WISE_BUILDERS:
        for chunk in frames.tables.get(source, ()):
            valid, rejected = split_invalid_rows(chunk, source)
            yield from set_aside(source, rejected)
            star_table, rows = build_row_wise(source, valid)
            if rows.height:
                yield StarRows(star_table, rows)
            if star_table in FACT_TABLES:
                referenced = widen_date_range(referenced, referenced_date_range({star_table: rows}))

    small: dict[str, pl.DataFrame] = {}
    for source in SOURCE_TABLES:
        if source not in ROW_WISE_BUILDERS:
            chunks = list(frames.tables.get(source, ()))
            whole = pl.concat(chunks) if chunks else empty_source_frame(source)
            small[source], rejected = split_invalid_rows(whole, source)
            yield from set_aside(source, rejected)

    history = _join_history(carried, small, deleted_keys)
    buildable = dict(history)
    for child, parent, foreign_key, parent_key in JOIN_STATE_PARENTS:
        buildable[child], orphans = split_orphans(
            history[child], history[parent], foreign_key=foreign_key, parent_key=parent_key, table=parent
        )
        child_key = SOURCE_TABLES[child].key[0]
        touched = orphans.join(small[child].select(child_key), on=child_key)
        if touched.height:
            outcome = "left out of the warehouse until their parent row arrives"
            warnings.append(describe_rejections(child, touched, outcome=outcome))
    dims, dim_warnings = build_joined_dimensions(small, buildable)
    warnings += dim_warnings
    dims["dim_date"], date_range = build_dim_date_extension(carried.date_range, referenced)
    for name, frame in dims.items():
        if frame.height:
            yield StarRows(name, frame)

    return BuiltBatch(
        join_state={
            name: None if small[name].height == 0 and name not in deleted_keys else history[name]
            for name in JOIN_STATE_TABLES
        },
        date_range=date_range,
        deleted=_star_deletions(frames.deleted),
        warnings=warnings,
    )


def _join_history(
    carried: CarriedState, small: dict[str, pl.DataFrame], deleted_keys: dict[str, pl.Series]
) -> dict[str, pl.DataFrame]:
    """The latest row of each key of the join-state tables after this batch: the one read last (this
    batch's before the carried state, then by ``last_updated``). A writer whose transaction began
    earlier and committed later stamps a newer value with an older time (``now()`` is its start):
    the larger stamp is not the newer row."""
    history = {}
    for name in JOIN_STATE_TABLES:
        key = SOURCE_TABLES[name].key[0]
        observed = pl.concat(
            [carried.rows(name).with_columns(_observed=pl.lit(0)), small[name].with_columns(_observed=pl.lit(1))]
        )
        history[name] = (
            observed.sort([key, "_observed", "last_updated"])
            .unique(subset=[key], keep="last", maintain_order=True)
            .drop("_observed")
        )
        if name in CHILD_STATE_TABLES and name in deleted_keys:
            history[name] = history[name].filter(~pl.col(key).is_in(deleted_keys[name].implode()))
    return history


def _star_deletions(deleted: Mapping[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """The source's delete marks as the star tables' (department has no star table of its own)."""
    marks = {}
    for source, frame in deleted.items():
        if star_table := DELETES_MARK.get(source):
            star_key = STAR_TABLES[star_table].key[0]
            marks[star_table] = frame.rename({SOURCE_TABLES[source].key[0]: star_key})
    return marks


def drain(builder: Generator[BatchPart, None, BuiltBatch], take: Callable[[BatchPart], None]) -> BuiltBatch:
    """Hand every part :func:`build_batch` yields to ``take`` (e.g. a writer), then return its outcome."""
    while True:
        try:
            take(next(builder))
        except StopIteration as finished:
            built: BuiltBatch = finished.value
            return built


def collect_batch(
    frames: BatchFrames, carried: CarriedState
) -> tuple[dict[str, pl.DataFrame], dict[str, pl.DataFrame], BuiltBatch]:
    """:func:`build_batch` gathered in memory: star rows per star table (every table, perhaps empty),
    set-aside rows per source table, and the outcome. For tests and small batches."""
    star: dict[str, list[pl.DataFrame]] = {name: [] for name in STAR_TABLES}
    set_aside: dict[str, list[pl.DataFrame]] = {}

    def take(part: BatchPart) -> None:
        if isinstance(part, StarRows):
            star[part.table].append(part.frame)
        else:
            set_aside.setdefault(part.source, []).append(part.frame)

    built = drain(build_batch(frames, carried), take)
    tables = {name: pl.concat(parts) if parts else empty_star_frame(name) for name, parts in star.items()}
    return tables, {name: pl.concat(parts) for name, parts in set_aside.items()}, built


def empty_star_frame(table: str) -> pl.DataFrame:
    return pl.DataFrame(STAR_TABLES[table].schema.empty_table())
