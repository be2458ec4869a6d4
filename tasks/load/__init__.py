"""Load: star batches of the lake -> the warehouse, one transaction per batch. Pure: ``statements``
(the SQL text); I/O: ``merge`` (one batch, ADBC) and ``tasks`` (Prefect)."""
