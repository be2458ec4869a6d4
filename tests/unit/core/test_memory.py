"""Memory a stage freed goes back to the system before the next stage starts."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tasks.core.memory import release_unused_memory


def resident_mib() -> float:
    with open("/proc/self/status") as status:
        return int(next(line for line in status if line.startswith("VmRSS")).split()[1]) / 1024


def test_memory_arrow_freed_is_returned_to_the_system():
    before = resident_mib()
    # Computed by Arrow, so in Arrow's pool (an array made from NumPy's memory is NumPy's): 128 MiB.
    arrays = [pc.add(pa.array(np.arange(8_000_000)), i) for i in range(2)]
    peak = resident_mib()
    del arrays
    release_unused_memory()
    after = resident_mib()
    assert peak - before > 100, "the arrays never became resident"
    assert after < peak - 100, f"resident {before:.0f} -> {peak:.0f} -> {after:.0f} MiB: nothing returned"
