select batch_id from _totes_history_batch;
