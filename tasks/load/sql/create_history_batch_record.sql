-- History mode: the batches whose dimension rows the history tables hold. A batch loaded while
-- history mode was off is missing here: the history is then built again from the lake.
create table if not exists _totes_history_batch (
    batch_id text primary key
);
