-- The source tables ($1: their names, a text array as text) that exist but the role cannot SELECT:
-- information_schema shows such tables to nobody without a privilege on them, so the schema check
-- would call them missing.
select c.relname::text, current_user::text
from pg_class as c
join pg_namespace as n on n.oid = c.relnamespace
where n.nspname = 'public'
    and c.relname = any($1::text::text[])
    and not has_table_privilege(c.oid, 'SELECT')
order by 1;
