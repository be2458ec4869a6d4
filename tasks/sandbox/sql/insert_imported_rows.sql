-- totes seed --from: rows of a pg_dump COPY block, staged as text, cast into the canonical table.
insert into public.{table} ({columns})
select {casts}
from pg_temp.{staging} as staged;
