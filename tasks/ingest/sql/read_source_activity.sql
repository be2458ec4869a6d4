-- Per source table ($1: their names, a text array as text), what the server counts of the writes to
-- it: rows inserted, updated and deleted since the statistics were reset, and the table's file (a
-- TRUNCATE, which no counter shows, gives it a new one); with when the statistics were reset. A
-- table whose signature has not moved since a run read it has not been written since.
-- Also each table's size as the planner estimates it (pg_class.reltuples, or the live rows counted
-- before its first vacuum or analyze), which fan-out weighs (tasks/ingest/fan_out_plan.py).
-- The signature is null (every table is then read) where the counters cannot be trusted now: on a
-- standby (replay moves no counter), with track_counts off, or unless every other session of this
-- database (totes's own aside) has been idle for 11 s: a backend publishes its counts when it goes
-- idle, at most once a second, and an idle one within 10 s, so a write committed by a session that
-- is busy or was busy a moment ago may not be counted yet. A session this role cannot see (no
-- pg_read_all_stats) counts as busy. On a busy source every table is read, as before; the last
-- column says why (the run logs it).
with recently_active as (
    select case when a.state is null
            then format('session %s is not visible to this role (grant it pg_read_all_stats)', a.pid)
            else format('session %s (%s) was %s at %s UTC', a.pid, coalesce(nullif(a.application_name, ''), 'unnamed'),
                a.state, to_char(a.state_change at time zone 'UTC', 'HH24:MI:SS'))
        end as why
    from pg_stat_activity as a
    where a.datname = current_database()
        and a.pid <> pg_backend_pid()
        and a.backend_type in ('client backend', 'logical replication worker', 'background worker')
        and coalesce(a.application_name, '') not like 'totes %'
        and (a.state is distinct from 'idle' or a.state_change is null
            or a.state_change > now() - interval '11 seconds')
    order by a.state_change desc nulls first
    limit 1
),
untrusted as (
    select case
        when current_setting('track_counts') <> 'on' then 'track_counts is off'
        when pg_is_in_recovery() then 'the source is a standby (replay moves no counter)'
        else (select 'another session was busy in the last 11 s: ' || why from recently_active)
    end as because
)
select
    s.relname::text as table_name,
    case when (select because from untrusted) is null
        then concat_ws(':', s.n_tup_ins, s.n_tup_upd, s.n_tup_del, pg_relation_filenode(s.relid),
            (select extract(epoch from d.stats_reset)::bigint from pg_stat_database as d
             where d.datname = current_database()))
    end as signature,
    greatest(c.reltuples, s.n_live_tup, 0)::bigint as estimated_rows,
    (select because from untrusted) as untrusted_because
from pg_stat_user_tables as s
join pg_class as c on c.oid = s.relid
where s.schemaname = 'public'
    and s.relname = any($1::text::text[])
order by 1;
