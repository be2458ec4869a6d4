-- How far a standby has replayed the primary's WAL: it shows every transaction committed before it.
select pg_last_wal_replay_lsn() >= $1::pg_lsn as has_replayed, pg_last_wal_replay_lsn()::text as replayed
