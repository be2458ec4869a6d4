-- History mode: the dimension's rows this batch merged (real rows only: not the placeholders of
-- inferred members, not rows deleted again), staged for close_replaced_history / open_new_history.
insert into pg_temp._totes_history_source ({columns})
select {columns} from {table}
where _batch_id = $1 and not _inferred and _deleted_at is null;
