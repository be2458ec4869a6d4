-- One fact row per source version, keyed by {key}. The current version of a fact is the one observed
-- last (current_fact_* order by _batch_id), so a version observed again — a row restored or reverted
-- to old content with its old stamp, a deleted row inserted again, a backfill — takes this batch's
-- id and is current again, undeleted, with the content read now. A version observed again within
-- the same batch (an overlapping re-read) changes nothing.
with inserted as (
    insert into {table} as target ({columns}, _batch_id)
    select {columns}, $1
    from pg_temp.{staging} as staged
    on conflict ({key}) do update
        set ({columns}, _batch_id, _deleted_at) = row({excluded_columns}, excluded._batch_id, null)
        where target._batch_id is distinct from excluded._batch_id
            or target._deleted_at is not null
            or ({target_columns}) is distinct from ({excluded_columns})
    returning 1
)
select count(*) as row_count from inserted;
