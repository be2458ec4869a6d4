-- The logical-replication subscriptions of this database that copy a source table ($1: the source
-- tables' names) from a publisher: such rows arrive with the publisher's stamps, written in
-- transactions this server's pg_stat_activity never shows. Enabled or not: a disabled subscription
-- applies its backlog, stamped in the past, once it is enabled again.
-- Only the columns of pg_subscription every role may read (all but subconninfo).
-- copying: the source tables still in their initial copy (not 'r', ready).
-- applied_position: pg_stat_subscription.latest_end_lsn of the subscription's apply worker (relid is
-- null; a parallel apply worker reports none): the publisher's WAL position its last keepalive
-- carried, recorded only after every message before it has been applied (received_lsn is recorded
-- before a message is applied).
select
    s.subname::text as subscription,
    s.subslotname::text as slot,
    s.subpublications::text[] as publications,
    array_agg(c.relname::text order by c.relname) as tables,
    coalesce(array_agg(c.relname::text order by c.relname) filter (where r.srsubstate <> 'r'), '{}') as copying,
    (
        select min(w.latest_end_lsn)::text
        from pg_stat_subscription as w
        where w.subid = s.oid and w.relid is null
    ) as applied_position
from pg_subscription as s
inner join pg_subscription_rel as r on r.srsubid = s.oid
inner join pg_class as c on c.oid = r.srrelid
inner join pg_namespace as n on n.oid = c.relnamespace
where s.subdbid = (select d.oid from pg_database as d where d.datname = current_database())
    and n.nspname = 'public'
    and c.relname = any($1::text[])
group by s.oid, s.subname, s.subslotname, s.subpublications
order by s.subname;
