"""The extract's stream of one table's delta: what it holds and what it writes out as it goes."""

from __future__ import annotations

import pyarrow as pa

from tasks.core.manifests import RawTableEntry
from tasks.ingest.content import index_rows
from tasks.ingest.extract import DeltaStream
from tasks.ingest.source import SourceRows
from tests.unit.ingest.conftest import NOW, STAFF, staff_read


def reads(*sizes: int) -> list[SourceRows]:
    """Reads of staff rows of these sizes, with keys numbered on from one read to the next."""
    out, first = [], 0
    for size in sizes:
        batch = staff_read([None] * size)
        batch = batch.set_column(0, "staff_id", pa.array(range(first + 1, first + size + 1), pa.int32()))
        out.append(SourceRows(batch, None, index_rows(batch, STAFF)))
        first += size
    return out


def test_the_content_index_is_written_out_in_bounded_parts_in_the_order_read(monkeypatch):
    monkeypatch.setattr("tasks.ingest.extract.INDEX_ROWS_HELD", 5)
    written: list[list[int]] = []

    def spill(parts: list[pa.Table]) -> list[str]:
        written.append([k for part in parts for k in part.column("staff_id").to_pylist()])
        return [f"part-{len(written)}"]

    delta = DeltaStream(RawTableEntry(), NOW, "staff_id", spill_index=spill)
    rows = sum(batch.num_rows for batch in delta.fresh(iter(reads(3, 3, 6, 2)), "staff"))

    assert rows == delta.read == 14
    assert written == [[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]]
    assert delta.index_files == ["part-1", "part-2"]
    assert [k for part in delta.index for k in part.column("staff_id").to_pylist()] == [13, 14]


def test_a_small_read_holds_its_index_and_writes_nothing(monkeypatch):
    delta = DeltaStream(RawTableEntry(), NOW, "staff_id", spill_index=lambda parts: ["never"])
    list(delta.fresh(iter(reads(4)), "staff"))
    assert delta.index_files == []
    assert sum(part.num_rows for part in delta.index) == 4
