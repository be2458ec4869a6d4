"""Star rows handed from a transform to a load that runs beside it, so the two overlap.

The transform writes each star part to the lake as before and also puts it here; the load, in
another thread, copies the parts into its open transaction as they come and commits only after the
transform has written its star manifest (:meth:`StarHandoff.finish`). The lake stays the record:
if either side fails, the load rolls back and the batch is loaded again from the lake's files.

Measured at scale 100 before this existed: transform 13.8 s on ~1.2 client cores, then load 25.1 s
bound by one server backend; on two cores each side leaves room for the other.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa

from tasks.core.manifests import StarManifest


class TransformFailed(RuntimeError):
    """The transform feeding the load failed: the load must roll back (it is loaded again later)."""


@dataclass(frozen=True)
class _Finished:
    manifest: StarManifest


@dataclass(frozen=True)
class _Failed:
    reason: str


_Item = tuple[str, pa.Table] | _Finished | _Failed

# Parts waiting for the load, at most: a part is one raw file's star rows (or a whole dimension),
# so this bounds the memory the handoff adds when the load falls behind.
CAPACITY = 2
# How often a blocked transform looks whether the load has given up (seconds).
_POLL_SECONDS = 0.2


class StarHandoff:
    """One star batch's parts, in the order the transform builds them, from one producer thread to
    one consumer thread. The producer calls :meth:`put` for each part, then :meth:`finish` with the
    manifest it wrote or :meth:`fail`; the consumer reads :meth:`tables`, then :meth:`manifest`, and
    calls :meth:`abandon` if it stops early (the producer then goes on alone)."""

    def __init__(self, batch_id: str) -> None:
        self.batch_id = batch_id
        self._parts: queue.Queue[_Item] = queue.Queue(maxsize=CAPACITY)
        self._abandoned = threading.Event()
        self._pending: tuple[str, pa.Table] | _Finished | None = None
        self._manifest: StarManifest | None = None

    # The producer's side.
    def put(self, table: str, rows: pa.Table) -> None:
        """Hand one part over; waits while the load is behind, returns at once if it gave up."""
        self._offer((table, rows))

    def finish(self, manifest: StarManifest) -> None:
        """The star manifest is written: the load may commit."""
        self._offer(_Finished(manifest))

    def fail(self, reason: str) -> None:
        """The transform failed: the load must roll back."""
        self._offer(_Failed(reason))

    def _offer(self, item: _Item) -> None:
        while not self._abandoned.is_set():
            try:
                self._parts.put(item, timeout=_POLL_SECONDS)
                return
            except queue.Full:
                continue

    # The consumer's side.
    def abandon(self) -> None:
        """The load stopped: the transform's further parts are dropped (the lake has them)."""
        self._abandoned.set()

    def tables(self) -> Iterator[tuple[str, Iterator[pa.RecordBatch]]]:
        """Each star table as it arrives, with a stream of its rows; a table's stream must be read
        to its end before the next table is asked for. Ends when the transform has finished.

        Raises:
            TransformFailed: the transform failed part-way.
        """
        while True:
            item = self._next()
            if isinstance(item, _Finished):
                self._manifest = item.manifest
                return
            table, rows = item
            self._pending = item
            yield table, self._rows_of(table)

    def manifest(self) -> StarManifest:
        """The manifest the transform wrote (after :meth:`tables` has ended)."""
        if self._manifest is None:
            msg = f"batch {self.batch_id}: the load asked for the star manifest before the transform finished"
            raise RuntimeError(msg)
        return self._manifest

    def _rows_of(self, table: str) -> Iterator[pa.RecordBatch]:
        while isinstance(self._pending, tuple) and self._pending[0] == table:
            yield from self._pending[1].to_batches()
            self._pending = None
            # The same table's next part, or the next table's first (or the end), kept for tables().
            self._pending = self._next()

    def _next(self) -> tuple[str, pa.Table] | _Finished:
        item: _Item
        if self._pending is not None:
            item, self._pending = self._pending, None
        else:
            item = self._parts.get()
        if isinstance(item, _Failed):
            msg = f"batch {self.batch_id}: the transform failed ({item.reason}); the load rolls back"
            raise TransformFailed(msg)
        return item
