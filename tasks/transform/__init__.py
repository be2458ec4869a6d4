"""Transform: raw batches -> star batches of the lake. Pure: ``builders`` (one star table each) and
``batch`` (a batch and its carried state); I/O: ``tasks`` (Prefect)."""
