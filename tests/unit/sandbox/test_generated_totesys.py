"""The development source's generated data (tasks/sandbox/generated_totesys.py): every source table,
in the model's exact schema, the same rows for the same scale and seed. No I/O."""

from __future__ import annotations

import pytest

from tasks.sandbox.generated_totesys import SeedSize, generate_tables
from tasks.schema import SOURCE_TABLES


def test_every_source_table_in_the_model_s_schema_and_the_same_for_the_same_seed():
    first = dict(generate_tables(0.02, seed=7))
    assert set(first) == set(SOURCE_TABLES)
    for name, table in first.items():
        assert table.cast(SOURCE_TABLES[name].schema).num_rows == table.num_rows > 0, name
        (key,) = SOURCE_TABLES[name].key
        assert table.column(key).null_count == 0
        assert len(set(table.column(key).to_pylist())) == table.num_rows, f"{name}: keys repeat"
    again = dict(generate_tables(0.02, seed=7))
    assert all(again[name].equals(first[name]) for name in first)
    other = dict(generate_tables(0.02, seed=8))
    assert not other["sales_order"].equals(first["sales_order"])


@pytest.mark.parametrize(
    ("scale", "sales_orders", "designs"),
    [(1, 11_000, 470), (0.5, 5_500, 235), (0.0001, 1, 10), (100, 1_100_000, 47_000)],
)
def test_the_size_grows_with_the_scale_from_a_floor(scale, sales_orders, designs):
    size = SeedSize.for_scale(scale)
    assert (size.sales_orders, size.designs) == (sales_orders, designs)


@pytest.mark.parametrize("scale", [0, -1])
def test_a_scale_that_is_not_positive_is_refused(scale):
    with pytest.raises(ValueError, match="--scale must be positive"):
        SeedSize.for_scale(scale)
