-- The development ToteSys stamps its rows with UTC wall times (now() at time zone 'UTC') in
-- timestamp columns: make UTC the database's default TimeZone too, as for a real source. totes
-- refuses timestamp audit columns in a database whose TimeZone is not UTC, and initdb gives a new
-- server the machine's zone. A role that does not own the database leaves it as it is.
do $$
begin
    execute format('alter database %I set timezone to %L', current_database(), 'UTC');
exception when insufficient_privilege then
    raise notice 'the database''s TimeZone stays as it is: only its owner can set it';
end
$$;
