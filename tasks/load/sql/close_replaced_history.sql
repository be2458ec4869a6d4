-- History mode: end the current version of each key whose row the batch changed ($1: the batch's
-- time). The batch's rows of the dimension are in pg_temp._totes_history_source.
with closed as (
    update {history} as history
    set valid_to = $1, is_current = false
    from pg_temp._totes_history_source as batch
    where history.{key} = batch.{key} and history.is_current
        and ({history_columns}) is distinct from ({batch_columns})
    returning 1
)
select count(*) from closed;
