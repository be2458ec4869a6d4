-- The keys of {table} in one range [$1, $2): read only for ranges whose summary differs.
select source.{key}
from public.{table} as source
where source.{key} >= $1 and source.{key} < $2;
