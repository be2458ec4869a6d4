-- A rebuild's swap: the fact's record-id sequence goes on after the ids copied from the shadow, as if
-- the warehouse had assigned them ($1: the table, qualified; $2: its record-id column).
select setval(pg_get_serial_sequence($1, $2), coalesce(max({record_id}), 0) + 1, false)
from public.{table};
