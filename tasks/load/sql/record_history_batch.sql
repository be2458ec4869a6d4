insert into _totes_history_batch (batch_id) values ($1) on conflict do nothing;
