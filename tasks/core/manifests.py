"""The lake's manifests: what one stage records and the next reads, typed once, here.

A manifest is written last, after the data files it names, and never overwritten: its presence is
what makes a batch exist. Each one carries ``format`` (:data:`MANIFEST_FORMAT`). Format 1 is what
totes wrote before manifests were typed (no ``format`` key, optional keys sometimes absent); every
reader here still takes it, so an existing lake needs no migration.

- :class:`LakeIdentity` (``_totes_lake.json``): which lake this is, for the warehouse loaded from it.
- :class:`RawManifest` (``raw/_batches/<batch>.json``): ingest -> transform, and ingest -> the next
  ingest (watermarks, the known key set of the delete check).
- :class:`StarManifest` (``star/_batches/<batch>.json``): transform -> load, and transform -> the next
  transform (join state, dim_date range).
- :class:`FetchState` and :class:`QuarantineRecord` (feed store): fetch -> the next fetch, and
  stage/load -> the next stage.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from typing import Any

MANIFEST_FORMAT = 2
_FIRST_FORMAT = 1

Json = dict[str, Any]


class ManifestFormatError(ValueError):
    """A manifest written by a newer totes than this one, in a format it cannot read."""


def _check_format(data: Json, what: str) -> int:
    found = data.get("format", _FIRST_FORMAT)
    if not isinstance(found, int) or found > MANIFEST_FORMAT:
        msg = f"{what} has format {found!r}; this totes reads formats up to {MANIFEST_FORMAT}: upgrade totes"
        raise ManifestFormatError(msg)
    return found


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class FileSet:
    """Some Parquet files of the lake and the rows they hold."""

    files: list[str] = field(default_factory=list)
    rows: int = 0

    def to_json(self) -> Json:
        return {"files": list(self.files), "rows": self.rows}

    @classmethod
    def from_json(cls, data: Json | None) -> FileSet | None:
        if not data:
            return None
        return cls(files=list(data.get("files", [])), rows=int(data.get("rows", 0)))

    def __add__(self, other: FileSet) -> FileSet:
        return FileSet(files=[*self.files, *other.files], rows=self.rows + other.rows)


def _file_sets(data: Json | None) -> dict[str, FileSet]:
    return {name: found for name, entry in (data or {}).items() if (found := FileSet.from_json(entry)) is not None}


# --- the lake itself ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LakeIdentity:
    """Who a lake is (``_totes_lake.json`` at its root, created with its first batch and never
    changed): the warehouse records the identity of the lake it is loaded from, and refuses another."""

    lake_id: str
    created_at: datetime = field(default_factory=_now)

    def to_json(self) -> Json:
        return {"format": MANIFEST_FORMAT, "lake_id": self.lake_id, "created_at": self.created_at.isoformat()}

    @classmethod
    def from_json(cls, data: Json) -> LakeIdentity:
        _check_format(data, "lake identity")
        return cls(lake_id=str(data["lake_id"]), created_at=datetime.fromisoformat(data["created_at"]))


# --- raw zone: ingest ---------------------------------------------------------------------------------

BEGINNING_OF_TIME = datetime(1900, 1, 1)


@dataclass(frozen=True)
class Horizon:
    """What the source said about in-flight work, read before any data."""

    clock_at: datetime
    oldest_open_transaction_at: datetime | None
    has_hidden_sessions: bool = False
    # A prepared (two-phase) transaction began at some unknown time before it was prepared.
    oldest_prepared_transaction_at: datetime | None = None
    # Per source table, the signature of the writes the server had counted (tasks/ingest/source.py
    # read_source_activity): a table whose signature has not moved since its last read is not read.
    activity: dict[str, str] = field(default_factory=dict)
    # Per source table, the server's estimate of its rows: fan-out weighs a table's read with it.
    table_rows: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> Json:
        oldest = self.oldest_open_transaction_at
        prepared = self.oldest_prepared_transaction_at
        return (
            {
                "clock_at": self.clock_at.isoformat(),
                "oldest_open_transaction_at": oldest.isoformat() if oldest else None,
                "has_hidden_sessions": self.has_hidden_sessions,
            }
            | ({"oldest_prepared_transaction_at": prepared.isoformat()} if prepared else {})
            | ({"activity": dict(sorted(self.activity.items()))} if self.activity else {})
            | ({"table_rows": dict(sorted(self.table_rows.items()))} if self.table_rows else {})
        )

    @classmethod
    def from_json(cls, data: Json | None) -> Horizon | None:
        if not data:
            return None
        oldest = data.get("oldest_open_transaction_at")
        prepared = data.get("oldest_prepared_transaction_at")
        return cls(
            clock_at=datetime.fromisoformat(data["clock_at"]),
            oldest_open_transaction_at=datetime.fromisoformat(oldest) if oldest else None,
            has_hidden_sessions=bool(data.get("has_hidden_sessions", False)),
            oldest_prepared_transaction_at=datetime.fromisoformat(prepared) if prepared else None,
            activity={str(k): str(v) for k, v in (data.get("activity") or {}).items()},
            table_rows={str(k): int(v) for k, v in (data.get("table_rows") or {}).items()},
        )


@dataclass(frozen=True)
class RawTableEntry:
    """One source table's part of an ingest batch.

    Attributes:
        data: the new versions read (``raw/<table>/batch=<id>/``).
        watermark: where the next delta read of this table starts (closed below: ``>=``).
        overlap_keys: the versions (key, last_updated, content digest) already read at or after
            ``watermark``: the next read sees them again and drops them, unless their content differs
            (a second write under the same stamp). The digest is "" in lakes written before it was
            kept: such a version is dropped on its key and stamp alone.
        keys: the files of every key totes knows and has not found deleted (None: not kept, e.g.
            delete detection off, or a lake older than it).
        key_summary: the per-range summary of those keys (see ``tasks/ingest/deletes.py``).
        key_width: the key range width of that summary.
        deleted: keys found hard-deleted in the source, with ``_deleted_at``.
        rejected: rows that could not be read exactly (``raw/_unreadable_<table>``), with ``_reason``.
        unstamped_keys: the keys of the source's rows with no ``last_updated`` when the batch was
            read (set aside once, with the rejected rows; a delta never reads them).
        content: the files of the content index, in order: per key the source's hash and foreign
            keys of the row last observed, a later file overriding an earlier one (see
            ``tasks/ingest/content.py``). None in lakes older than it.
        content_scheme: how the index's hashes were computed: ``source`` (the source server's
            hash of the row as it is) or ``keyed:<the table's PII policy>[;key=<fingerprint>]``,
            e.g. ``keyed:hash=email_address;key=9c1f0e2d4b6a8375`` (a keyed hash of the row as the
            lake holds it, PII masked: for tables with PII columns, so that no guess of a value can
            be tested; see ``tasks/ingest/pii.py``). When the policy asks for another scheme, the
            next run rewrites the index and deletes its old files; for such a table only the newest
            manifest's index files are kept.
        conflicting_keys: keys under which the source holds several different rows (a source
            without a primary key): set aside once, read again by key every run until the source
            holds one row under the key, which then arrives.
        activity: the signature of the writes to the table the server had counted when it was last
            read (``Horizon.activity``); None: never read so, or counters not to be trusted.
        keys_checked_at: when the source's whole key set was last compared with the known keys
            (the delete check's range scan); None: never, or by an earlier totes.
        read_at: when the table was last read (the source's clock at that run's horizon): an
            unchanged table is read again after ``TOTES_UNCHANGED_TABLE_RECHECK_SECONDS`` anyway.
    """

    data: FileSet = field(default_factory=FileSet)
    watermark: datetime = BEGINNING_OF_TIME
    overlap_keys: frozenset[tuple[int | None, datetime, str]] = frozenset()
    keys: list[str] | None = None
    key_summary: list[str] | None = None
    key_width: int | None = None
    deleted: FileSet | None = None
    rejected: FileSet | None = None
    unstamped_keys: frozenset[int] = frozenset()
    content: list[str] | None = None
    content_scheme: str = "source"
    conflicting_keys: frozenset[int] = frozenset()
    activity: str | None = None
    read_at: datetime | None = None
    keys_checked_at: datetime | None = None

    def has_changes(self, previous: RawTableEntry | None) -> bool:
        """True if the table brings anything to the batch after ``previous``: versions, unreadable
        rows, deletes, another set of unstamped or conflicting rows, or a rewritten content index."""
        before = previous or RawTableEntry()
        return bool(
            self.data.rows
            or self.rejected
            or self.deleted
            or self.unstamped_keys != before.unstamped_keys
            or self.conflicting_keys != before.conflicting_keys
            or self.content_scheme != before.content_scheme
        )

    def to_json(self) -> Json:
        body: Json = {
            **self.data.to_json(),
            "watermark": self.watermark.isoformat(),
            # A row with a NULL key (set aside) is recorded with key null, so that it is named once.
            "overlap_keys": sorted(
                ([key, ts.isoformat(), digest] for key, ts, digest in self.overlap_keys),
                key=lambda version: (version[0] is not None, version[0] or 0, version[1], version[2]),
            ),
        }
        if self.key_width is not None:
            body |= {"keys": self.keys, "key_summary": self.key_summary, "key_width": self.key_width}
        if self.deleted:
            body["deleted"] = self.deleted.to_json()
        if self.rejected:
            body["rejected"] = self.rejected.to_json()
        if self.unstamped_keys:
            body["unstamped_keys"] = sorted(self.unstamped_keys)
        if self.content is not None:
            body["content"] = self.content
        if self.content_scheme != "source":
            body["content_scheme"] = self.content_scheme
        if self.conflicting_keys:
            body["conflicting_keys"] = sorted(self.conflicting_keys)
        if self.activity is not None:
            body["activity"] = self.activity
        if self.read_at is not None:
            body["read_at"] = self.read_at.isoformat()
        if self.keys_checked_at is not None:
            body["keys_checked_at"] = self.keys_checked_at.isoformat()
        return body

    @classmethod
    def from_json(cls, data: Json) -> RawTableEntry:
        return cls(
            data=FileSet.from_json(data) or FileSet(),
            watermark=datetime.fromisoformat(data["watermark"]) if data.get("watermark") else BEGINNING_OF_TIME,
            overlap_keys=frozenset(
                (
                    None if entry[0] is None else int(entry[0]),
                    datetime.fromisoformat(entry[1]),
                    entry[2] if len(entry) > 2 else "",
                )
                for entry in data.get("overlap_keys", [])
            ),
            keys=data.get("keys"),
            key_summary=data.get("key_summary"),
            key_width=data.get("key_width"),
            deleted=FileSet.from_json(data.get("deleted")),
            rejected=FileSet.from_json(data.get("rejected")),
            unstamped_keys=frozenset(int(k) for k in data.get("unstamped_keys", [])),
            content=data.get("content"),
            content_scheme=str(data.get("content_scheme", "source")),
            conflicting_keys=frozenset(int(k) for k in data.get("conflicting_keys", [])),
            activity=data.get("activity"),
            read_at=datetime.fromisoformat(data["read_at"]) if data.get("read_at") else None,
            keys_checked_at=(datetime.fromisoformat(data["keys_checked_at"]) if data.get("keys_checked_at") else None),
        )


@dataclass(frozen=True)
class RawManifest:
    """One ingest batch: per source table, what was read and where the next read starts."""

    batch_id: str
    tables: dict[str, RawTableEntry]
    horizon: Horizon | None = None
    written_at: datetime = field(default_factory=_now)

    def files(self, table: str) -> list[str]:
        """The raw files of one source table in this batch ([] if it brought no new versions)."""
        entry = self.tables.get(table)
        return entry.data.files if entry else []

    def to_json(self) -> Json:
        return {
            "format": MANIFEST_FORMAT,
            "batch_id": self.batch_id,
            "written_at": self.written_at.isoformat(),
            "horizon": self.horizon.to_json() if self.horizon else None,
            "tables": {name: entry.to_json() for name, entry in self.tables.items()},
        }

    @classmethod
    def from_json(cls, data: Json) -> RawManifest:
        _check_format(data, f"raw manifest {data.get('batch_id')}")
        return cls(
            batch_id=data["batch_id"],
            tables={name: RawTableEntry.from_json(entry) for name, entry in data.get("tables", {}).items()},
            horizon=Horizon.from_json(data.get("horizon")),
            written_at=datetime.fromisoformat(data["written_at"]) if data.get("written_at") else _now(),
        )


# --- star zone: transform -----------------------------------------------------------------------------


@dataclass(frozen=True)
class StarManifest:
    """One star batch: the star rows built from the raw batch of the same id.

    Attributes:
        tables: each star table's files and rows (every star table appears, perhaps with none).
        state: the join state carried to the next batch: per source table that other dimensions join
            to, the files holding the latest row of each key.
        date_range: the dates dim_date covers after this batch (None: no fact row yet).
        quarantined: per source table, the rows set aside (``_reason`` says why).
        deleted: per star table, the keys found hard-deleted in the source, with ``_deleted_at``.
        warnings: the batch's data-quality warnings.
    """

    batch_id: str
    tables: dict[str, FileSet]
    state: dict[str, list[str]] = field(default_factory=dict)
    date_range: tuple[date, date] | None = None
    quarantined: dict[str, FileSet] = field(default_factory=dict)
    deleted: dict[str, FileSet] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    written_at: datetime = field(default_factory=_now)

    def to_json(self) -> Json:
        return {
            "format": MANIFEST_FORMAT,
            "batch_id": self.batch_id,
            "written_at": self.written_at.isoformat(),
            "tables": {name: entry.to_json() for name, entry in self.tables.items()},
            "state": self.state,
            "date_range": [d.isoformat() for d in self.date_range] if self.date_range else None,
            "quarantined": {name: entry.to_json() for name, entry in self.quarantined.items()},
            "deleted": {name: entry.to_json() for name, entry in self.deleted.items()},
            "warnings": self.warnings,
        }

    @classmethod
    def from_json(cls, data: Json) -> StarManifest:
        _check_format(data, f"star manifest {data.get('batch_id')}")
        date_range = data.get("date_range")
        return cls(
            batch_id=data["batch_id"],
            tables={name: FileSet.from_json(entry) or FileSet() for name, entry in data.get("tables", {}).items()},
            state={name: list(files) for name, files in (data.get("state") or {}).items()},
            date_range=(date.fromisoformat(date_range[0]), date.fromisoformat(date_range[1])) if date_range else None,
            quarantined=_file_sets(data.get("quarantined")),
            deleted=_file_sets(data.get("deleted")),
            warnings=list(data.get("warnings", [])),
            written_at=datetime.fromisoformat(data["written_at"]) if data.get("written_at") else _now(),
        )


# --- feed store: fetch, stage, load -------------------------------------------------------------------


@dataclass(frozen=True)
class FetchedFile:
    """What the fetch step last saw of a file and which raw version holds that content.

    ``recheck``: the file was modified so shortly before that fetch that a rewrite within the same
    second (same size, same mtime: SFTP mtimes have one-second resolution) would look unchanged, so
    the next fetch downloads it again and lets the content hash decide."""

    size: int
    mtime: int
    sha256: str
    version: str
    recheck: bool = False


@dataclass(frozen=True)
class FetchState:
    """What the last fetch of one feed saw on SFTP (``state/<feed>.json``): a cache that spares
    downloading unchanged files; the content hash decides whether a file changed."""

    files: dict[str, FetchedFile] = field(default_factory=dict)

    def to_json(self) -> Json:
        return {"format": MANIFEST_FORMAT, "files": {name: asdict(entry) for name, entry in sorted(self.files.items())}}

    @classmethod
    def from_json(cls, data: Json) -> FetchState:
        if isinstance(data.get("format"), int):
            _check_format(data, "feed fetch state")
            entries = data.get("files", {})
        else:
            entries = data  # format 1: the file -> entry mapping itself
        return cls(files={name: FetchedFile(**entry) for name, entry in entries.items()})


# Where a feed file's version was refused: at parse time it is never staged; at load time it is
# staged and retried on every load (a dimension row it needs may arrive later).
REFUSED_AT_PARSE, REFUSED_AT_LOAD = "parse", "load"


@dataclass(frozen=True)
class QuarantineRecord:
    """Why one version of a feed file is not loaded (``quarantine/<feed>/<file>/<version>.json``).

    ``stage`` says where it was refused: :data:`REFUSED_AT_PARSE` or :data:`REFUSED_AT_LOAD`."""

    feed: str
    file: str
    version: str
    problem: str
    stage: str
    line: int | None = None
    column: str | None = None
    quarantined_at: str = ""

    def to_json(self) -> Json:
        return {"format": MANIFEST_FORMAT, **asdict(self)}

    @classmethod
    def from_json(cls, data: Json) -> QuarantineRecord:
        _check_format(data, "feed quarantine record")
        return cls(
            feed=data["feed"],
            file=data["file"],
            version=data["version"],
            problem=data.get("problem", ""),
            stage=data.get("stage", ""),
            line=data.get("line"),
            column=data.get("column"),
            quarantined_at=data.get("quarantined_at", ""),
        )
