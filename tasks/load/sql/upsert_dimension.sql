-- Type 1 dimension: the batch's rows replace the current ones, keyed by {key}. A row that arrives
-- for an inferred member fills it in; one that arrives for a deleted key (re-inserted in the
-- source) brings it back.
with upserted as (
    insert into {table} as target ({columns}, _batch_id)
    select {columns}, $1
    from pg_temp.{staging} as staged
    on conflict ({key}) do update
        set ({columns}, _batch_id, _inferred, _deleted_at) = row({excluded_columns}, excluded._batch_id, false, null)
        where target._inferred or target._deleted_at is not null
            or ({target_columns}) is distinct from ({excluded_columns})
    returning 1
)
select count(*) as row_count from upserted;
