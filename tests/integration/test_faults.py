"""Infrastructure faults, provoked for real: the S3 endpoint behind a TCP proxy on 127.0.0.1 that the
test cuts (every open connection reset, new ones refused) and restores while a run is working."""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest

from tests.integration.conftest import Pipeline


class CuttableProxy:
    """A TCP proxy from 127.0.0.1:<port> to ``upstream``. ``cut()`` resets every open connection and
    refuses new ones until ``restore()``; it counts the connections it broke."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.is_cut = False
        self.broken = 0
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @staticmethod
    def _reset(sock: socket.socket) -> None:
        # SO_LINGER 0: close() sends RST, as a dropped network path or a crashed peer would.
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        except OSError:
            pass

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.is_cut:
                self.broken += 1
                self._reset(client)
                continue
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                self._reset(client)
                continue
            with self._lock:
                self._open |= {client, server}
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with self._lock:
                    self._open.discard(sock)
                try:
                    sock.close()
                except OSError:
                    pass

    def cut(self) -> None:
        self.is_cut = True
        with self._lock:
            victims, self._open = list(self._open), set()
        self.broken += len(victims) // 2
        for sock in victims:
            self._reset(sock)

    def restore(self) -> None:
        self.is_cut = False

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def s3_behind_proxy(s3_endpoint, s3_lake_url, monkeypatch):
    host, port = s3_endpoint.removeprefix("http://").split(":")
    proxy = CuttableProxy((host, int(port)))
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{proxy.port}")
    yield proxy
    proxy.close()


def cut_for(proxy: CuttableProxy, *, after: float, seconds: float) -> threading.Thread:
    def outage() -> None:
        time.sleep(after)
        proxy.cut()
        time.sleep(seconds)
        proxy.restore()

    thread = threading.Thread(target=outage, daemon=True)
    thread.start()
    return thread


def test_s3_outages_mid_run_are_retried_and_the_warehouse_converges(
    databases, s3_lake_url, s3_behind_proxy, prefect_api, monkeypatch
):
    pipeline = Pipeline(databases.source_url, databases.warehouse_url, s3_lake_url, monkeypatch)
    pipeline.seed(scale=0.05)

    # Full load: the endpoint goes away mid-run (open uploads and reads reset) for 4 s.
    outage = cut_for(s3_behind_proxy, after=0.5, seconds=4)
    pipeline.run()
    outage.join()
    # Incremental: the endpoint is down when the run starts, and comes back 3 s later.
    pipeline.churn(orders=20)
    outage = cut_for(s3_behind_proxy, after=0, seconds=3)
    time.sleep(0.1)
    pipeline.run()
    outage.join()

    print(f"S3 connections reset or refused during the outages: {s3_behind_proxy.broken}")
    assert s3_behind_proxy.broken > 0, "the outages never hit an S3 connection"
    pipeline.assert_warehouse_matches_source()


def test_warehouse_connection_killed_during_the_copy_is_retried_and_loads_once(pipeline):
    """The server ends the loading session in the middle of a COPY (``pg_terminate_backend``: what a
    restart or failover does to it, SQLSTATE 57P01). The batch's transaction rolls back whole: the
    load beside the transform stops, the batch is loaded again from the lake's files, and every row
    arrives once. (Restarting the whole server would also stop the
    other tests' databases, which share it.)"""
    from tests.integration.conftest import execute, scalar
    from tests.integration.test_pipeline import install_trigger

    pipeline.seed(scale=0.02)
    pipeline.run()
    install_trigger(
        pipeline.warehouse_url,
        "stall",
        table="fact_payment",
        per="statement",
        body="perform pg_sleep(2); return null;",
    )
    pipeline.churn(orders=10)
    terminated = []

    def terminate_the_load() -> None:
        for _ in range(600):
            pid = scalar(
                pipeline.warehouse_url,
                "select pid from pg_stat_activity where datname = current_database() "
                "and pid <> pg_backend_pid() and wait_event = 'PgSleep'",
            )
            if pid:
                terminated.append(scalar(pipeline.warehouse_url, "select pg_terminate_backend($1::int)", pid))
                return
            time.sleep(0.05)

    killer = threading.Thread(target=terminate_the_load, daemon=True)
    killer.start()
    pipeline.run()
    killer.join()
    assert terminated == [True], "the load never reached the COPY into fact_payment"
    execute(pipeline.warehouse_url, "drop trigger stall on fact_payment")
    pipeline.assert_warehouse_matches_source()
