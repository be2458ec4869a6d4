-- The incoming rows of a feed in the target table's terms: lookups resolved through warehouse
-- dimensions ({lookup_joins}); _unresolved names the value that found no dimension row.
-- Identifiers come from the feed declaration, checked against tasks/schema.py, and are quoted.
create temporary table _totes_feed_resolved on commit drop as
select {target_columns},
       incoming._source_file, incoming._source_version, incoming._source_line,
       {unresolved} as _unresolved,
       false as _rejected
from pg_temp._totes_feed_incoming as incoming
{lookup_joins};
