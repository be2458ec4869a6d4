"""A year-old lake: a 15-minute schedule writes 35,000 batches a year. A cycle's listings of the lake
must not grow with its batches: each zone keeps a head, and listings start after it (S3
``StartAfter``). Counted here as the ListObjectsV2 requests the S3 server (moto, in this process)
receives during a no-op run, on a lake of 3 batches and on the same lake aged to 2,500 — more than
two pages of a full listing. (On the code before, every run listed every batch, several times.)"""

from __future__ import annotations

import logging

from bench.lake_age import age_lake
from tasks.core.lake import RAW, STAR, Lake


def list_requests(pipeline, caplog) -> int:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="werkzeug"):
        pipeline.run()
    return sum("list-type=2" in record.getMessage() for record in caplog.records)


def test_a_cycle_lists_no_more_of_a_long_lake_than_of_a_young_one(pipeline, caplog):
    pipeline.seed(scale=0.02)
    pipeline.run()
    pipeline.churn(orders=3)
    pipeline.run()
    young = list_requests(pipeline, caplog)
    age_lake(pipeline.lake_url, pipeline.warehouse_url, 2500)
    lake = Lake.from_url(pipeline.lake_url)
    assert len(lake.list_batches(RAW)) == len(lake.list_batches(STAR)) == 2500
    old = list_requests(pipeline, caplog)
    assert old == young, f"a no-op run listed the lake {old} times at 2,500 batches, {young} at 3"

    pipeline.churn(orders=3)
    pipeline.run()
    assert lake.newest_batch(RAW) == lake.newest_batch(STAR) == lake.list_batches(RAW)[-1]
    assert lake.list_batches(RAW, after=lake.list_batches(RAW)[-2]) == [lake.list_batches(RAW)[-1]]
    assert len(lake.list_batches(STAR, from_sequence=2400)) == 102
    pipeline.assert_warehouse_matches_source()
