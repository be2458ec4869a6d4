-- Files whose rows leave the feed table: removed from staging.
create temporary table _totes_feed_gone (file text primary key) on commit drop;
