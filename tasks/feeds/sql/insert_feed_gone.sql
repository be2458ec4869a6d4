insert into pg_temp._totes_feed_gone (file) values ($1);
