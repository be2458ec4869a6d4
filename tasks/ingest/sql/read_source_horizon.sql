-- The in-flight horizon: every row with last_updated before it is already committed and visible.
-- A transaction still open may commit rows stamped with its own start time (now()), so the horizon
-- is the oldest open transaction's start in this database, or the clock if none is open.
-- Every backend counts, not only client sessions: background workers (pg_cron jobs, logical
-- replication) write rows too. A prepared transaction (two-phase commit) has left its session; its
-- preparation time is all the server keeps of it.
-- Read before any data so that a transaction committing in between is visible to the data reads.
with activity as (
    select
        a.xact_start,
        a.query = '<insufficient privilege>' as is_hidden
    from pg_stat_activity as a
    where a.datname = current_database()
        and a.pid <> pg_backend_pid()
)
select
    (clock_timestamp() at time zone 'UTC')::timestamp as clock_at,
    (min(activity.xact_start) at time zone 'UTC')::timestamp as oldest_open_transaction_at,
    coalesce(bool_or(activity.is_hidden), false) as has_hidden_sessions,
    (
        select (min(p.prepared) at time zone 'UTC')::timestamp
        from pg_prepared_xacts as p
        where p.database = current_database()
    ) as oldest_prepared_transaction_at,
    pg_is_in_recovery() as is_standby,
    case when pg_is_in_recovery() then null else pg_current_wal_lsn()::text end as wal_position
from activity;
