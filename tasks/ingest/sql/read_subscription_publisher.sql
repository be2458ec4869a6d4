-- On the primary, for one subscription of the source: this database's name, whether the
-- subscription's replication slot ($1) is a logical slot of this database (a subscription whose
-- slot is elsewhere copies another database), and which of the source tables it copies ($3) the
-- publications it subscribes to ($2) publish here.
select
    current_database()::text as database_name,
    exists (
        select 1
        from pg_replication_slots as slot
        where slot.slot_name = $1 and slot.slot_type = 'logical' and slot.database = current_database()
    ) as has_slot,
    coalesce(
        (
            select array_agg(distinct p.tablename::text)
            from pg_publication_tables as p
            where p.pubname = any($2::text[]) and p.schemaname = 'public' and p.tablename = any($3::text[])
        ),
        '{}'
    ) as published;
