-- History mode (TOTES_DIMENSION_HISTORY): every version of a dimension's rows, as the batches saw
-- them: valid from the batch that brought the version, to the batch that replaced it or the time its
-- source row was found deleted. Made like the dimension (same column types), plus the validity.
create table if not exists {history} as
    select {columns},
        null::timestamp as valid_from,
        null::timestamp as valid_to,
        null::boolean as is_current,
        null::text as _batch_id
    from {table}
    where false;
alter table {history} alter column valid_from set not null;
alter table {history} alter column is_current set not null;
alter table {history} alter column _batch_id set not null;
create unique index if not exists {version_index} on {history} ({key}, _batch_id);
create unique index if not exists {current_index} on {history} ({key}) where is_current;
