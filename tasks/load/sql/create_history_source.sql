-- History mode: an empty temporary table shaped like the dimension's columns.
drop table if exists pg_temp._totes_history_source;
create temporary table _totes_history_source as select {columns} from {table} where false;
