"""A loopback SFTP server (asyncssh) for ``totes demo`` and the tests: one folder, password login,
a fresh host key. Development only: never imported by a production stage."""

from __future__ import annotations

import asyncio
import functools
import hmac
import os
import threading
from pathlib import Path

import asyncssh


def _run_loop_in_thread() -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="totes-sftp-server", daemon=True)
    thread.start()
    return loop, thread


class _PasswordServer(asyncssh.SSHServer):
    def __init__(self, username: str, password: str):
        self._username, self._password = username, password

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return username == self._username and hmac.compare_digest(password, self._password)


class LoopbackSftpServer:
    """A real SFTP server (asyncssh) on 127.0.0.1 that serves one folder, with password login and a
    fresh ed25519 host key. ``url`` and :meth:`write_known_hosts` are what a client needs."""

    def __init__(self, root: Path, *, username: str = "partner", password: str, port: int = 0):
        self.root, self.username, self._password, self._port = Path(root), username, password, port
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._acceptor: asyncssh.SSHAcceptor | None = None

    def start(self) -> LoopbackSftpServer:
        self.root.mkdir(parents=True, exist_ok=True)
        self._loop, self._thread = _run_loop_in_thread()
        root = str(self.root.resolve())

        async def listen() -> asyncssh.SSHAcceptor:
            return await asyncssh.listen(
                "127.0.0.1",
                self._port,
                server_host_keys=[self.host_key],
                server_factory=functools.partial(_PasswordServer, self.username, self._password),
                sftp_factory=lambda channel: asyncssh.SFTPServer(channel, chroot=os.fsencode(root)),
                allow_scp=False,
            )

        self._acceptor = asyncio.run_coroutine_threadsafe(listen(), self._loop).result()
        self._port = self._acceptor.get_port()
        return self

    def stop(self) -> None:
        if self._loop is None or self._acceptor is None:
            return
        self._acceptor.close()
        asyncio.run_coroutine_threadsafe(self._acceptor.wait_closed(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()
        self._loop = None

    def __enter__(self) -> LoopbackSftpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"sftp://{self.username}:{self._password}@127.0.0.1:{self._port}/"

    def write_known_hosts(self, path: Path) -> Path:
        public = self.host_key.export_public_key().decode().strip()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"[127.0.0.1]:{self._port} {public}\n", encoding="utf-8")
        return path
