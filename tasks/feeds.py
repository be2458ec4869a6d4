"""File feeds: their declaration (``feeds.toml``), the parsing of one file, and the convergence plans.

Everything here is pure: bytes and listings in, tables and plans out. The I/O (SFTP, the lake, the
warehouse) lives in :mod:`tasks.feed_stages`.

A feed says where its files are (an SFTP directory and a glob), how to read them (CSV, JSON lines or
Parquet, with a typed column list), and which warehouse table their rows go to, under which natural
key. A column of the file may be resolved through a warehouse dimension on load (``lookups``), as
exchange rates name a currency by its ISO code while the fact keeps ``currency_id``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from fnmatch import fnmatchcase
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tasks.schema import FEED_LINEAGE, FEED_TABLES, STAR_TABLES

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_DECIMAL_TYPE = re.compile(r"^decimal\((\d+),\s*(\d+)\)$")
# Object names in the lake are built from file names: keep them to what every store accepts.
_SAFE_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=@-]{0,199}$")
_SIMPLE_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "integer": pa.int32(),
    "bigint": pa.int64(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
    "boolean": pa.bool_(),
}


class FeedConfigError(ValueError):
    """The feeds file is not valid: names the feed and the setting."""


def arrow_type(type_name: str) -> pa.DataType:
    """The Arrow type of a feed column type: string, integer, bigint, date, timestamp, boolean or
    decimal(precision, scale)."""
    name = type_name.strip().lower()
    if name in _SIMPLE_TYPES:
        return _SIMPLE_TYPES[name]
    match = _DECIMAL_TYPE.match(name)
    if match and 1 <= int(match.group(1)) <= 38 and int(match.group(2)) <= int(match.group(1)):
        return pa.decimal128(int(match.group(1)), int(match.group(2)))
    msg = f"unknown column type {type_name!r} (use {', '.join(_SIMPLE_TYPES)} or decimal(p,s))"
    raise ValueError(msg)


class Lookup(BaseModel):
    """Resolve a target column through a warehouse dimension: ``target = dim.value where dim.match = file.column``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    column: str = Field(description="the file column that holds the dimension's natural value")
    table: str = Field(description="the warehouse dimension, e.g. dim_currency")
    match: str = Field(description="the dimension's column compared with the file column")


class Feed(BaseModel):
    """One feed of ``feeds.toml``. Table and column names are checked against :mod:`tasks.schema`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    directory: str = Field(description="SFTP directory, relative to the path of TOTES_SFTP_URL")
    pattern: str = Field(default="*", description="glob of the file names that belong to the feed")
    format: Literal["csv", "jsonl", "parquet"]
    columns: dict[str, str] = Field(description="file column -> type, in any order")
    target_table: str
    natural_key: list[str] = Field(description="target columns that identify a row across all files")
    lookups: dict[str, Lookup] = Field(default_factory=dict, description="target column -> lookup")
    keep_removed: bool = Field(default=False, description="keep loading files removed from SFTP")
    min_age_seconds: int = Field(
        default=0, ge=0, description="leave files modified more recently than this for a later run (uploads in progress)"
    )
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    encoding: str = "utf-8"

    @model_validator(mode="after")
    def _check_against_schema(self) -> Feed:
        problems = []
        if not _IDENTIFIER.match(self.name):
            problems.append("the name must be lower case letters, digits and _")
        if ".." in Path(self.directory).parts:
            problems.append("directory must not contain '..'")
        target = FEED_TABLES.get(self.target_table)
        if target is None:
            problems.append(f"target_table {self.target_table!r} is not a feed table ({', '.join(FEED_TABLES)})")
            raise FeedConfigError(f"feed {self.name!r}: " + "; ".join(problems))
        for column, type_name in self.columns.items():
            if not _IDENTIFIER.match(column):
                problems.append(f"column {column!r} is not a plain lower-case identifier")
                continue
            try:
                file_type = arrow_type(type_name)
            except ValueError as error:
                problems.append(f"column {column!r}: {error}")
                continue
            if column in target.schema.names and target.schema.field(column).type != file_type:
                problems.append(
                    f"column {column!r} is {type_name} but {self.target_table}.{column} is "
                    f"{target.schema.field(column).type}"
                )
        for target_column, lookup in self.lookups.items():
            dimension = STAR_TABLES.get(lookup.table)
            if target_column not in target.schema.names:
                problems.append(f"lookup target {target_column!r} is not a column of {self.target_table}")
            if dimension is None or not lookup.table.startswith("dim_"):
                problems.append(f"lookup table {lookup.table!r} is not a warehouse dimension")
                continue
            for column in (lookup.match, target_column):
                if column not in dimension.schema.names:
                    problems.append(f"lookup: {lookup.table} has no column {column!r}")
            if lookup.column not in self.columns:
                problems.append(f"lookup for {target_column!r} reads {lookup.column!r}, which is not a file column")
        provided = {c for c in self.columns if c in target.schema.names} | set(self.lookups)
        missing = [c for c in target.schema.names if c not in provided]
        if missing:
            problems.append(f"no file column or lookup provides {self.target_table}.{', '.join(missing)}")
        unused = [c for c in self.columns if c not in target.schema.names and c not in self.lookup_columns]
        if unused:
            problems.append(f"file column(s) {', '.join(unused)} go nowhere in {self.target_table}")
        if not self.natural_key or set(self.natural_key) - set(target.schema.names):
            problems.append(f"natural_key must be columns of {self.target_table}")
        if problems:
            raise FeedConfigError(f"feed {self.name!r}: " + "; ".join(problems))
        return self

    @property
    def lookup_columns(self) -> set[str]:
        return {lookup.column for lookup in self.lookups.values()}

    @property
    def file_schema(self) -> pa.Schema:
        """The typed schema of a parsed file: its columns (nullable as the target says) and the
        lineage columns. This is the schema of the staged Parquet."""
        target = FEED_TABLES[self.target_table].schema
        fields = [
            pa.field(
                name,
                arrow_type(type_name),
                nullable=target.field(name).nullable if name in target.names else False,
            )
            for name, type_name in self.columns.items()
        ]
        return pa.schema(fields + list(FEED_LINEAGE))

    @property
    def file_key(self) -> list[str]:
        """The natural key in file columns (a looked-up target column is keyed by its file column)."""
        return [self.lookups[c].column if c in self.lookups else c for c in self.natural_key]

    def matches(self, file_name: str) -> bool:
        return fnmatchcase(file_name, self.pattern)


def load_feeds(path: Path | None = None) -> dict[str, Feed]:
    """The feeds declared in ``path`` (``TOTES_FEEDS_FILE``), or in the feeds file shipped with totes."""
    if path is None:
        text = resources.files("tasks").joinpath("feeds.toml").read_text(encoding="utf-8")
        where = "the built-in feeds.toml"
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as error:
            msg = f"cannot read the feeds file {path}: {error.strerror or error}"
            raise FeedConfigError(msg) from error
        where = str(path)
    try:
        declared = tomllib.loads(text).get("feeds", {})
    except tomllib.TOMLDecodeError as error:
        msg = f"{where} is not valid TOML: {error}"
        raise FeedConfigError(msg) from error
    feeds = {}
    for name, body in declared.items():
        try:
            feeds[name] = Feed(name=name, **body)
        except ValidationError as error:
            details = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'feed'}: {e['msg'].removeprefix('Value error, ')}"
                for e in error.errors()
            )
            msg = f"{where}: {details}"
            raise FeedConfigError(msg) from None
    return feeds


# --- Parsing one file --------------------------------------------------------------------------------


class FeedFileError(ValueError):
    """A file that cannot be loaded as it is. Names the file, the line (1-based, the header being
    line 1 of a CSV file) and the column where known, and the problem."""

    def __init__(self, file: str, problem: str, *, line: int | None = None, column: str | None = None):
        self.file, self.problem, self.line, self.column = file, problem, line, column
        where = "".join(
            part for part in (f" line {line}" if line else "", f", column {column}" if column else "")
        )
        super().__init__(f"{file}{where}: {problem}")

    def as_record(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "column": self.column, "problem": self.problem}


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_file_name(name: str) -> None:
    if not _SAFE_FILE_NAME.match(name):
        msg = "the file name may hold only letters, digits and . _ - + = @ (it names objects in the lake)"
        raise FeedFileError(name, msg)


def parse_feed_file(feed: Feed, file: str, data: bytes, *, version: str) -> pa.Table:
    """The rows of one feed file as a typed Arrow table with lineage columns.

    Raises:
        FeedFileError: the file is empty, not in the feed's encoding, malformed, has other columns
            than the feed declares, a value that is not of its column's type (or is missing where the
            target requires one), or two rows with the same natural key.
    """
    if not data.strip():
        raise FeedFileError(file, "the file is empty")
    if feed.format == "parquet":
        lines, records = _parquet_records(feed, file, data)
    else:
        text = _decode(file, data, feed.encoding)
        reader = _csv_records if feed.format == "csv" else _jsonl_records
        lines, records = reader(feed, file, text)
    if not records:
        raise FeedFileError(file, "the file has no rows")
    schema = feed.file_schema
    columns = {}
    for name in feed.columns:
        target_field = schema.field(name)
        convert = _converter(target_field.type)
        values = []
        for line, record in zip(lines, records, strict=True):
            raw = record[name]
            if raw is None or raw == "":
                if not target_field.nullable:
                    raise FeedFileError(file, "a value is required", line=line, column=name)
                values.append(None)
                continue
            try:
                values.append(convert(raw))
            except (ValueError, ArithmeticError) as error:
                problem = f"{_shorten(raw)!r} is not a valid {feed.columns[name]}"
                if str(error):
                    problem += f" ({error})"
                raise FeedFileError(file, problem, line=line, column=name) from None
        columns[name] = values
    _check_unique_keys(feed, file, lines, columns)
    columns["_source_file"] = [file] * len(lines)
    columns["_source_version"] = [version] * len(lines)
    columns["_source_line"] = lines
    return pa.table(columns, schema=schema)


def _decode(file: str, data: bytes, encoding: str) -> str:
    nul = data.find(b"\x00")
    if nul >= 0 and encoding.lower().replace("-", "") in ("utf8", "latin1", "ascii", "cp1252"):
        line = data[:nul].count(b"\n") + 1
        raise FeedFileError(file, "a NUL byte (0x00), which no text column can hold", line=line)
    try:
        return data.decode(encoding).removeprefix("\ufeff")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        problem = f"byte 0x{data[error.start]:02x} is not valid {encoding} (bad encoding)"
        raise FeedFileError(file, problem, line=line) from None
    except LookupError as error:
        raise FeedFileError(file, f"unknown encoding {encoding!r}") from error


def _check_columns(feed: Feed, file: str, found: Iterable[str], *, line: int | None) -> None:
    found = list(found)
    duplicated = sorted({c for c in found if found.count(c) > 1})
    missing = [c for c in feed.columns if c not in found]
    unexpected = [c for c in found if c not in feed.columns]
    problems = []
    if missing:
        problems.append(f"missing column(s) {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected column(s) {', '.join(_shorten(c) for c in unexpected)}")
    if duplicated:
        problems.append(f"repeated column(s) {', '.join(duplicated)}")
    if problems:
        expected = ", ".join(feed.columns)
        raise FeedFileError(file, f"{'; '.join(problems)} (the feed expects {expected})", line=line)


def _csv_records(feed: Feed, file: str, text: str) -> tuple[list[int], list[dict[str, str]]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=feed.delimiter, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise FeedFileError(file, "the file is empty") from None
    except csv.Error as error:
        raise FeedFileError(file, f"malformed CSV header: {error}", line=1) from None
    header = [name.strip() for name in header]
    _check_columns(feed, file, header, line=1)
    lines, records = [], []
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            raise FeedFileError(file, f"malformed CSV: {error}", line=reader.line_num) from None
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != len(header):
            problem = f"{len(row)} field(s) where the header has {len(header)}"
            raise FeedFileError(file, problem, line=reader.line_num)
        lines.append(reader.line_num)
        records.append(dict(zip(header, (value.strip() for value in row), strict=True)))
    return lines, records


def _jsonl_records(feed: Feed, file: str, text: str) -> tuple[list[int], list[dict[str, Any]]]:
    lines, records = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            # Numbers are kept as written: a rate must not pass through a float.
            record = json.loads(line, parse_float=str, parse_int=str)
        except json.JSONDecodeError as error:
            raise FeedFileError(file, f"not valid JSON: {error.msg}", line=number) from None
        if not isinstance(record, dict):
            raise FeedFileError(file, "each line must be a JSON object", line=number)
        _check_columns(feed, file, record, line=number)
        lines.append(number)
        records.append({k: v if v is None or isinstance(v, str) else json.dumps(v) for k, v in record.items()})
    return lines, records


def _parquet_records(feed: Feed, file: str, data: bytes) -> tuple[list[int], list[dict[str, Any]]]:
    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowInvalid, OSError) as error:
        raise FeedFileError(file, f"not a readable Parquet file: {error}") from None
    _check_columns(feed, file, table.column_names, line=None)
    # Rows are numbered from 1; values are compared as text, as in the other formats.
    rows = table.to_pylist()
    records = [{k: None if v is None else str(v) for k, v in row.items()} for row in rows]
    return list(range(1, len(rows) + 1)), records


def _shorten(value: str, limit: int = 40) -> str:
    return value if len(value) <= limit else value[:limit] + "..."


def _converter(arrow: pa.DataType):  # noqa: ANN202 - a value parser per Arrow type
    if pa.types.is_string(arrow):
        return str
    if pa.types.is_int32(arrow) or pa.types.is_int64(arrow):
        bits = arrow.bit_width - 1

        def to_int(text: str) -> int:
            value = int(text)
            if not -(2**bits) <= value < 2**bits:
                msg = f"out of range for a {arrow.bit_width}-bit integer"
                raise ValueError(msg)
            return value

        return to_int
    if pa.types.is_decimal(arrow):
        return lambda text: _to_decimal(text, arrow.precision, arrow.scale)
    if pa.types.is_date32(arrow):
        return _to_date
    if pa.types.is_timestamp(arrow):
        return lambda text: datetime.fromisoformat(text)
    if pa.types.is_boolean(arrow):
        return _to_bool
    msg = f"no parser for {arrow}"
    raise TypeError(msg)


def _to_decimal(text: str, precision: int, scale: int) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError("") from None
    if not value.is_finite():
        raise ValueError("not a finite number")
    if value.as_tuple().exponent < -scale and value != value.quantize(Decimal(1).scaleb(-scale)):
        msg = f"more than {scale} decimal places would be lost"
        raise ValueError(msg)
    value = value.quantize(Decimal(1).scaleb(-scale))
    if len(value.as_tuple().digits) > precision:
        msg = f"more than {precision - scale} digits before the point"
        raise ValueError(msg)
    return value


def _to_date(text: str) -> date:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise ValueError("expected YYYY-MM-DD")
    return date.fromisoformat(text)


def _to_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "t", "1", "yes"):
        return True
    if lowered in ("false", "f", "0", "no"):
        return False
    raise ValueError("expected true or false")


def _check_unique_keys(feed: Feed, file: str, lines: list[int], columns: dict[str, list]) -> None:
    first_line: dict[tuple, int] = {}
    keys = zip(*(columns[name] for name in feed.file_key), strict=True)
    for line, key in zip(lines, keys, strict=True):
        if key in first_line:
            shown = ", ".join(f"{n}={v}" for n, v in zip(feed.file_key, key, strict=True))
            raise FeedFileError(file, f"duplicate key ({shown}), first on line {first_line[key]}", line=line)
        first_line[key] = line


# --- Convergence plans -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteFile:
    """A file as listed on the SFTP server."""

    name: str
    size: int
    mtime: int


@dataclass(frozen=True)
class FetchedFile:
    """What the fetch step last saw of a file and which raw version holds that content."""

    size: int
    mtime: int
    sha256: str
    version: str


def settled_files(
    listing: Iterable[RemoteFile], seen: dict[str, FetchedFile], *, now: int, min_age_seconds: int
) -> tuple[list[RemoteFile], list[RemoteFile]]:
    """Split a listing into the files to consider now and those still being written (modified less
    than ``min_age_seconds`` ago). A file still being written that an earlier fetch saw is considered
    as the earlier fetch saw it, so its loaded version stays; an entirely new one waits."""
    ready, waiting = [], []
    for remote in listing:
        if now - remote.mtime >= min_age_seconds:
            ready.append(remote)
        else:
            waiting.append(remote)
            if (known := seen.get(remote.name)) is not None:
                ready.append(RemoteFile(remote.name, known.size, known.mtime))
    return ready, waiting


def files_to_download(listing: Iterable[RemoteFile], seen: dict[str, FetchedFile]) -> list[RemoteFile]:
    """Files whose size or mtime differ from what the last fetch saw (or that it never saw). Their
    content hash then decides whether they really changed."""
    return [
        remote
        for remote in listing
        if (known := seen.get(remote.name)) is None or (known.size, known.mtime) != (remote.size, remote.mtime)
    ]


@dataclass(frozen=True)
class StagingPlan:
    """How to make the staging zone hold exactly the latest good version of each current file."""

    parse: list[tuple[str, str]] = field(default_factory=list)  # (file, version) to parse, stage, then
    # drop the file's other staged versions
    drop: list[tuple[str, str]] = field(default_factory=list)  # (file, version) to remove from staging
    held_back: list[tuple[str, str]] = field(default_factory=list)  # latest version quarantined


def plan_staging(
    latest: dict[str, str],
    staged: dict[str, list[str]],
    quarantined: set[tuple[str, str]],
    *,
    keep_removed: bool,
) -> StagingPlan:
    """Compare the latest raw version of each file on SFTP with the staging zone.

    ``staged`` lists each file's staged versions, oldest first (normally one; a crash while staging
    can leave two). A latest version already staged stays and the others go. A latest version that
    was quarantined is held back: the newest staged (good) version stays until a good version
    arrives. Any other latest version is parsed and staged. Files gone from SFTP leave staging unless
    ``keep_removed``.
    """
    plan = StagingPlan()
    for name, version in sorted(latest.items()):
        have = staged.get(name, [])
        if version in have:
            keep = version
        elif (name, version) in quarantined:
            plan.held_back.append((name, version))
            keep = have[-1] if have else None
        else:
            # Older versions go only once this one is staged: if it turns out bad, they stay.
            plan.parse.append((name, version))
            continue
        plan.drop.extend((name, old) for old in have if old != keep and old != version)
    if not keep_removed:
        for name in sorted(staged.keys() - latest.keys()):
            plan.drop.extend((name, old) for old in staged[name])
    return plan


@dataclass(frozen=True)
class LoadPlan:
    """The warehouse side of a feed: which files' rows to delete and which versions to insert."""

    remove: list[str]  # files whose rows go (gone from staging)
    load: dict[str, str]  # file -> version to load (new, or replacing the loaded version)

    @property
    def empty(self) -> bool:
        return not self.remove and not self.load


def plan_load(staged: dict[str, str], loaded: dict[str, str]) -> LoadPlan:
    """Converge the loaded set of (file, version) to the staged set."""
    return LoadPlan(
        remove=sorted(loaded.keys() - staged.keys()),
        load={name: version for name, version in sorted(staged.items()) if loaded.get(name) != version},
    )


def iter_exchange_rate_rows(
    days: Iterable[date], rates: dict[str, Decimal]
) -> Iterator[tuple[str, str, str]]:
    """(date, currency code, rate) rows of a daily rates file: the demo's and the tests' feed data."""
    for day in days:
        for code, rate in sorted(rates.items()):
            yield day.isoformat(), code, f"{rate:.8f}"


def exchange_rates_csv(days: Iterable[date], rates: dict[str, Decimal]) -> bytes:
    """A daily exchange-rates file in the format of the built-in ``exchange_rates`` feed."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["rate_date", "currency_code", "rate_to_gbp"])
    writer.writerows(iter_exchange_rate_rows(days, rates))
    return out.getvalue().encode()
