"""Where feed files live between SFTP and the warehouse (``TOTES_FILES_URL``, default ``<lake>/files``).

Layout::

    raw/<feed>/<file>                        S3: one object per file, one object version per change
    raw/<feed>/<file>.versions/<version>     a local folder: one file per version (+ <version>.json)
    staged/<feed>/<file>/<seq>--<version>.parquet   the parsed latest good version of each file
    quarantine/<feed>/<file>/<version>.json  why a version could not be loaded
    state/<feed>.json                        size, mtime and hash of each file at the last fetch

The raw zone keeps every version of every file: nothing there is overwritten or deleted. On S3 the
bucket's own versioning does that (and must be on); a local folder emulates it. The fetch state is only
a cache that spares downloading unchanged files: the content hash kept with each raw version is what
decides whether a file changed.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.core.lake import Lake
from tasks.core.manifests import FetchedFile, FetchState, QuarantineRecord


class FeedStoreError(RuntimeError):
    """The feed store cannot keep versions (e.g. S3 versioning is off)."""


class FeedStore:
    """The raw, staged and quarantine zones of the file feeds."""

    def __init__(self, url: str):
        self.url = url
        self.lake = Lake.from_url(url, version_aware=True)
        self.on_s3 = urlsplit(url).scheme == "s3"

    # --- raw: every version of every file ----------------------------------------------------------

    def check_versioning(self) -> None:
        """Fail unless the raw zone keeps versions (S3: the bucket has versioning enabled)."""
        if not self.on_s3:
            return
        bucket = self.lake.root.split("/", 1)[0]
        status = self.lake.fs.call_s3("get_bucket_versioning", Bucket=bucket).get("Status")
        if status != "Enabled":
            msg = (
                f"the S3 bucket {bucket!r} of TOTES_FILES_URL has versioning {status or 'off'}: totes keeps "
                f"every version of every feed file there. Enable it: aws s3api put-bucket-versioning "
                f"--bucket {bucket} --versioning-configuration Status=Enabled"
            )
            raise FeedStoreError(msg)

    def _raw(self, feed: str, name: str) -> str:
        return f"raw/{feed}/{name}"

    def _bucket_key(self, relative: str) -> tuple[str, str]:
        bucket, _, key = self.lake.full(relative).partition("/")
        return bucket, key

    def latest_raw(self, feed: str, name: str) -> tuple[str, str] | None:
        """(version, sha256) of the latest raw version of a file, or None if it has none."""
        if self.on_s3:
            bucket, key = self._bucket_key(self._raw(feed, name))
            try:
                head = self.lake.fs.call_s3("head_object", Bucket=bucket, Key=key)
            except FileNotFoundError:
                return None
            return head["VersionId"], head.get("Metadata", {}).get("sha256", "")
        versions = self._local_versions(feed, name)
        if not versions:
            return None
        meta = json.loads(
            self.lake.fs.cat_file(self.lake.full(f"{self._raw(feed, name)}.versions/{versions[-1]}.json"))
        )
        return versions[-1], meta["sha256"]

    def put_raw(self, feed: str, name: str, data: bytes, *, sha256: str, size: int, mtime: int) -> str:
        """Store a new version of a file; return its version id."""
        metadata = {"sha256": sha256, "sftp-size": str(size), "sftp-mtime": str(mtime)}
        if self.on_s3:
            bucket, key = self._bucket_key(self._raw(feed, name))
            response = self.lake.fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, Metadata=metadata)
            version = response.get("VersionId")
            if not version or version == "null":
                self.check_versioning()
                msg = f"S3 returned no version id for {key}: is versioning on?"
                raise FeedStoreError(msg)
            return version
        # Version ids sort in arrival order; the metadata file, written last, marks a complete version.
        version = f"{time.time_ns():020d}-{sha256[:12]}"
        folder = f"{self._raw(feed, name)}.versions"
        self.lake.put_whole(f"{folder}/{version}", data, create_only=True)
        self.lake.put_whole(f"{folder}/{version}.json", json.dumps(metadata).encode(), create_only=True)
        return version

    def read_raw(self, feed: str, name: str, version: str) -> bytes:
        if self.on_s3:
            return self.lake.fs.cat_file(self.lake.full(self._raw(feed, name)), version_id=version)
        return self.lake.fs.cat_file(self.lake.full(f"{self._raw(feed, name)}.versions/{version}"))

    def raw_versions(self, feed: str, name: str) -> list[str]:
        """Every stored version of a file, oldest first."""
        if self.on_s3:
            versions = self.lake.fs.object_version_info(self.lake.full(self._raw(feed, name)))
            return [v["VersionId"] for v in sorted(versions, key=lambda v: (v["LastModified"], v["IsLatest"]))]
        return self._local_versions(feed, name)

    def _local_versions(self, feed: str, name: str) -> list[str]:
        try:
            names = self.lake.fs.ls(self.lake.full(f"{self._raw(feed, name)}.versions"), detail=False)
        except FileNotFoundError:
            return []
        return sorted(Path(n).name.removesuffix(".json") for n in names if n.endswith(".json"))

    # --- fetch state (a cache) -----------------------------------------------------------------------

    def read_fetch_state(self, feed: str) -> dict[str, FetchedFile]:
        try:
            body = self.lake.fs.cat_file(self.lake.full(f"state/{feed}.json"))
        except FileNotFoundError:
            return {}
        return dict(FetchState.from_json(json.loads(body)).files)

    def write_fetch_state(self, feed: str, state: dict[str, FetchedFile]) -> None:
        body = json.dumps(FetchState(files=state).to_json(), indent=1)
        self.lake.put_whole(f"state/{feed}.json", body.encode())

    # --- staged: the latest good version of each current file --------------------------------------

    def staged(self, feed: str) -> dict[str, list[tuple[str, str]]]:
        """file -> [(version, object path)], oldest staged first."""
        found: dict[str, list[tuple[str, str, str]]] = {}
        try:
            paths = self.lake.fs.find(self.lake.full(f"staged/{feed}"))
        except FileNotFoundError:
            return {}
        for path in paths:
            relative = path.removeprefix(self.lake.root + "/")
            parts = relative.split("/")
            if len(parts) != 4 or not parts[3].endswith(".parquet") or "--" not in parts[3]:
                continue
            sequence, _, version = parts[3].removesuffix(".parquet").partition("--")
            found.setdefault(parts[2], []).append((sequence, version, relative))
        return {name: [(v, p) for _, v, p in sorted(entries)] for name, entries in found.items()}

    def write_staged(self, feed: str, name: str, version: str, table: pa.Table) -> str:
        relative = f"staged/{feed}/{name}/{time.time_ns():020d}--{version}.parquet"
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="zstd")
        self.lake.put_whole(relative, sink.getvalue())
        return relative

    def drop_staged(self, relative: str) -> None:
        try:
            self.lake.fs.rm_file(self.lake.full(relative))
        except FileNotFoundError:
            pass

    def read_staged(self, relative: str, schema: pa.Schema) -> pa.Table:
        with self.lake.fs.open(self.lake.full(relative), "rb") as handle:
            return pq.read_table(handle, schema=schema)

    # --- quarantine ----------------------------------------------------------------------------------

    def quarantined(self, feed: str) -> dict[tuple[str, str], QuarantineRecord]:
        """(file, version) -> the quarantine record of every version that could not be loaded."""
        records = {}
        try:
            paths = self.lake.fs.find(self.lake.full(f"quarantine/{feed}"))
        except FileNotFoundError:
            return {}
        for path in paths:
            if path.endswith(".json"):
                record = QuarantineRecord.from_json(json.loads(self.lake.fs.cat_file(path)))
                records[(record.file, record.version)] = record
        return records

    def quarantine(self, record: QuarantineRecord) -> QuarantineRecord | None:
        """Record why a version cannot be loaded: the record as kept (stamped with the time), or
        None if it was already quarantined."""
        relative = f"quarantine/{record.feed}/{record.file}/{record.version}.json"
        if self.lake.fs.exists(self.lake.full(relative)):
            return None
        stamped = replace(record, quarantined_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        try:
            self.lake.put_whole(
                relative, json.dumps(stamped.to_json(), indent=1).encode(), create_only=self.lake.is_local
            )
        except FileExistsError:
            return None
        return stamped

    def release(self, feed: str, name: str, version: str) -> None:
        """Forget a load-time quarantine (the version loaded after all, e.g. once a dimension caught up)."""
        try:
            self.lake.fs.rm_file(self.lake.full(f"quarantine/{feed}/{name}/{version}.json"))
        except FileNotFoundError:
            pass
