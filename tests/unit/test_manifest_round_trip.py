"""Every field of every lake manifest survives its trip through JSON (a property test): a field that
``to_json`` forgets — as ``Horizon.has_hidden_sessions`` once was, which made fan-out children read
past transactions the cycle could not see — fails here, and so does a new field without a strategy."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.core.manifests import (
    FetchedFile,
    FetchState,
    FileSet,
    Horizon,
    QuarantineRecord,
    RawManifest,
    RawTableEntry,
    StarManifest,
)

pytestmark = pytest.mark.unit

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
