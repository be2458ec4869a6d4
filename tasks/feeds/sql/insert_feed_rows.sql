with inserted as (
    insert into public.{table} ({columns}, _source_file, _source_version, _source_line)
    select {columns}, _source_file, _source_version, _source_line
    from pg_temp._totes_feed_resolved
    where not _rejected
    returning 1
)
select count(*) from inserted;
