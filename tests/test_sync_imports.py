"""``cycletime sync`` loads only what a sync needs: its peak memory is mostly imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: for the figures (NumPy), a GitHub App (PyJWT, cryptography), PostgreSQL, the live table on a terminal
NOT_FOR_SYNC = ("numpy", "jwt", "cryptography", "sqlalchemy.dialects.postgresql", "rich")


def test_sync_path_does_not_import_what_only_serve_or_apps_need() -> None:
    code = (
        "import sys\n"
        "import collector.cli, collector.config, collector.progress, collector.runner, collector.store\n"
        "from collector.sources import SOURCES\n"
        f"print(sorted(m for m in {NOT_FOR_SYNC!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_the_figures_still_get_numpy() -> None:
    code = "import sys, collector.figures\nprint('numpy' in sys.modules)\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "True"
