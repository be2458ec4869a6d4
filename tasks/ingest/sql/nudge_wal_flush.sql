-- Run on the primary after its horizon: have it write out its WAL up to the horizon's position now.
-- A transaction id gives this transaction a commit record, which the WAL writer flushes within
-- wal_writer_delay, and everything before it with it. Without it, WAL no commit follows (an open
-- transaction's rows, a page pruned by a read) waits on a quiet primary for the background writer's
-- next snapshot, up to 15 s, and no replica can apply what was never sent. Nothing else is written;
-- a read-only role may run it.
select pg_current_xact_id()::text as transaction_id;
