"""This process's memory as the kernel counts it, in MB.

``resource.getrusage(RUSAGE_SELF).ru_maxrss`` is not this process's own peak on Linux: ``fork``
copies the parent's high-water mark and ``exec`` keeps it, so a child started by a large parent
(``make bench`` after the 1M item benchmarks: 860 MB) reports the parent's peak as its own.
``VmHWM`` is the high-water mark of this process's current address space, reset by ``exec``.
"""

from __future__ import annotations

from pathlib import Path


def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"/proc/self/status has no {key}")


def high_water_mb() -> float:
    """The peak resident set of this process since it was started (its ``exec``)."""
    return _status_mb("VmHWM")
