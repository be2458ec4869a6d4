-- The in-flight horizon: every row with last_updated before it is already committed and visible.
-- A transaction still open may commit rows stamped with its own start time (now()), so the horizon
-- is the oldest open transaction's start in this database, or the clock if none is open.
-- Every backend counts, not only client sessions: background workers (pg_cron jobs, logical
-- replication) write rows too. A prepared transaction (two-phase commit) has left its session; its
-- preparation time is all the server keeps of it.
-- Read before any data so that a transaction committing in between is visible to the data reads.
-- wal_position (a primary's; a replica reads only once it has applied that far): the WAL *insert*
-- position, read after pg_stat_activity (the aggregate consumes it first), so every transaction not
-- seen open has its commit record before it. pg_current_wal_lsn() (written) can lag a commit that is
-- already visible when synchronous_commit is off. At the very start of a page the insert position
-- points past the page header (24 bytes; 40 on a segment's first page), where no record ends and a
-- replica that has applied everything stops at the page boundary: then that boundary.
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
    case when pg_is_in_recovery() then null else (
        select (w.inserted - case
            when (w.inserted - '0/0'::pg_lsn) % pg_size_bytes(current_setting('wal_segment_size')) = 40 then 40
            when (w.inserted - '0/0'::pg_lsn) % current_setting('wal_block_size')::numeric = 24 then 24
            else 0
        end)::text
        from (select pg_current_wal_insert_lsn() as inserted) as w
    ) end as wal_position
from activity;
