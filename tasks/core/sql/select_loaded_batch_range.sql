-- How many lake batches the warehouse has loaded, and the last of them (NULL: none).
select count(*) as batches, max(batch_id) as last_batch from public._totes_loaded_batch
