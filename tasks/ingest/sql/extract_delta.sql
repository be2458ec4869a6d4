-- Every version of {table} stamped at or after the watermark (closed lower bound: rows sharing the
-- watermark's timestamp are read again and deduplicated by (key, last_updated)).
-- {watermark} is a timestamp literal the extractor formats from its own datetime, never data: a
-- bind parameter would make libpq buffer the whole result, while a parameterless query streams
-- through COPY.
select {columns}
from public.{table} as source
where source.last_updated >= {watermark}::timestamp;
