"""Giving memory a stage has freed back to the system before the next stage starts.

Arrow's pool (mimalloc) and the C library's allocator keep freed memory for reuse, so a process's
resident size after a stage is the stage's peak, and the next stage's own use comes on top of it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

import pyarrow as pa

log = logging.getLogger("totes.memory")


def release_unused_memory() -> None:
    """Return the memory Arrow's pool and the C allocator hold unused to the system (best effort:
    an allocator without the call keeps it)."""
    pa.default_memory_pool().release_unused()
    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        ctypes.CDLL(name).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        log.debug("malloc_trim is not available here")
