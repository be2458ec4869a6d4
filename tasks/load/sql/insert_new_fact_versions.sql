-- One fact row per source version, keyed by {key}: a version already in the warehouse is left as it
-- is, so loading a batch (or an overlapping re-read) twice changes nothing. Two exceptions, both a
-- newer observation of the version replacing the older: it comes back after it was marked deleted
-- (the source row was inserted again, with its old stamps), or it comes with other content under
-- the same version (read again by key).
with inserted as (
    insert into public.{table} as target ({columns}, _batch_id)
    select {columns}, $1
    from pg_temp.{staging} as staged
    on conflict ({key}) do update
        set ({columns}, _batch_id, _deleted_at) = row({excluded_columns}, excluded._batch_id, null)
        where target._deleted_at is not null
            or ({target_columns}) is distinct from ({excluded_columns})
    returning 1
)
select count(*) as row_count from inserted;
