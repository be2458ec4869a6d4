-- After a bulk load with explicit ids, new rows must get ids past the largest one.
select setval(pg_get_serial_sequence('public.{table}', '{key}'), coalesce(max({quoted_key}), 0) + 1, false)
from public.{table};
