select batch_id from public._totes_history_batch;
