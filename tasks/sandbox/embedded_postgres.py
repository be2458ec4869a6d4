"""An embedded PostgreSQL (the ``pgserver`` wheel, which ships its own server binaries) and fresh
databases on it: for ``totes demo``, the tests and the benchmark. Needs the ``demo`` extra.

``python -m tasks.sandbox.embedded_postgres stop|start FOLDER`` stops or starts the server of a data
folder (the demo leaves its own running, in ``.totes/demo/pgdata``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
import warnings
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from tasks.core.postgres import connect


def database_url(server_url: str, database: str) -> str:
    """The server's URL with another database name."""
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def start_embedded_postgres(folder: Path, *, fresh: bool, keep_running: bool = False) -> str:
    """Start (or reuse) an embedded PostgreSQL with its data in ``folder``; return its URL. It stops
    when this process ends, unless ``keep_running`` (then :func:`stop_embedded_postgres` stops it).
    Its URL has no password: a unix socket in ``folder``, trust authentication."""
    import pgserver

    if fresh and folder.exists():
        server = pgserver.get_server(folder, cleanup_mode="stop")
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(folder, cleanup_mode=None if keep_running else "stop")
    return server.get_uri()


def embedded_psql() -> Path:
    """The ``psql`` that ships with the embedded PostgreSQL."""
    import pgserver

    return Path(pgserver.__file__).parent / "pginstall" / "bin" / "psql"


def embedded_postgres_pid(folder: Path) -> int | None:
    """The process of the server running on ``folder``, or None."""
    from pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(folder.resolve())
    return info.pid if info is not None and info.is_running() else None


def stop_embedded_postgres(folder: Path, *, wait_seconds: float = 30.0) -> bool:
    """Stop the server running on ``folder`` (a fast shutdown: sessions are ended); False if none ran."""
    pid = embedded_postgres_pid(folder)
    if pid is None:
        return False
    os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + wait_seconds
    while embedded_postgres_pid(folder) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    return True


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


if __name__ == "__main__":
    # pgserver's platformdirs warns on every start where XDG_RUNTIME_DIR is unset (containers, CI).
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    arguments = argparse.ArgumentParser(description="stop or start the embedded PostgreSQL of a data folder")
    arguments.add_argument("action", choices=("stop", "start"))
    arguments.add_argument("folder", type=Path, help="its data folder, e.g. .totes/demo/pgdata")
    options = arguments.parse_args()
    if options.action == "stop":
        print("stopped" if stop_embedded_postgres(options.folder) else "not running")
    elif not (options.folder / "PG_VERSION").exists():
        sys.exit(f"{options.folder} holds no PostgreSQL data folder")
    else:
        print(f"running: {start_embedded_postgres(options.folder, fresh=False, keep_running=True)}")
