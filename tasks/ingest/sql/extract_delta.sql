-- Every version of {table} stamped at or after the watermark (closed lower bound: rows sharing the
-- watermark's timestamp are read again and deduplicated by (key, last_updated)).
-- {watermark} is an untyped UTC timestamp literal ('... +00'), read as the column's own type: a
-- timestamptz column compares in UTC whatever the session's TimeZone, a timestamp column ignores
-- the offset. The extractor formats it from its own datetime, never from data: a bind parameter
-- would make libpq buffer the whole result, while a parameterless query streams through COPY.
select {columns}
from public.{table} as source
where source.last_updated >= {watermark};
