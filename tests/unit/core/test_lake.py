"""Batch ids and Parquet writing (tasks/core/lake.py), on a lake in a local folder."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.core.lake import RAW, Lake, batch_sequence, new_batch_id, row_groups_holding


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


@pytest.mark.parametrize(
    ("holding", "groups"),
    [
        ({"payment_id": [5]}, [0]),
        ({"payment_id": [2_500, 7_999]}, [2, 7]),
        ({"transaction_id": [10_001]}, []),  # past every group's maximum
        ({"payment_id": [], "transaction_id": [3_100]}, [3]),  # any column may hold one
        ({"payment_id": [999_999], "no_such_column": [1]}, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]),  # unknown: kept
    ],
)
def test_only_the_row_groups_whose_statistics_allow_a_value_are_read(tmp_path, holding, groups):
    lake = Lake.from_url(str(tmp_path))
    rows = pa.table({"payment_id": pa.array(range(10_000), pa.int32())})
    rows = rows.append_column("transaction_id", pa.array(range(10_000), pa.int32()))
    path = tmp_path / "index.parquet"
    pq.write_table(rows, path, row_group_size=1_000)
    wanted = {column: np.array(sorted(values), np.int64) for column, values in holding.items()}
    assert row_groups_holding(pq.ParquetFile(path).metadata, wanted) == groups
    read = pa.Table.from_batches(list(lake.iter_batches(["index.parquet"], rows.schema, holding=wanted)), rows.schema)
    assert read.num_rows == 1_000 * len(groups)
