-- A rebuild's swap: the batches the shadow loaded become the warehouse's record, loaded now (when its
-- readers first see them).
insert into public._totes_loaded_batch (batch_id, loaded_at, row_counts)
select batch_id, now(), row_counts from pg_temp._totes_loaded_batch;
