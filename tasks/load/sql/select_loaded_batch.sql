select 1 from _totes_loaded_batch where batch_id = $1;
