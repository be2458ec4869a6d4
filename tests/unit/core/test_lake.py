"""Batch ids and Parquet writing (tasks/core/lake.py), on a lake in a local folder."""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.core.lake import RAW, Lake, batch_sequence, new_batch_id


def test_batch_ids_sort_by_sequence():
    batch_id = new_batch_id(12, datetime(2024, 2, 23, 12, 0, 0))
    assert batch_id == "00000012-20240223T120000Z"
    assert batch_sequence(batch_id) == 12


@pytest.mark.parametrize(
    ("column_encoding", "encoding", "dictionary"),
    [
        (None, "RLE_DICTIONARY", True),
        ({"sales_order_id": "DELTA_BINARY_PACKED"}, "DELTA_BINARY_PACKED", False),
        ({"sales_order_id": "PLAIN"}, "PLAIN", False),
    ],
)
def test_distinct_columns_get_their_encoding_and_read_back_the_same(tmp_path, column_encoding, encoding, dictionary):
    lake = Lake.from_url(str(tmp_path))
    keys = pa.table({"sales_order_id": pa.array(range(1, 200_001, 3), pa.int32())})
    (written,) = lake.write_table(
        RAW, "_keys_sales_order", "00000001-20240101T000000Z", keys, column_encoding=column_encoding
    )
    column = pq.ParquetFile(tmp_path / written).metadata.row_group(0).column(0)
    assert encoding in column.encodings
    assert column.has_dictionary_page == dictionary
    assert lake.read_table([written], keys.schema).equals(keys)
