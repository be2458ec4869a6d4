-- History mode: a new current version for each key of the batch that has none now (new, changed, or
-- back after a delete). $1: the batch's time, $2: its id.
with opened as (
    insert into {history} ({columns}, valid_from, valid_to, is_current, _batch_id)
    select {batch_columns}, $1, null, true, $2
    from pg_temp._totes_history_source as batch
    where not exists (
        select 1 from {history} as history where history.{key} = batch.{key} and history.is_current
    )
    returning 1
)
select count(*) from opened;
