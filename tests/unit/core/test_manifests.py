"""The typed lake manifests (tasks/core/manifests.py).

Every manifest of a lake written before they were typed (format 1, the fixture
``tests/fixtures/lake_format_1``) still reads, and what they write reads back the same.

Every field of every lake manifest survives its trip through JSON (property tests): a field that
``to_json`` forgets — as ``Horizon.has_hidden_sessions`` once was, which made fan-out children read
past transactions the cycle could not see — fails here, and so does a new field without a strategy."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.core.manifests import (
    BEGINNING_OF_TIME,
    MANIFEST_FORMAT,
    FetchedFile,
    FetchState,
    FileSet,
    Horizon,
    ManifestFormatError,
    QuarantineRecord,
    RawManifest,
    RawTableEntry,
    StarManifest,
)
from tasks.schema import SOURCE_TABLES, STAR_TABLES
from tests.conftest import REPO

LAKE = REPO / "tests" / "fixtures" / "lake_format_1" / "lake"
NOW = datetime(2024, 2, 23, 12, 0, 0)

# --- format 1: the fixture lake ----------------------------------------------------------------


def manifests(zone: str) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted((LAKE / zone / "_batches").glob("*.json"))]


def test_the_fixture_is_format_1():
    assert manifests("raw") and manifests("star")
    assert all("format" not in data for data in manifests("raw") + manifests("star"))


def test_every_format_1_raw_manifest_reads_with_all_its_fields():
    for data in manifests("raw"):
        manifest = RawManifest.from_json(data)
        assert manifest.batch_id == data["batch_id"]
        assert set(manifest.tables) == set(SOURCE_TABLES)
        for name, entry in manifest.tables.items():
            old = data["tables"][name]
            assert entry.data == FileSet(old["files"], old["rows"])
            assert entry.watermark == datetime.fromisoformat(old["watermark"])
            assert {(k, ts.isoformat(), digest) for k, ts, digest in entry.overlap_keys} == {
                (k, ts, "") for k, ts in old["overlap_keys"]
            }
            assert (entry.keys, entry.key_summary, entry.key_width) == (
                old["keys"],
                old["key_summary"],
                old["key_width"],
            )
            assert entry.deleted == FileSet.from_json(old.get("deleted"))
            assert entry.rejected == FileSet.from_json(old.get("rejected"))
            for path in [*entry.data.files, *(entry.keys or []), *(entry.key_summary or [])]:
                assert (LAKE / path).is_file(), path
        assert manifest.horizon is not None
        assert manifest.horizon.clock_at == datetime.fromisoformat(data["horizon"]["clock_at"])
    entries = [entry for data in manifests("raw") for entry in RawManifest.from_json(data).tables.values()]
    assert any(entry.deleted for entry in entries) and any(entry.rejected for entry in entries)
    assert any(entry.overlap_keys for entry in entries)


def test_every_format_1_star_manifest_reads_with_all_its_fields():
    for data in manifests("star"):
        manifest = StarManifest.from_json(data)
        assert set(manifest.tables) == set(STAR_TABLES)
        assert manifest.state == data["state"]
        expected_range = tuple(date.fromisoformat(d) for d in data["date_range"]) if data["date_range"] else None
        assert manifest.date_range == expected_range
        assert {name: entry.to_json() for name, entry in manifest.quarantined.items()} == data["quarantined"]
        assert {name: entry.to_json() for name, entry in manifest.deleted.items()} == data["deleted"]
        assert manifest.warnings == data["warnings"]
    starred = [StarManifest.from_json(data) for data in manifests("star")]
    assert any(m.quarantined for m in starred) and any(m.deleted for m in starred) and any(m.warnings for m in starred)


@pytest.mark.parametrize("cls", [RawManifest, StarManifest])
def test_what_is_written_reads_back_the_same_and_carries_the_format(cls):
    zone = "raw" if cls is RawManifest else "star"
    for data in manifests(zone):
        manifest = cls.from_json(data)
        written = manifest.to_json()
        assert written["format"] == MANIFEST_FORMAT
        assert cls.from_json(json.loads(json.dumps(written, default=str))) == manifest


def test_a_table_entry_without_delete_detection_reads_and_writes_no_key_set():
    entry = RawTableEntry.from_json(
        {"files": ["raw/x/batch=1/part.parquet"], "rows": 3, "watermark": "2024-01-01T00:00:00", "overlap_keys": []}
    )
    assert entry.keys is None and entry.key_width is None
    assert "keys" not in entry.to_json()
    assert entry.has_changes(None)


def test_a_manifest_of_a_newer_format_is_refused_clearly():
    data = manifests("raw")[0] | {"format": MANIFEST_FORMAT + 1}
    with pytest.raises(ManifestFormatError, match="upgrade totes"):
        RawManifest.from_json(data)


def test_feed_fetch_state_and_quarantine_records_of_format_1_read():
    state_path = LAKE / "files" / "state" / "exchange_rates.json"
    old = json.loads(state_path.read_text())
    state = FetchState.from_json(old)
    assert set(state.files) == set(old)
    assert FetchState.from_json(state.to_json()) == state
    records = [
        QuarantineRecord.from_json(json.loads(p.read_text())) for p in (LAKE / "files" / "quarantine").rglob("*.json")
    ]
    assert records and all(r.stage == "parse" and r.problem and r.version for r in records)
    assert QuarantineRecord.from_json(records[0].to_json()) == records[0]


# --- examples through JSON ----------------------------------------------------------------------


def test_watermark_state_round_trips_through_json():
    state = RawTableEntry(watermark=NOW, overlap_keys=frozenset({(3, NOW, "a1b2"), (4, NOW, "")}))
    assert RawTableEntry.from_json(state.to_json()) == state
    assert RawTableEntry().watermark == BEGINNING_OF_TIME


def test_a_horizon_with_a_prepared_transaction_round_trips_through_json():
    horizon = Horizon(
        clock_at=NOW, oldest_open_transaction_at=None, oldest_prepared_transaction_at=NOW - timedelta(minutes=2)
    )
    assert Horizon.from_json(horizon.to_json()) == horizon


# --- every field: property tests ----------------------------------------------------------------
names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)
paths = st.lists(names.map(lambda n: f"raw/{n}/batch=1/part-00000-{n}.parquet"), max_size=3)
moments = st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(2100, 1, 1))
keys = st.integers(min_value=-(2**31), max_value=2**31 - 1)
file_sets = st.builds(FileSet, files=paths, rows=st.integers(min_value=0, max_value=10**9))
horizons = st.builds(
    Horizon,
    clock_at=moments,
    oldest_open_transaction_at=st.none() | moments,
    has_hidden_sessions=st.booleans(),
    oldest_prepared_transaction_at=st.none() | moments,
    activity=st.dictionaries(names, st.text(alphabet="0123456789:", max_size=30), max_size=3),
    table_rows=st.dictionaries(names, st.integers(min_value=0, max_value=10**10), max_size=3),
)
batch_ids = st.integers(min_value=1, max_value=99_999_999).map(lambda n: f"{n:08d}-20261207T070000Z")

# Per field of RawTableEntry, a strategy; the key set's three fields go together (see key_sets).
ENTRY_FIELDS = {
    "data": file_sets,
    "watermark": moments,
    "overlap_keys": st.frozensets(st.tuples(st.none() | keys, moments, st.text(max_size=24)), max_size=4),
    "deleted": st.none() | file_sets,
    "rejected": st.none() | file_sets,
    "unstamped_keys": st.frozensets(keys, max_size=4),
    "conflicting_keys": st.frozensets(keys, max_size=4),
    "content": st.none() | paths,
    "content_scheme": st.sampled_from(["source", "keyed"]),
    "activity": st.none() | st.text(alphabet="0123456789:", max_size=30),
    "read_at": st.none() | moments,
    "keys_checked_at": st.none() | moments,
}
KEY_SET_FIELDS = {"keys", "key_summary", "key_width"}
key_sets = st.none() | st.tuples(st.none() | paths, st.none() | paths, st.integers(min_value=1, max_value=10**6))


@st.composite
def entries(draw: st.DrawFn) -> RawTableEntry:
    fields = {name: draw(strategy) for name, strategy in ENTRY_FIELDS.items()}
    key_set = draw(key_sets)
    if key_set is not None:
        fields |= dict(zip(("keys", "key_summary", "key_width"), key_set, strict=True))
    return RawTableEntry(**fields)


def through_json(data: dict) -> dict:
    """As the lake writes and reads a manifest."""
    return json.loads(json.dumps(data, indent=1, sort_keys=True, default=str))


def test_every_field_of_a_table_entry_has_a_strategy():
    assert {f.name for f in dataclasses.fields(RawTableEntry)} == set(ENTRY_FIELDS) | KEY_SET_FIELDS


@given(horizons)
def test_a_horizon_round_trips(horizon: Horizon):
    assert Horizon.from_json(through_json(horizon.to_json())) == horizon


@settings(max_examples=60)
@given(entries())
def test_a_table_entry_round_trips(entry: RawTableEntry):
    assert RawTableEntry.from_json(through_json(entry.to_json())) == entry


@settings(max_examples=30)
@given(
    batch_ids,
    st.dictionaries(names, entries(), max_size=3),
    st.none() | horizons,
    st.datetimes(timezones=st.just(UTC)),
)
def test_a_raw_manifest_round_trips(batch_id, tables, horizon, written_at):
    manifest = RawManifest(batch_id=batch_id, tables=tables, horizon=horizon, written_at=written_at)
    assert RawManifest.from_json(through_json(manifest.to_json())) == manifest


@settings(max_examples=30)
@given(
    batch_ids,
    st.dictionaries(names, file_sets, max_size=3),
    st.dictionaries(names, paths, max_size=3),
    st.none() | st.tuples(st.dates(), st.dates()),
    st.dictionaries(names, file_sets, max_size=2),
    st.dictionaries(names, file_sets, max_size=2),
    st.lists(st.text(max_size=40), max_size=3),
    st.datetimes(timezones=st.just(UTC)),
)
def test_a_star_manifest_round_trips(batch_id, tables, state, date_range, quarantined, deleted, warnings, written_at):
    manifest = StarManifest(
        batch_id=batch_id,
        tables=tables,
        state=state,
        date_range=date_range,
        quarantined=quarantined,
        deleted=deleted,
        warnings=warnings,
        written_at=written_at,
    )
    assert StarManifest.from_json(through_json(manifest.to_json())) == manifest


fetched = st.builds(
    FetchedFile,
    size=st.integers(min_value=0),
    mtime=st.integers(min_value=0),
    sha256=st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
    version=st.text(max_size=20),
    recheck=st.booleans(),
)


@given(st.builds(FetchState, files=st.dictionaries(names, fetched, max_size=3)))
def test_a_feed_fetch_state_round_trips(state: FetchState):
    assert FetchState.from_json(through_json(state.to_json())) == state


@given(
    st.builds(
        QuarantineRecord,
        feed=names,
        file=names,
        version=st.text(max_size=20),
        problem=st.text(max_size=60),
        stage=st.sampled_from(["parse", "load"]),
        line=st.none() | st.integers(min_value=1),
        column=st.none() | names,
        quarantined_at=st.text(max_size=30),
    )
)
def test_a_quarantine_record_round_trips(record: QuarantineRecord):
    assert QuarantineRecord.from_json(through_json(record.to_json())) == record
