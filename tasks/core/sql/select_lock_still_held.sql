-- Whether this session still holds one of totes' advisory locks (a two-int4 key: objsubid 2): a
-- writer asks before it records a manifest or commits a load.
select exists (
    select from pg_locks as held
    where held.locktype = 'advisory'
      and held.granted
      and held.pid = pg_backend_pid()
      and held.objsubid = 2
      and held.classid = $1::int4::oid
      and held.objid = $2::int4::oid
) as still_held;
