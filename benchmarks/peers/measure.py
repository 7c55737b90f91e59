"""Run a client script in this process and write its peak RSS (kB) to a file when it ends.

Its own high-water mark (``VmHWM``), not ``ru_maxrss``, which a child inherits from its parent (see
``rss.py``).

Usage: ``measure.py PEAK_FILE SCRIPT [ARGS ...]``.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

from rss import high_water_mb

if __name__ == "__main__":
    peak_file, script = sys.argv[1], sys.argv[2]
    sys.argv = sys.argv[2:]
    sys.path.insert(0, str(Path(script).resolve().parent))
    try:
        runpy.run_path(script, run_name="__main__")
    finally:
        Path(peak_file).write_text(str(round(high_water_mb() * 1024)))
