-- The key set of {table}, summarised per range of {width} keys: how many keys, their sum, and the
-- sum of a multiplicative hash of each (tasks/extract.py, key_buckets, computes the same from the
-- lake's known keys). Only ranges whose summaries differ are read key by key. The server scans
-- the table's primary-key column; only one row per range crosses the network.
-- {key} and {table} come from tasks/schema.py, quoted; {width} is an integer from the settings.
select
    (source.{key}::bigint - ((source.{key}::bigint % {width}) + {width}) % {width}) / {width} as bucket,
    count(*) as keys,
    sum(source.{key}::bigint)::bigint as key_sum,
    sum(((source.{key}::bigint * 2654435761) % 4294967311 + 4294967311) % 4294967311)::bigint as key_hash
from public.{table} as source
where source.{key} is not null
group by 1;
