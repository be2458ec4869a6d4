update pg_temp._totes_feed_resolved set _rejected = true where _source_file = $1;
