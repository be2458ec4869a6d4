-- Every version of {table} stamped at or after the watermark (closed lower bound: rows sharing the
-- watermark's timestamp are read again and deduplicated by (key, last_updated)).
select {columns}
from public.{table} as source
where source.last_updated >= $1;
