"""Run a client script in this process and write its peak RSS (kB) to a file when it ends.

``ru_maxrss`` of a child carries its parent's high-water mark over ``fork`` + ``exec`` on Linux, so
the benchmark reads ``VmHWM`` (the high-water mark of this process's own memory) instead.

Usage: ``measure.py PEAK_FILE SCRIPT [ARGS ...]``.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path


def peak_kb() -> int:
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM"))
    return int(line.split()[1])


if __name__ == "__main__":
    peak_file, script = sys.argv[1], sys.argv[2]
    sys.argv = sys.argv[2:]
    sys.path.insert(0, str(Path(script).resolve().parent))
    try:
        runpy.run_path(script, run_name="__main__")
    finally:
        Path(peak_file).write_text(str(peak_kb()))
