-- Mark the latest version of each fact whose source row was hard-deleted (the one observed last:
-- batch order, then last_updated); earlier versions stay as they were (history), nothing is removed. The current_fact_* views show the undeleted state.
with latest as (
    select distinct on (fact.{key}) fact.{record_id} as record_id, deleted._deleted_at
    from {table} as fact
    join pg_temp._totes_deleted as deleted on deleted.{key} = fact.{key}
    order by fact.{key}, fact._batch_id desc, fact.last_updated_date desc, fact.last_updated_time desc,
        fact.{record_id} desc
), marked as (
    update {table} as target
    set _deleted_at = latest._deleted_at at time zone 'UTC'
    from latest
    where target.{record_id} = latest.record_id and target._deleted_at is null
    returning 1
)
select count(*) from marked;
