-- Type 1 dimension: the batch's rows replace the current ones, keyed by {key}.
with upserted as (
    insert into public.{table} as target ({columns}, _batch_id)
    select {columns}, $1
    from pg_temp.{staging} as staged
    on conflict ({key}) do update
        set ({columns}, _batch_id) = row({excluded_columns}, excluded._batch_id)
        where ({target_columns}) is distinct from ({excluded_columns})
    returning 1
)
select count(*) as row_count from upserted;
