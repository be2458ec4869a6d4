-- The in-flight horizon: every row with last_updated before it is already committed and visible.
-- A transaction still open may commit rows stamped with its own start time (now()), so the horizon
-- is the oldest open transaction's start in this database, or the clock if none is open.
-- Read before any data so that a transaction committing in between is visible to the data reads.
with activity as (
    select
        a.xact_start,
        a.query = '<insufficient privilege>' as is_hidden
    from pg_stat_activity as a
    where a.datname = current_database()
        and a.pid <> pg_backend_pid()
        -- A role without pg_read_all_stats sees other users' sessions with NULL details.
        and (a.backend_type = 'client backend' or a.backend_type is null)
)
select
    (clock_timestamp() at time zone 'UTC')::timestamp as clock_at,
    (min(activity.xact_start) at time zone 'UTC')::timestamp as oldest_open_transaction_at,
    coalesce(bool_or(activity.is_hidden), false) as has_hidden_sessions
from activity;
