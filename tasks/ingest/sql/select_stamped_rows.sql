-- Every stamped row of {table} with a key, streamed: for the deep pass of a table whose content
-- index is keyed (a table with PII columns: the server cannot compute those hashes, so it cannot sum
-- them per range, and every row is compared in totes), and for the one-off rewrite of a content
-- index written under another scheme. Rows without last_updated are the unstamped read's.
select {columns}
from public.{table} as source
where source.{key} is not null and source.last_updated is not null;
