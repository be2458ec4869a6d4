-- Which database a connection reaches: its cluster's system identifier (pg_control_system(), which
-- every role may run; a physical standby has its primary's), the database's name and oid (a
-- standby's databases are its primary's, oids included).
select
    (pg_control_system()).system_identifier::text as system_identifier,
    d.datname::text as database_name,
    d.oid::bigint as database_oid
from pg_database as d
where d.datname = current_database();
