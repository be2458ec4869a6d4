-- The first row of each incoming file that a lookup could not resolve.
select distinct on (_source_file) _source_file, _source_line, _unresolved
from pg_temp._totes_feed_resolved
where _unresolved is not null and not _rejected
order by _source_file, _source_line;
