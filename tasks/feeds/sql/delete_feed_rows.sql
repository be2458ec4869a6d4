-- Rows of removed files and of files that arrive in a new version.
with deleted as (
    delete from public.{table}
    where _source_file in (select file from pg_temp._totes_feed_gone)
       or _source_file in (select _source_file from pg_temp._totes_feed_resolved where not _rejected)
    returning 1
)
select count(*) from deleted;
