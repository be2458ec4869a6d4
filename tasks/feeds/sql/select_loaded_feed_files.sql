select file, version from _totes_feed_file where feed = $1;
