"""A year-old lake: a 15-minute schedule writes 35,000 batches a year. A cycle's listings of the lake
must not grow with its batches: each zone keeps a head, and listings start after it (S3
``StartAfter``). Counted here as the ListObjectsV2 requests the S3 server (moto, in this process)
receives during a no-op run, on a lake of 3 batches and on the same lake aged to 1,100 — more than
a page of a full listing (1,000 keys), so a full listing costs more requests than on the young lake.
(On the code before, every run listed every batch, several times.) Aging to 2,500, as this test did
before, spent most of its minute writing manifests through the S3 server, and caught nothing more."""

from __future__ import annotations

import logging

from bench.lake_age import age_lake
from tasks.core.lake import RAW, STAR, Lake


class _ListRequests(logging.Handler):
    """Counts the ListObjectsV2 requests in the S3 server's request log (werkzeug's, in this process)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += "list-type=2" in record.getMessage()


def list_requests(pipeline) -> int:
    requests = _ListRequests()
    server_log = logging.getLogger("werkzeug")
    level = server_log.level
    server_log.addHandler(requests)
    server_log.setLevel(logging.INFO)
    try:
        pipeline.run()
    finally:
        server_log.removeHandler(requests)
        server_log.setLevel(level)
    return requests.count


def test_a_cycle_lists_no_more_of_a_long_lake_than_of_a_young_one(pipeline):
    pipeline.seed(scale=0.02)
    pipeline.run()
    pipeline.churn(orders=3)
    pipeline.run()
    young = list_requests(pipeline)
    age_lake(pipeline.lake_url, pipeline.warehouse_url, 1100)
    lake = Lake.from_url(pipeline.lake_url)
    assert len(lake.list_batches(RAW)) == len(lake.list_batches(STAR)) == 1100
    old = list_requests(pipeline)
    assert young > 0, "no listing seen: the S3 server's request log did not reach the test"
    assert old == young, f"a no-op run listed the lake {old} times at 1,100 batches, {young} at 3"

    # A head left behind (a crash between a manifest and its head) costs one full listing, once.
    lake.write_head(RAW, lake.list_batches(RAW)[10])
    lake.write_head(STAR, lake.list_batches(STAR)[10])
    assert list_requests(pipeline) > young
    assert list_requests(pipeline) == young

    pipeline.churn(orders=3)
    pipeline.run()
    assert lake.newest_batch(RAW) == lake.newest_batch(STAR) == lake.list_batches(RAW)[-1]
    assert lake.list_batches(RAW, after=lake.list_batches(RAW)[-2]) == [lake.list_batches(RAW)[-1]]
    assert len(lake.list_batches(STAR, from_sequence=1000)) == 102
    pipeline.assert_warehouse_matches_source()
