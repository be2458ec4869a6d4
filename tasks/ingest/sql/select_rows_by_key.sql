-- The stamped rows of {table} whose key is in $1, an integer array as text: the children the lake
-- last saw referencing a parent key that is now deleted or changed (ON DELETE SET NULL and ON
-- UPDATE CASCADE rewrite them without touching their last_updated). One array, not one statement
-- per key.
select {columns}
from public.{table} as source
where source.{key} = any($1::text::integer[]) and source.last_updated is not null;
