-- The content of {table}'s stamped rows, summarised per range of {width} keys: how many rows, and
-- the sums of the two 31-bit halves of each row's 64-bit hash ({content}: hashtextextended of the
-- row's model columns as text, as every read of totes selects it beside the row). The lake keeps
-- the hash of the row it last observed per key (tasks/ingest/content.py computes the same sums);
-- only ranges that differ are read. One scan of the table on the server; one row per range
-- crosses the network. Sums are cast to bigint (10,000 rows sum to under 2^45) because ADBC reads
-- numeric as text. Rows with no last_updated are the unstamped read's, not compared here.
-- {key}, {table} and the columns in {content} come from tasks/schema.py, quoted; {width} is an integer.
with hashed as (
    select source.{key}::bigint as k, {content} as h
    from public.{table} as source
    where source.{key} is not null and source.last_updated is not null
)
select
    (k - ((k % {width}) + {width}) % {width}) / {width} as bucket,
    count(*) as rows,
    sum(h & 2147483647)::bigint as hash_low,
    sum((h >> 31) & 2147483647)::bigint as hash_high
from hashed
group by 1;
