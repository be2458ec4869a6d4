-- A lock's session must not end while it is idle: the cycle lock is held on a connection that waits
-- idle for the whole cycle, which idle_session_timeout (PostgreSQL 14+) would end.
set idle_session_timeout = 0;
