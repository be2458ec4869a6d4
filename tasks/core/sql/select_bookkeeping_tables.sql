-- Whether the warehouse has totes's bookkeeping yet (a fresh warehouse has nothing until its first load).
select
    to_regclass('public._totes_lake') is not null as has_binding,
    to_regclass('public._totes_loaded_batch') is not null as has_loaded_batches
