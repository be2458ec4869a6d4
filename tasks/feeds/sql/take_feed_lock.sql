-- One loader per feed at a time: held until the transaction ends.
select pg_advisory_xact_lock(hashtextextended('totes feed ' || $1, 0));
