"""Ingest: ToteSys -> the raw zone of the lake. Pure: ``watermark``, ``delta``, ``drift``, ``deletes``;
I/O: ``source`` (the source database), ``known_keys`` (the delete check), ``tasks`` (Prefect)."""
