-- Every column of the source's public schema, to compare with the model (schema drift).
select table_name::text, column_name::text, data_type::text
from information_schema.columns
where table_schema = 'public'
order by table_name, ordinal_position;
