"""The SFTP edge of the file feeds: list and read a feed's files.

The client is asyncssh's, driven from one background event loop so that Prefect's synchronous tasks
can use it. The host key is always verified, against ``TOTES_SFTP_KNOWN_HOSTS`` (default
``~/.ssh/known_hosts``): a server we cannot verify is an error, never a prompt.
"""

from __future__ import annotations

import asyncio
import os
import posixpath
import stat
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import asyncssh

from tasks.feeds.plans import RemoteFile

T = TypeVar("T")


class SftpError(RuntimeError):
    """The SFTP server cannot be reached, refuses us, or lacks what a feed needs."""


def _run_loop_in_thread() -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="totes-sftp", daemon=True)
    thread.start()
    return loop, thread


class SftpSource:
    """A logged-in SFTP session on the server of ``url`` (``sftp://user[:password]@host[:port]/path``).

    Use as a context manager. Directories are relative to the URL's path.
    """

    def __init__(
        self,
        url: str,
        *,
        key_file: Path | None = None,
        known_hosts: Path | None = None,
        host_keys: str | None = None,
        timeout_seconds: float = 30.0,
    ):
        parts = urlsplit(url)
        if parts.scheme != "sftp" or not parts.hostname or not parts.username:
            msg = "TOTES_SFTP_URL must look like sftp://user[:password]@host[:port]/path"
            raise SftpError(msg)
        self.host, self.port = parts.hostname, parts.port or 22
        self.username = unquote(parts.username)
        self._password = unquote(parts.password) if parts.password else None
        self.base = unquote(parts.path) or "."
        self._key_file, self._known_hosts, self._timeout = key_file, known_hosts, timeout_seconds
        self._host_keys = host_keys
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connection: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None

    @property
    def where(self) -> str:
        return f"sftp://{self.username}@{self.host}:{self.port}"

    def __enter__(self) -> SftpSource:
        self._loop, self._thread = _run_loop_in_thread()
        try:
            self._call(self._open())
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is None:
            return
        if self._connection is not None:
            self._connection.close()
            self._call(self._connection.wait_closed())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()
        self._loop = None

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            msg = "use SftpSource as a context manager"
            raise SftpError(msg)
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    async def _open(self) -> None:
        options: dict[str, Any] = {
            "username": self.username,
            "password": self._password,
            "client_keys": [str(self._key_file)] if self._key_file else None,
            "known_hosts": str(self._known_hosts) if self._known_hosts else (),
            "connect_timeout": self._timeout,
            "login_timeout": self._timeout,
        }
        if self._host_keys:
            options["known_hosts"] = asyncssh.import_known_hosts(self._host_keys.replace("\\n", "\n"))
        elif not self._known_hosts:
            options.pop("known_hosts")  # asyncssh's default: ~/.ssh/known_hosts
        if not self._key_file:
            options["client_keys"] = None if self._password else ()
        try:
            self._connection = await asyncssh.connect(self.host, self.port, **options)
            self._sftp = await self._connection.start_sftp_client()
        except asyncssh.PermissionDenied as error:
            msg = f"SFTP login to {self.where} failed: permission denied (check the password or key)"
            raise SftpError(msg) from error
        except asyncssh.HostKeyNotVerifiable as error:
            where = (
                "TOTES_SFTP_HOST_KEYS"
                if self._host_keys
                else (f"{self._known_hosts or '~/.ssh/known_hosts'} (TOTES_SFTP_KNOWN_HOSTS)")
            )
            msg = f"the host key of {self.host}:{self.port} is not trusted: add it to {where}"
            raise SftpError(msg) from error
        except (OSError, asyncssh.Error) as error:
            reason = getattr(error, "strerror", None) or getattr(error, "reason", None) or str(error)
            msg = f"cannot connect to the SFTP server {self.where}: {reason or type(error).__name__}"
            raise SftpError(msg) from error

    def path(self, directory: str, name: str | None = None) -> str:
        parts = [self.base, directory] + ([name] if name else [])
        return posixpath.join(*parts)

    def _client(self) -> asyncssh.SFTPClient:
        if self._sftp is None:
            msg = "use SftpSource as a context manager"
            raise SftpError(msg)
        return self._sftp

    def list(self, directory: str) -> list[RemoteFile]:
        """The regular files of ``directory`` (not recursive), with size and modification time."""

        async def listing() -> list[RemoteFile]:
            entries = await self._client().readdir(self.path(directory))
            return [
                RemoteFile(
                    name=os.fsdecode(entry.filename), size=entry.attrs.size or 0, mtime=int(entry.attrs.mtime or 0)
                )
                for entry in entries
                if entry.attrs.permissions is not None and stat.S_ISREG(entry.attrs.permissions)
            ]

        try:
            return sorted(self._call(listing()), key=lambda remote: remote.name)
        except asyncssh.SFTPNoSuchFile as error:
            msg = f"the SFTP directory {self.path(directory)} does not exist on {self.where}"
            raise SftpError(msg) from error
        except asyncssh.SFTPPermissionDenied as error:
            msg = f"permission denied listing {self.path(directory)} on {self.where}"
            raise SftpError(msg) from error

    def read(self, directory: str, name: str) -> bytes:
        """The content of one file."""

        async def content() -> bytes:
            async with self._client().open(self.path(directory, name), "rb") as handle:
                return await handle.read()

        try:
            return self._call(content())
        except (asyncssh.SFTPNoSuchFile, asyncssh.SFTPPermissionDenied) as error:
            msg = f"cannot read {self.path(directory, name)} on {self.where}: {error.reason}"
            raise SftpError(msg) from error
