-- The warehouse's freshness: the latest batch it loaded, and when (no row: none yet).
select batch_id, loaded_at from public._totes_loaded_batch order by batch_id desc limit 1;
