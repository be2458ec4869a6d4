-- One fact row per source version: versions already in the warehouse are skipped, so loading a
-- batch (or an overlapping re-read) twice changes nothing.
with inserted as (
    insert into public.{table} ({columns}, _batch_id)
    select {columns}, $1
    from pg_temp.{staging} as staged
    on conflict ({key}) do nothing
    returning 1
)
select count(*) as row_count from inserted;
