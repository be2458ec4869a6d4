-- The key set of {table} per range of {width} keys, as select_key_counts.sql gives it, counted range
-- by range through the index the key leads ($1 to $2: the ranges from the lowest key to the highest).
-- Each range is an index-only count: at scale 100 a table of 1.56 M keys took 83 ms, against 175 ms
-- grouped from a scan of every key. Only when read_key_index_layout.sql finds that index.
-- {key} and {table} come from tasks/schema.py, quoted; {width} is an integer from the settings.
select bucket, counted.keys, counted.key_sum
from generate_series($1::bigint, $2::bigint) as bucket,
    lateral (
        select count(*) as keys, sum(source.{key}::bigint)::bigint as key_sum
        from public.{table} as source
        where source.{key} >= bucket * {width} and source.{key} < (bucket + 1) * {width}
    ) as counted
where counted.keys > 0;
