-- The indexes of one star table ($1: its name, resolved by the search path, or qualified), each as the
-- statement that drops it and the one that builds it again: a constraint's index (the primary key)
-- through ALTER TABLE, any other through DROP / CREATE INDEX. Names are the server's own, quoted by it.
select
    case
        when c.conname is not null
            then format('alter table %I.%I drop constraint %I', n.nspname, t.relname, c.conname)
        else format('drop index %I.%I', n.nspname, ic.relname)
    end as drop_statement,
    case
        when c.conname is not null
            then format('alter table %I.%I add constraint %I %s', n.nspname, t.relname, c.conname, pg_get_constraintdef(c.oid))
        else pg_get_indexdef(i.indexrelid)
    end as create_statement
from pg_index as i
join pg_class as t on t.oid = i.indrelid
join pg_class as ic on ic.oid = i.indexrelid
join pg_namespace as n on n.oid = t.relnamespace
left join pg_constraint as c on c.conindid = i.indexrelid and c.conrelid = i.indrelid
where i.indrelid = to_regclass($1)
order by ic.relname
