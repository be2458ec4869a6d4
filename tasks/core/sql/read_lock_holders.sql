-- The sessions holding one of totes' advisory locks (a two-int4 key: objsubid 2), by name.
select activity.pid, activity.application_name, to_char(activity.backend_start, 'YYYY-MM-DD HH24:MI:SS TZ')
from pg_locks as held
join pg_stat_activity as activity on activity.pid = held.pid
where held.locktype = 'advisory'
  and held.granted
  and held.objsubid = 2
  and held.classid = $1::int4::oid
  and held.objid = $2::int4::oid
order by activity.pid;
