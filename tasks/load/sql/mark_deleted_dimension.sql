-- Mark the dimension rows whose source rows were hard-deleted (rows are kept: facts still join).
-- The lake keeps _deleted_at as a UTC timestamp without zone.
with marked as (
    update {table} as target
    set _deleted_at = deleted._deleted_at at time zone 'UTC'
    from pg_temp._totes_deleted as deleted
    where target.{key} = deleted.{key} and target._deleted_at is null
    returning 1
)
select count(*) from marked;
