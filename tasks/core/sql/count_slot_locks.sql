-- The connection slots of this database that totes runs hold as advisory locks (the local and
-- temporary Prefect API's slots: class, then a key from the first slot's on; objsubid 2 = two int4).
select count(*)
from pg_locks
where locktype = 'advisory' and granted and objsubid = 2 and classid = $1::int4::oid and objid >= $2::int4::oid;
