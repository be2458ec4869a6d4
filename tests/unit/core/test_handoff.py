"""The handoff between a transform and the load beside it: parts arrive grouped by table in the
order they were built, the load sees the manifest only at the end, a failed transform makes the
load's read fail, and a load that gives up never leaves the transform blocked."""

from __future__ import annotations

import threading

import pyarrow as pa
import pytest

from tasks.core.handoff import CAPACITY, StarHandoff, TransformFailed
from tasks.core.manifests import StarManifest


def part(*values: int) -> pa.Table:
    return pa.table({"id": pa.array(values, pa.int32())})


def produce(handoff: StarHandoff, parts: list[tuple[str, pa.Table]], *, fail: bool = False) -> threading.Thread:
    def run() -> None:
        for table, rows in parts:
            handoff.put(table, rows)
        if fail:
            handoff.fail("OSError: the lake went away")
        else:
            handoff.finish(StarManifest(batch_id=handoff.batch_id, tables={}))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_parts_arrive_grouped_by_table_then_the_manifest():
    handoff = StarHandoff("b1")
    parts = [("fact_a", part(1)), ("fact_a", part(2, 3)), ("dim_b", part(4)), ("fact_a", part(5))]
    producer = produce(handoff, parts)

    seen = [(table, [v for batch in rows for v in batch.column("id").to_pylist()]) for table, rows in handoff.tables()]

    assert seen == [("fact_a", [1, 2, 3]), ("dim_b", [4]), ("fact_a", [5])]
    assert handoff.manifest().batch_id == "b1"
    producer.join(timeout=5)
    assert not producer.is_alive()


def test_the_manifest_is_not_there_before_the_transform_finished():
    handoff = StarHandoff("b1")
    with pytest.raises(RuntimeError, match="before the transform finished"):
        handoff.manifest()


def test_a_failed_transform_fails_the_load_part_way():
    handoff = StarHandoff("b1")
    produce(handoff, [("fact_a", part(1)), ("fact_a", part(2))], fail=True)
    read = []
    with pytest.raises(TransformFailed, match="the lake went away"):
        for _, rows in handoff.tables():
            read.extend(rows)
    assert len(read) == 2


def test_a_load_that_gives_up_leaves_the_transform_free():
    handoff = StarHandoff("b1")
    parts = [("fact_a", part(i)) for i in range(CAPACITY * 5)]
    producer = produce(handoff, parts)
    tables = handoff.tables()
    _, rows = next(tables)
    next(rows)  # one part read, then the load stops
    handoff.abandon()
    producer.join(timeout=5)
    assert not producer.is_alive(), "the transform stayed blocked on a load that had given up"
