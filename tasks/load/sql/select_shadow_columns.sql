-- A rebuild's swap: every column of one table of the shadow ($1: its name), as the server names and
-- quotes them, in order: the copy into the warehouse's table names its columns, so it does not depend
-- on their order there.
select string_agg(quote_ident(attribute.attname), ', ' order by attribute.attnum) as columns
from pg_attribute as attribute
where attribute.attrelid = to_regclass('pg_temp.' || quote_ident($1))
    and attribute.attnum > 0
    and not attribute.attisdropped;
