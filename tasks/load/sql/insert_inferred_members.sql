-- Inferred members: ids the batch's facts refer to that the dimension lacks get a placeholder row
-- ("Unknown", _inferred = true), so every fact joins. The dimension's real row replaces it when it
-- arrives (upsert_dimension.sql). Returns the ids inferred.
with inferred as (
    insert into {table} ({key}, {columns}, _batch_id, _inferred)
    select referenced.id, {values}, $1, true
    from pg_temp._totes_referenced as referenced
    where not exists (select from {table} as present where present.{key} = referenced.id)
    returning {key}
)
select {key} from inferred order by 1;
