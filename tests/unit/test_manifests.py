"""The typed lake manifests: every manifest of a lake written before they were typed (format 1, the
fixture ``tests/fixtures/lake_format_1``) still reads, and what they write reads back the same."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

import pytest

from tasks.core.manifests import (
    MANIFEST_FORMAT,
    FetchState,
    FileSet,
    ManifestFormatError,
    QuarantineRecord,
    RawManifest,
    RawTableEntry,
    StarManifest,
)
from tasks.schema import SOURCE_TABLES, STAR_TABLES

pytestmark = pytest.mark.unit

LAKE = Path(__file__).parents[1] / "fixtures" / "lake_format_1" / "lake"


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
