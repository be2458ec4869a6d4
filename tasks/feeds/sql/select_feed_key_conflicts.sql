-- Incoming rows whose natural key another file already holds: rows that stay in the table (of files
-- neither removed nor replaced), or rows of an incoming file that sorts first. The first such row of
-- each incoming file, and the file holding the key.
with accepted as (
    select * from pg_temp._totes_feed_resolved where not _rejected
),
replaced as (
    select distinct _source_file as file from accepted
    union
    select file from pg_temp._totes_feed_gone
),
kept_holder as (
    select accepted._source_file, accepted._source_line, kept._source_file as holder
    from accepted
    join public.{table} as kept on {key_match}
    where kept._source_file not in (select file from replaced)
),
incoming_holder as (
    select _source_file, _source_line,
           min(_source_file) over (partition by {key}) as holder
    from accepted
)
select distinct on (_source_file) _source_file, _source_line, holder
from (
    select * from kept_holder
    union all
    select * from incoming_holder where holder <> _source_file
) as conflicts
order by _source_file, _source_line;
