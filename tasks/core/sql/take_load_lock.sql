-- One loader per warehouse: held until the transaction ends ("totes" in ASCII).
select pg_advisory_xact_lock(500086105459);
