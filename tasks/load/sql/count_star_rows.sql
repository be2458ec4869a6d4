-- One star table for `totes status`: its rows, those marked deleted in the source, and the inferred
-- members among them (a dimension's placeholders for ids its facts name; 0 for a fact table).
select count(*) as row_count,
       count(*) filter (where _deleted_at is not null) as deleted,
       {inferred} as inferred
from public.{table};
