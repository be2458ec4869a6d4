-- The loaded set after this load: removed files leave it, loaded versions replace what was there.
delete from _totes_feed_file
where feed = $1
  and (file in (select file from pg_temp._totes_feed_gone)
       or file in (select _source_file from pg_temp._totes_feed_resolved where not _rejected));
insert into _totes_feed_file (feed, file, version, row_count)
select $1, _source_file, min(_source_version), count(*)
from pg_temp._totes_feed_resolved
where not _rejected
group by _source_file;
