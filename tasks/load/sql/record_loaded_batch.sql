insert into _totes_loaded_batch (batch_id, row_counts) values ($1, $2::jsonb);
