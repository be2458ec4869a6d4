select batch_id from _totes_loaded_batch order by batch_id;
