-- Bind the warehouse to a lake ($1: its id, $2: its URL, without credentials). One row: a rebuild
-- that adopts another lake replaces it.
insert into public._totes_lake (lake_id, lake_url) values ($1, $2)
on conflict (singleton) do update
    set lake_id = excluded.lake_id, lake_url = excluded.lake_url, bound_at = now()
