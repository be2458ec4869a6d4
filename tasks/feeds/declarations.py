"""File feeds: their declaration (``feeds.toml``, or the file ``TOTES_FEEDS_FILE`` names). Pure.

The feeds room: ``declarations.py`` (this), ``parsing.py`` (one file -> typed rows) and ``plans.py``
(what to fetch, stage and load) are pure; ``fetch.py``, ``stage.py`` and ``load.py`` are the Prefect
tasks, with ``sftp.py`` and ``store.py`` (the feed store in the lake) for their I/O.

A feed says where its files are (an SFTP directory and a glob), how to read them (CSV, JSON lines or
Parquet, with a typed column list), and which warehouse table their rows go to, under which natural
key. A column of the file may be resolved through a warehouse dimension on load (``lookups``), as
exchange rates name a currency by its ISO code while the fact keeps ``currency_id``.
"""

from __future__ import annotations

import re
import tomllib
from fnmatch import fnmatchcase
from importlib import resources
from pathlib import Path
from typing import Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tasks.schema import FEED_LINEAGE, FEED_TABLES, STAR_TABLES
from tasks.settings import describe_validation_error

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_DECIMAL_TYPE = re.compile(r"^decimal\((\d+),\s*(\d+)\)$")
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
        default=0,
        ge=0,
        description="leave files modified more recently than this for a later run (uploads in progress)",
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

    def source_path(self, file_name: str) -> str:
        """The file's path on SFTP relative to the server's base path: what lineage columns record."""
        return f"{self.directory.strip('/')}/{file_name}"


def load_feeds(path: Path | None = None) -> dict[str, Feed]:
    """The feeds declared in ``path`` (``TOTES_FEEDS_FILE``), or in the feeds file shipped with totes."""
    if path is None:
        text = resources.files("tasks.feeds").joinpath("feeds.toml").read_text(encoding="utf-8")
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
            msg = f"{where}: {describe_validation_error(error, subject='feed')}"
            raise FeedConfigError(msg) from None
    return feeds


def declared_feed(name: str, feeds_file: Path | None) -> Feed:
    """The feed ``name`` of the feeds file (None: the built-in one)."""
    feeds = load_feeds(feeds_file)
    if name not in feeds:
        msg = f"no feed named {name!r} in {feeds_file or 'the built-in feeds.toml'} (has {', '.join(feeds)})"
        raise KeyError(msg)
    return feeds[name]
