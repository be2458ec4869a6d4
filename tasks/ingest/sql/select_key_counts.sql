-- The key set of {table} per range of {width} keys: how many keys and their sum, without the hash of
-- select_key_buckets.sql. Read when the server's counters account for every write to the table but
-- its deletes (tasks/ingest/watermark.py, key_scan_for): a range that lost a key then holds fewer,
-- and nothing unseen can have made up for it. Sums are cast back to bigint (ADBC reads numeric as
-- text). {key} and {table} come from tasks/schema.py, quoted; {width} is an integer from the settings.
select
    (k - ((k % {width}) + {width}) % {width}) / {width} as bucket,
    count(*) as keys,
    sum(k)::bigint as key_sum
from (
    select source.{key}::bigint as k
    from public.{table} as source
    where source.{key} is not null
) as keyed
group by 1;
