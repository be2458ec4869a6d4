-- The key set of {table}, summarised per range of {width} keys: how many keys, their sum, and the
-- sum of a cubic hash of each, modulo the prime 2^31 - 1 (tasks/ingest/deletes.py, key_buckets, computes
-- the same from the lake's known keys; every product stays below 2^63). Only ranges whose
-- summaries differ are read key by key. The server scans the table's primary-key column; only one
-- row per range crosses the network. Sums are cast back to bigint (a range of 10,000 keys sums to
-- under 2^45) because ADBC reads numeric as text.
-- {key} and {table} come from tasks/schema.py, quoted; {width} is an integer from the settings.
with keyed as (
    select
        source.{key}::bigint as k,
        ((source.{key}::bigint % 2147483647) + 2147483647) % 2147483647 as r
    from public.{table} as source
    where source.{key} is not null
), powered as (
    select k, r, (r * r) % 2147483647 as r2
    from keyed
)
select
    (k - ((k % {width}) + {width}) % {width}) / {width} as bucket,
    count(*) as keys,
    sum(k)::bigint as key_sum,
    sum((((r2 * r) % 2147483647) * 48271 + r2 * 16807 + r) % 2147483647)::bigint as key_hash
from powered
group by 1;
