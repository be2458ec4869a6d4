-- A rebuild's swap: one table's rows, from the shadow (the rebuilding session's temporary schema) into
-- the warehouse's table of the same name, emptied just before. {columns}: the shadow table's columns.
insert into public.{table} ({columns})
select {columns} from pg_temp.{table};
