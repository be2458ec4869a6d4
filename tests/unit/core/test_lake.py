"""Batch ids (tasks/core/lake.py)."""

from __future__ import annotations

from datetime import datetime

from tasks.core.lake import batch_sequence, new_batch_id


def test_batch_ids_sort_by_sequence():
    batch_id = new_batch_id(12, datetime(2024, 2, 23, 12, 0, 0))
    assert batch_id == "00000012-20240223T120000Z"
    assert batch_sequence(batch_id) == 12
