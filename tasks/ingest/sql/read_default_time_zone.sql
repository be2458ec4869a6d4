-- The TimeZone a new session of this database gets (pg_settings.reset_val: the server's setting,
-- or the database's or the role's, never what a session SETs, as totes' own reads do), and whether
-- it is UTC all year (the same wall time as UTC in mid-January and in mid-July): a writer's now()
-- stored in a timestamp (without time zone) column is the wall time of that zone.
select
    s.reset_val::text as time_zone,
    bool_and(timezone(s.reset_val, d.instant) = timezone('UTC', d.instant)) as is_utc,
    current_database()::text as database_name
from pg_settings as s
cross join (
    values (date_trunc('year', now()) + interval '14 days'), (date_trunc('year', now()) + interval '195 days')
) as d (instant)
where s.name = 'TimeZone'
group by s.reset_val;
