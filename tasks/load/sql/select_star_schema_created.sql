-- Whether a load has created the star schema yet (its record of loaded batches exists).
select to_regclass('public._totes_loaded_batch') is not null as created;
