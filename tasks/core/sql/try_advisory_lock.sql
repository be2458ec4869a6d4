-- Take one of totes' session-level advisory locks if it is free (a two-int4 key: class, then key).
select pg_try_advisory_lock($1::int4, $2::int4);
