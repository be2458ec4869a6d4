-- Whether {table}'s key leads a valid, unconditional btree index, the table's estimated rows, and
-- its lowest and highest key: read through that index when the table has at least $2 rows, else not
-- at all (without the index each would scan the table). Decides how the delete check counts keys
-- per range (tasks/ingest/deletes.py, ranges_to_count). {key} and {table} come from
-- tasks/schema.py, quoted; $1 is the key's name.
with layout as (
    select
        exists (
            select 1
            from pg_catalog.pg_index as i
            join pg_catalog.pg_class as index_class on index_class.oid = i.indexrelid
            join pg_catalog.pg_am as am on am.oid = index_class.relam
            join pg_catalog.pg_attribute as a on a.attrelid = i.indrelid and a.attnum = i.indkey[0]
            where i.indrelid = table_class.oid
                and a.attname = $1::name
                and am.amname = 'btree'
                and i.indisvalid
                and i.indpred is null
        ) as indexed,
        greatest(table_class.reltuples, 0)::bigint as rows_estimate
    from pg_catalog.pg_class as table_class
    where table_class.oid = 'public.{table}'::regclass
)
select
    indexed,
    rows_estimate,
    case
        when indexed and rows_estimate >= $2 then (select min(source.{key})::bigint from public.{table} as source)
    end as key_min,
    case
        when indexed and rows_estimate >= $2 then (select max(source.{key})::bigint from public.{table} as source)
    end as key_max
from layout;
