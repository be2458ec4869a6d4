"""Run one command and report its wall time, CPU time and peak RSS, as ``/usr/bin/time -v`` would.

Linux keeps a process's RSS high-water mark across ``exec``, so a command started straight from the
benchmark driver (a large Python process) would report the driver's memory as its own. This launcher
is a small interpreter: the command is forked from it, so its peak RSS is its own.

Usage: python -m bench.measure REPORT.json COMMAND [ARGS...]
"""

from __future__ import annotations

import json
import os
import sys
import time


def main() -> int:
    report, command = sys.argv[1], sys.argv[2:]
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child: become the command
        try:
            os.execvp(command[0], command)  # noqa: S606 - runs the benchmark's own command, as given
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    elapsed = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    with open(report, "w") as handle:
        json.dump(
            {
                "seconds": elapsed,
                "cpu_seconds": usage.ru_utime + usage.ru_stime,
                "peak_rss_kib": usage.ru_maxrss,
                "exit": code,
            },
            handle,
        )
    return code


if __name__ == "__main__":
    sys.exit(main())
