-- Every stamped row of {table} with a key in [$1, $2): read for a key range whose summary differs
-- from the lake's when it holds keys the lake does not know (rows that arrived with old stamps: a
-- restore, a historical import, a deleted row inserted again), which no delta can read. At most
-- one range's width of rows. Rows without last_updated are the unstamped read's.
select {columns}
from public.{table} as source
where source.{key} >= $1 and source.{key} < $2 and source.last_updated is not null;
