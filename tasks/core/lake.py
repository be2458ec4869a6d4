"""The data lake: Parquet files and batch manifests in a local folder or an S3 bucket.

Layout under ``TOTES_LAKE_URL``::

    _totes_lake.json                                                 the lake's identity
    raw/<source table>/batch=<batch id>/part-<n>-<attempt>.parquet   deltas read from ToteSys
    raw/_batches/<batch id>.json                                     ingest manifest (watermarks)
    raw/_head.json, star/_head.json                                  the newest batch of each zone
    star/<star table>/batch=<batch id>/part-<attempt>.parquet        dims and facts of that batch
    star/_batches/<batch id>.json                                    transform manifest

The lake is immutable: every object name carries a fresh attempt id and manifests are created only
if absent, so nothing is ever overwritten. A manifest is written last; data files that no manifest
names (left by a crash or a retried attempt) are ignored by every reader.
"""

from __future__ import annotations

import json
import logging
import os
import re
import uuid
from collections import Counter
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.core.manifests import FileSet, LakeIdentity, RawManifest, RawTableEntry, StarManifest

RAW = "raw"
STAR = "star"
LAKE_IDENTITY = "_totes_lake.json"
_MANIFESTS = "_batches"
# Per zone, the newest batch's id (``<zone>/_head.json``): where listings of a long lake start.
_HEAD = "_head.json"
# Per batch, the manifest entry each fan-out child run extracted (read by the run that records it).
_EXTRACTED = "_extracted"
_BATCH_ID = re.compile(r"^(\d{8})-(\d{8}T\d{6}Z)$")


class LakeError(RuntimeError):
    """The lake is not in the state the pipeline needs (e.g. a manifest already exists)."""


def new_batch_id(sequence: int, now: datetime | None = None) -> str:
    """Batch ids sort in the order batches were made: a sequence number, then the UTC time."""
    now = now or datetime.now(UTC)
    return f"{sequence:08d}-{now:%Y%m%dT%H%M%SZ}"


def batch_sequence(batch_id: str) -> int:
    match = _BATCH_ID.match(batch_id)
    if match is None:
        msg = f"not a totes batch id: {batch_id!r}"
        raise LakeError(msg)
    return int(match.group(1))


# Buckets this process has found (a bucket is not deleted under a running pipeline: each stage
# checking again cost an S3 request apiece).
_BUCKETS_FOUND: set[str] = set()


class LakeNotFound(RuntimeError):
    """The lake's bucket does not exist or refuses our credentials; the message says which."""

    transient = False  # a setting to correct: retrying cannot help


@dataclass(frozen=True)
class Lake:
    """A lake root on some fsspec filesystem. Paths passed around are relative to the root."""

    fs: fsspec.AbstractFileSystem
    root: str
    url: str

    @classmethod
    def from_url(cls, url: str, *, version_aware: bool = False) -> Lake:
        """The lake at ``url``. ``version_aware``: read and list S3 object versions (feed raw zone)."""
        parts = urlsplit(url)
        if parts.scheme == "s3":
            import s3fs

            # Endpoint, region and credentials come from the standard AWS_* variables.
            fs = s3fs.S3FileSystem(
                endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
                config_kwargs={"retries": {"max_attempts": 5, "mode": "adaptive"}},
                version_aware=version_aware,
            )
            root = f"{parts.netloc}{parts.path}".rstrip("/")
        else:
            # Not created here: a command that only reads a lake must not make an empty one where a
            # wrong TOTES_LAKE_URL points (writes create the folders they write to).
            fs = fsspec.filesystem("file")
            root = str(Path(parts.path if parts.scheme == "file" else url).expanduser().resolve())
        return cls(fs=fs, root=root, url=url)

    def require_bucket(self) -> None:
        """Fail clearly if the lake's S3 bucket does not exist or cannot be reached, rather than let
        s3fs create a new, empty bucket on the first write (a typo in TOTES_LAKE_URL would start a
        second lake and reload everything).

        Raises:
            LakeNotFound: naming the bucket and the setting.
        """
        if self.is_local:
            if Path(self.root).exists() and not Path(self.root).is_dir():
                msg = f"TOTES_LAKE_URL {self.url} is a file, not a folder: point it at the lake's folder (or a new one)"
                raise LakeNotFound(msg)
            return
        bucket = self.root.split("/", 1)[0]
        if bucket in _BUCKETS_FOUND:
            return
        try:
            self.fs.ls(bucket, refresh=True)
        except FileNotFoundError as error:
            msg = f"the lake's bucket {bucket!r} does not exist: create it, or correct TOTES_LAKE_URL ({self.url})"
            raise LakeNotFound(msg) from error
        except PermissionError as error:
            msg = f"the lake's bucket {bucket!r} refuses these AWS credentials ({error})"
            raise LakeNotFound(msg) from error
        _BUCKETS_FOUND.add(bucket)

    @property
    def is_local(self) -> bool:
        return self.fs.protocol in ("file", ("file", "local"))

    def full(self, relative: str) -> str:
        return f"{self.root}/{relative}"

    # --- identity --------------------------------------------------------------------------

    def read_identity(self) -> LakeIdentity | None:
        """The lake's identity (None: no lake here yet, or one written before lakes had one)."""
        try:
            with self.fs.open(self.full(LAKE_IDENTITY), "rb") as handle:
                return LakeIdentity.from_json(json.load(handle))
        except (FileNotFoundError, NotADirectoryError):
            return None

    def ensure_identity(self) -> LakeIdentity:
        """The lake's identity, created if it has none (create-only: of two writers, one wins)."""
        found = self.read_identity()
        if found is not None:
            return found
        made = LakeIdentity(lake_id=uuid.uuid4().hex)
        try:
            self.put_whole(LAKE_IDENTITY, json.dumps(made.to_json(), indent=1).encode(), create_only=True)
        except FileExistsError:
            return self.read_identity() or made
        return made

    @property
    def exists(self) -> bool:
        """Whether anything is at the lake's root (a local folder or an S3 prefix)."""
        try:
            return bool(self.fs.ls(self.root, detail=False, refresh=True))
        except (FileNotFoundError, NotADirectoryError):
            return False

    # --- manifests -------------------------------------------------------------------------

    def manifest_path(self, zone: str, batch_id: str) -> str:
        return f"{zone}/{_MANIFESTS}/{batch_id}.json"

    def list_batches(self, zone: str, *, after: str | None = None, from_sequence: int | None = None) -> list[str]:
        """Ids of the batches with a manifest in ``zone``, oldest first: all of them, or only those
        after the batch ``after``, or from the sequence number ``from_sequence`` on. Ids sort as
        their keys do (an 8-digit sequence first), so on S3 the listing starts there: a year of
        15-minute batches (35,000 manifests, 35 pages of a full listing) costs one request."""
        start = after if after is not None else (f"{from_sequence:08d}" if from_sequence is not None else None)
        folder = self.full(f"{zone}/{_MANIFESTS}")
        try:
            if start is not None and not self.is_local:
                names = self._keys_after(folder, start)
            else:
                names = [Path(name).name for name in self.fs.ls(folder, detail=False, refresh=True)]
        except (FileNotFoundError, NotADirectoryError):
            return []
        ids = [name.removesuffix(".json") for name in names if name.endswith(".json")]
        found = sorted((i for i in ids if _BATCH_ID.match(i)), key=batch_sequence)
        if after is not None:
            return [i for i in found if batch_sequence(i) > batch_sequence(after)]
        if from_sequence is not None:
            return [i for i in found if batch_sequence(i) >= from_sequence]
        return found

    def _keys_after(self, folder: str, start: str) -> list[str]:
        """The names in an S3 folder that sort after ``start`` (a ListObjectsV2 with StartAfter)."""
        bucket, _, prefix = f"{folder}/".partition("/")
        names: list[str] = []
        token: dict[str, str] = {}
        while True:
            page = self.fs.call_s3(
                "list_objects_v2", Bucket=bucket, Prefix=prefix, StartAfter=f"{prefix}{start}", **token
            )
            names += [item["Key"][len(prefix) :] for item in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                # s3fs keeps listings of this process: one taken before would hide the manifests found.
                self.fs.invalidate_cache(folder)
                return names
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def batches_missing_from(self, zone: str, present: Collection[str]) -> list[str]:
        """The batches of ``zone`` not in ``present`` (e.g. those a warehouse has loaded), oldest
        first. When ``present`` is batches 1 to N, all of them (batches are loaded in order), only
        the batches after N are listed."""
        last = max(present, key=batch_sequence, default=None)
        if last is not None and len(set(present)) == batch_sequence(last):
            return self.list_batches(zone, after=last)
        return [batch for batch in self.list_batches(zone) if batch not in present]

    def newest_batch(self, zone: str, *, repair: bool = False) -> str | None:
        """The newest batch of ``zone``: the one its head names (written after each manifest), or a
        newer one (a head is a hint: a crash may leave it behind). A lake without a head is listed.
        ``repair``: a writer sets a head found behind (or missing) to the newest batch."""
        head = self._read_head(zone)
        batches = self.list_batches(zone, after=head) if head else self.list_batches(zone)
        newest = batches[-1] if batches else head
        if repair and newest is not None and newest != head:
            self.write_head(zone, newest)
        return newest

    def _read_head(self, zone: str) -> str | None:
        if not self.is_local:
            self.fs.invalidate_cache(self.full(f"{zone}/{_HEAD}"))  # rewritten by every batch
        try:
            with self.fs.open(self.full(f"{zone}/{_HEAD}"), "rb") as handle:
                head = json.load(handle).get("batch_id")
        except (FileNotFoundError, NotADirectoryError, ValueError):
            return None
        return head if isinstance(head, str) and _BATCH_ID.match(head) else None

    def write_head(self, zone: str, batch_id: str) -> None:
        """Name ``batch_id`` as the zone's newest. Best effort: a head left behind costs a listing,
        and the manifest, already written, must not be written again by a retry."""
        try:
            self.put_whole(f"{zone}/{_HEAD}", json.dumps({"batch_id": batch_id}).encode())
        except OSError:
            logging.getLogger("totes.lake").info("could not update %s/%s; the next run lists past it", zone, _HEAD)

    def read_manifest(self, zone: str, batch_id: str) -> dict[str, Any]:
        with self.fs.open(self.full(self.manifest_path(zone, batch_id)), "rb") as handle:
            return json.load(handle)

    def write_manifest(self, zone: str, batch_id: str, manifest: dict) -> str:
        """Create the manifest of a batch; fails if it exists (the lake is never overwritten)."""
        relative = self.manifest_path(zone, batch_id)
        body = json.dumps(manifest, indent=1, sort_keys=True, default=str).encode()
        try:
            self.put_whole(relative, body, create_only=True)
        except FileExistsError as error:
            msg = f"lake manifest {relative} already exists; another totes run may be writing"
            raise LakeError(msg) from error
        self.write_head(zone, batch_id)
        return relative

    def read_raw_manifest(self, batch_id: str) -> RawManifest:
        return RawManifest.from_json(self.read_manifest(RAW, batch_id))

    def read_star_manifest(self, batch_id: str) -> StarManifest:
        return StarManifest.from_json(self.read_manifest(STAR, batch_id))

    def write_raw_manifest(self, manifest: RawManifest) -> str:
        return self.write_manifest(RAW, manifest.batch_id, manifest.to_json())

    def write_star_manifest(self, manifest: StarManifest) -> str:
        return self.write_manifest(STAR, manifest.batch_id, manifest.to_json())

    # --- one table's extract, handed from a fan-out child run to the run that records the batch ---

    def extracted_path(self, batch_id: str, table: str) -> str:
        return f"{RAW}/{_EXTRACTED}/{batch_id}/{table}.json"

    def write_extracted_table(self, batch_id: str, table: str, entry: RawTableEntry) -> str:
        """The manifest entry one child run extracted for ``table`` (a retried child overwrites it:
        only the manifest, written by the parent from these, makes a batch)."""
        relative = self.extracted_path(batch_id, table)
        self.put_whole(relative, json.dumps(entry.to_json(), sort_keys=True, default=str).encode())
        return relative

    def read_extracted_table(self, batch_id: str, table: str) -> RawTableEntry:
        with self.fs.open(self.full(self.extracted_path(batch_id, table)), "rb") as handle:
            return RawTableEntry.from_json(json.load(handle))

    def put_whole(self, relative: str, body: bytes, *, create_only: bool = False) -> None:
        """Write an object so that readers see it absent or whole, never half written.

        Raises:
            FileExistsError: ``create_only`` and the object exists (checked atomically with the write:
                a link on a local folder, a conditional PUT, ``If-None-Match: *``, on S3).
        """
        target = self.full(relative)
        if self.is_local:
            # Rename is atomic on a local filesystem, so a crash never leaves half a file.
            self.fs.makedirs(str(Path(target).parent), exist_ok=True)
            temporary = f"{target}.{uuid.uuid4().hex}.tmp"
            with open(temporary, "wb") as handle:
                handle.write(body)
                handle.flush()
                os.fsync(handle.fileno())
            if create_only:
                try:
                    os.link(temporary, target)  # fails if target appeared meanwhile
                finally:
                    os.unlink(temporary)
            else:
                os.replace(temporary, target)
        elif create_only:
            self._create_object(target, body)
        else:
            # An S3 PUT is atomic: the object is either absent or whole.
            self.fs.pipe_file(target, body)

    def _create_object(self, target: str, body: bytes) -> None:
        """PUT an S3 object only if none exists under its key: S3 itself refuses the second of two
        writers (HTTP 412), so two runs can never both believe they created one manifest."""
        bucket, key = target.split("/", 1)
        try:
            self.fs.call_s3("put_object", Bucket=bucket, Key=key, Body=body, IfNoneMatch="*")
        except OSError as error:
            if "PreconditionFailed" in str(error) or "412" in str(error):
                raise FileExistsError(target) from error
            raise
        self.fs.invalidate_cache(target)

    # --- Parquet ---------------------------------------------------------------------------

    def data_path(self, zone: str, table: str, batch_id: str, part: int) -> str:
        attempt = uuid.uuid4().hex[:12]
        return f"{zone}/{table}/batch={batch_id}/part-{part:05d}-{attempt}.parquet"

    def write_batches(
        self,
        zone: str,
        table: str,
        batch_id: str,
        schema: pa.Schema,
        batches: Iterable[pa.RecordBatch],
        *,
        rows_per_file: int,
        column_encoding: dict[str, str] | None = None,
    ) -> tuple[list[str], int]:
        """Stream record batches into Parquet files of at most ``rows_per_file`` rows.

        ``column_encoding``: Parquet encodings of columns whose values are (nearly) all distinct,
        which then get no dictionary (Parquet tries one for every column, and gives up only after
        building it): ``DELTA_BINARY_PACKED`` for keys (ascending, 1.56 M of them take 0.24 MB
        instead of 5.3 MB, written in a third of the time), ``PLAIN`` for hashes.

        Returns the relative paths written and the number of rows. Writes no file for no rows.
        """
        options: dict[str, object] = {"compression": "zstd"}
        if column_encoding:
            options["use_dictionary"] = [name for name in schema.names if name not in column_encoding]
            options["column_encoding"] = column_encoding
        files: list[str] = []
        total = 0
        writer: pq.ParquetWriter | None = None
        handle = None
        rows_in_file = 0
        try:
            for batch in batches:
                offset = 0
                while offset < batch.num_rows:
                    if writer is None:
                        relative = self.data_path(zone, table, batch_id, len(files))
                        self.fs.makedirs(str(Path(self.full(relative)).parent), exist_ok=True)
                        handle = self.fs.open(self.full(relative), "wb")
                        writer = pq.ParquetWriter(handle, schema, **options)
                        files.append(relative)
                        rows_in_file = 0
                    take = min(batch.num_rows - offset, rows_per_file - rows_in_file)
                    writer.write_batch(batch.slice(offset, take))
                    offset += take
                    rows_in_file += take
                    total += take
                    if rows_in_file >= rows_per_file and handle is not None:
                        writer.close()
                        handle.close()
                        writer, handle = None, None
        finally:
            if writer is not None:
                writer.close()
            if handle is not None:
                handle.close()
        return files, total

    def write_table(
        self, zone: str, table: str, batch_id: str, data: pa.Table, *, column_encoding: dict[str, str] | None = None
    ) -> list[str]:
        files, _ = self.write_batches(
            zone,
            table,
            batch_id,
            data.schema,
            data.to_batches(),
            rows_per_file=max(1, data.num_rows),
            column_encoding=column_encoding,
        )
        return files

    def read_table(self, files: list[str], schema: pa.Schema) -> pa.Table:
        """All rows of the given Parquet files, cast to ``schema`` (empty if there are none)."""
        if not files:
            return schema.empty_table()
        tables = []
        for relative in files:
            with self.fs.open(self.full(relative), "rb") as handle:
                tables.append(pq.read_table(handle, schema=schema))
        return pa.concat_tables(tables)

    def read_column(self, files: list[str], column: str) -> pa.ChunkedArray:
        """One column of the given Parquet files (e.g. the reasons of set-aside rows)."""
        arrays: list[pa.Array] = []
        for relative in files:
            with self.fs.open(self.full(relative), "rb") as handle:
                arrays += pq.read_table(handle, columns=[column]).column(column).chunks
        return pa.chunked_array(arrays, pa.string()) if not arrays else pa.chunked_array(arrays)

    def set_aside_reasons(self, set_aside: FileSet) -> Counter[str]:
        """Rows set aside per reason (their ``_reason`` column)."""
        return Counter(self.read_column(set_aside.files, "_reason").to_pylist())

    def iter_batches(
        self, files: list[str], schema: pa.Schema, *, holding: dict[str, np.ndarray] | None = None
    ) -> Iterator[pa.RecordBatch]:
        """Record batches of the given Parquet files, one file open at a time. With ``holding`` (per
        column, sorted values), only the row groups whose statistics allow one of those values in
        its column: a search for a few keys reads a twelfth of a big table's index, not all of it.
        The rows are not filtered: the caller does that."""
        for relative in files:
            with self.fs.open(self.full(relative), "rb") as handle:
                parquet = pq.ParquetFile(handle)
                groups = None if holding is None else row_groups_holding(parquet.metadata, holding)
                if groups == []:
                    continue
                for batch in parquet.iter_batches(batch_size=65_536, row_groups=groups):
                    yield batch.select(schema.names).cast(schema)

    def remove_all_but(self, folder: str, keep: Iterable[str]) -> int:
        """Delete every object under ``folder`` that ``keep`` (relative paths) does not name, with
        every version of it on S3 (the lake's bucket is versioned: a plain delete would leave the
        bytes readable as a noncurrent version); return how many objects. The one exception to an
        immutable lake: files that must not be read by anyone any more (see
        ``tasks/ingest/tasks.py``, ``remove_superseded_indexes``)."""
        kept = {self.full(relative) for relative in keep}
        if self.is_local:
            self.fs.invalidate_cache(self.full(folder))
            found = [path for path in self.fs.find(self.full(folder)) if path not in kept]
            if found:
                self.fs.rm(found)
            return len(found)
        bucket, prefix = self.full(folder).split("/", 1)
        versions: list[dict[str, str]] = []
        for page in self._object_versions(bucket, f"{prefix}/"):
            for found in page.get("Versions", []) + page.get("DeleteMarkers", []):
                if f"{bucket}/{found['Key']}" not in kept:
                    versions.append({"Key": found["Key"], "VersionId": found["VersionId"]})
        for start in range(0, len(versions), 1000):  # the most one request deletes
            answer = self.fs.call_s3(
                "delete_objects", Bucket=bucket, Delete={"Objects": versions[start : start + 1000]}
            )
            if answer.get("Errors"):  # S3 answers 200 and lists the objects it refused
                refused = answer["Errors"][0]
                msg = (
                    f"cannot delete {bucket}/{refused['Key']} from the lake ({refused.get('Code')}: "
                    f"{refused.get('Message')}); {len(answer['Errors'])} object version(s) refused"
                )
                raise LakeError(msg)
        self.fs.invalidate_cache(self.full(folder))
        return len({version["Key"] for version in versions})

    def _object_versions(self, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
        """The pages of ListObjectVersions under ``prefix``."""
        marks: dict[str, str] = {}
        while True:
            page = self.fs.call_s3("list_object_versions", Bucket=bucket, Prefix=prefix, **marks)
            yield page
            if not page.get("IsTruncated"):
                return
            marks = {"KeyMarker": page["NextKeyMarker"], "VersionIdMarker": page["NextVersionIdMarker"]}


def row_groups_holding(metadata: pq.FileMetaData, holding: dict[str, np.ndarray]) -> list[int]:
    """The row groups of a Parquet file whose statistics allow, in one of ``holding``'s columns, one
    of its values (sorted): no other group can hold one. A group is kept when a column has no
    minimum and maximum, or is not in the file."""
    positions = {metadata.schema.column(i).name: i for i in range(metadata.num_columns)}
    kept = []
    for group in range(metadata.num_row_groups):
        row_group = metadata.row_group(group)
        for name, values in holding.items():
            position = positions.get(name)
            statistics = None if position is None else row_group.column(position).statistics
            if statistics is None or not statistics.has_min_max:
                kept.append(group)
                break
            at = int(np.searchsorted(values, statistics.min))
            if at < len(values) and values[at] <= statistics.max:
                kept.append(group)
                break
    return kept
