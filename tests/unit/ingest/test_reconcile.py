"""The content index's files in a lake (a local folder): written per batch, folded once they come
from many batches, whatever number of parts each batch wrote."""

from __future__ import annotations

import pyarrow as pa

from tasks.core.lake import Lake
from tasks.ingest.content import INDEX_BATCHES_BEFORE_FOLDING, index_schema
from tasks.ingest.reconcile import read_index, write_index, write_index_part
from tests.unit.ingest.conftest import STAFF


def entries(keys: list[int], hashes: list[int]) -> pa.Table:
    schema = index_schema(STAFF)
    return pa.table(
        {
            "staff_id": pa.array(keys, pa.int32()),
            "department_id": pa.array([1] * len(keys), pa.int32()),
            "_content_hash": pa.array(hashes, pa.int64()),
        },
        schema=schema,
    )


def test_parts_written_during_a_read_count_as_their_batch_not_as_batches_of_their_own(tmp_path):
    lake = Lake.from_url(str(tmp_path))
    files: list[str] = []
    for batch in range(1, INDEX_BATCHES_BEFORE_FOLDING + 1):
        batch_id = f"{batch:08d}"
        written = write_index_part(lake, STAFF, batch_id, [entries([batch], [batch])])
        written += write_index_part(lake, STAFF, batch_id, [entries([batch + 100], [batch])])
        files = write_index(lake, STAFF, batch_id, files, [entries([1], [batch])], written=written)
    assert len(files) == 3 * INDEX_BATCHES_BEFORE_FOLDING, "folded before the batches were many"

    files = write_index(lake, STAFF, "99999999", files, [entries([2], [-2])])

    assert len(files) == 1, "not folded once the files came from more batches than the limit"
    index = read_index(lake, STAFF, files)
    assert index.height == 2 * INDEX_BATCHES_BEFORE_FOLDING
    assert dict(zip(index["staff_id"], index["_content_hash"], strict=True))[1] == INDEX_BATCHES_BEFORE_FOLDING
    assert dict(zip(index["staff_id"], index["_content_hash"], strict=True))[2] == -2


def test_a_batch_that_wrote_nothing_leaves_the_index_as_it_was(tmp_path):
    lake = Lake.from_url(str(tmp_path))
    before = write_index(lake, STAFF, "00000001", None, [entries([1], [1])])
    assert write_index(lake, STAFF, "00000002", before, [entries([], [])]) == before
