"""The load's SQL (tasks/load/statements.py): built from our schema only, identifiers quoted, the
warehouse's tables qualified, the rebuild's shadow columns named on both sides."""

from __future__ import annotations

from tasks.load.statements import (
    inferred_members_statement,
    insert_from_shadow_statement,
    mark_deleted_statement,
    rebuilt_tables,
    record_id_sequence_statement,
    truncate_rebuilt_statement,
)
from tasks.schema import STAR_TABLES


def test_inferred_members_fill_not_null_columns_with_unknown_and_quote_identifiers():
    sql = inferred_members_statement("dim_location")
    assert 'insert into "dim_location" ("location_id", "address_line_1", "address_line_2"' in sql
    assert "select referenced.id, 'Unknown', null, null, 'Unknown'" in sql
    assert 'order by fact."sales_order_id", fact._batch_id desc, fact.last_updated_date desc' in mark_deleted_statement(
        "fact_sales_order"
    )
    assert 'where target."design_id" = deleted."design_id"' in mark_deleted_statement("dim_design")


def test_the_swap_empties_the_star_tables_and_the_batch_record_and_in_history_mode_the_history():
    assert rebuilt_tables(history=False) == list(STAR_TABLES)
    with_history = rebuilt_tables(history=True)
    assert {"dim_staff_history", "dim_transaction_history", "_totes_history_batch"} <= set(with_history)
    assert "dim_date_history" not in with_history
    statement = truncate_rebuilt_statement(rebuilt_tables(history=False))
    tables = ", ".join(f'public."{table}"' for table in [*STAR_TABLES, "_totes_loaded_batch"])
    assert statement.endswith(f"truncate table {tables}")
    assert "restart identity" not in statement


def test_the_copy_names_the_columns_and_the_sequence_goes_on_after_the_ids_copied():
    sql = insert_from_shadow_statement("dim_staff", '"staff_id", "first_name"')
    assert 'insert into public."dim_staff" ("staff_id", "first_name")' in sql
    assert 'select "staff_id", "first_name" from pg_temp."dim_staff"' in sql
    statement, parameters = record_id_sequence_statement("fact_payment")
    assert 'coalesce(max("payment_record_id"), 0) + 1, false)' in statement
    assert 'from public."fact_payment"' in statement
    assert parameters == ('public."fact_payment"', "payment_record_id")
