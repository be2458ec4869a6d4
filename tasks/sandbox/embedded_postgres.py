"""An embedded PostgreSQL (the ``pgserver`` wheel, which ships its own server binaries) and fresh
databases on it: for ``totes demo``, the tests and the benchmark. Needs the ``demo`` extra."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from tasks.core.postgres import connect


def database_url(server_url: str, database: str) -> str:
    """The server's URL with another database name."""
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def start_embedded_postgres(folder: Path, *, fresh: bool) -> str:
    """Start (or reuse) an embedded PostgreSQL with its data in ``folder``; return its URL."""
    import pgserver

    if fresh and folder.exists():
        server = pgserver.get_server(folder, cleanup_mode="stop")
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(folder, cleanup_mode="stop")
    return server.get_uri()


def recreate_databases(server_url: str, names: tuple[str, ...]) -> dict[str, str]:
    """Drop and create the databases ``names`` on the server; return their URLs."""
    with connect(server_url) as connection:
        connection.adbc_connection.set_autocommit(True)
        with connection.cursor() as cursor:
            for name in names:
                # Names are the demo's own constants, never user input.
                cursor.execute(f'drop database if exists "{name}" with (force)')
                cursor.execute(f'create database "{name}"')
    return {name: database_url(server_url, name) for name in names}
