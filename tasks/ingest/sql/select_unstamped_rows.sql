-- The rows of {table} with no last_updated: a delta (last_updated >= watermark) never reads them,
-- so they are read here and set aside, named, until the source stamps them.
select {columns}
from public.{table} as source
where source.last_updated is null;
