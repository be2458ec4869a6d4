-- History mode: the current version of each key found deleted in the source ends then.
with closed as (
    update {history} as history
    set valid_to = deleted._deleted_at, is_current = false
    from pg_temp._totes_deleted as deleted
    where history.{key} = deleted.{key} and history.is_current
    returning 1
)
select count(*) from closed;
