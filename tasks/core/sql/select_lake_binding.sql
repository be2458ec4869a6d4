-- The lake the warehouse is bound to (no row: none yet): tasks/core/lake_binding.py.
select lake_id, lake_url from public._totes_lake
