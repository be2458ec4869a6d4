"""Parsing one feed file (CSV, JSON lines or Parquet) into typed rows with lineage columns. Pure.

A file that cannot be loaded as it is raises :class:`FeedFileError`, naming the file, the line and
the column where known: the stage quarantines that version and the feed's other files flow.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Callable, Iterable
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.core.manifests import REFUSED_AT_PARSE, QuarantineRecord
from tasks.feeds.declarations import Feed

# Object names in the lake are built from file names: keep them to what every store accepts.
_SAFE_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=@-]{0,199}$")


class FeedFileError(ValueError):
    """A file that cannot be loaded as it is. Names the file, the line (1-based, the header being
    line 1 of a CSV file) and the column where known, and the problem."""

    def __init__(self, file: str, problem: str, *, line: int | None = None, column: str | None = None):
        self.file, self.problem, self.line, self.column = file, problem, line, column
        where = "".join(part for part in (f" line {line}" if line else "", f", column {column}" if column else ""))
        super().__init__(f"{file}{where}: {problem}")

    def quarantine_record(self, *, feed: str, file: str, version: str) -> QuarantineRecord:
        """The record that keeps this version of ``file`` out of staging (refused at parse time)."""
        return QuarantineRecord(
            feed=feed,
            file=file,
            version=version,
            problem=self.problem,
            stage=REFUSED_AT_PARSE,
            line=self.line,
            column=self.column,
        )


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
        values: list[Any] = []
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


def _converter(arrow: pa.DataType) -> Callable[[str], Any]:
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
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -scale and value != value.quantize(Decimal(1).scaleb(-scale)):
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
