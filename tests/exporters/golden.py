"""Golden exposition files: the exact bytes `cycletime metrics --at` prints for a small fixed store.

`make golden` rewrites them (`python tests/exporters/golden.py`); `test_golden.py` fails on any
difference, so every change to what /metrics shows is a reviewed diff of these files.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
GOLDEN = HERE / "golden" / "fixture.prom"

CONFIG = """
store: sqlite:///{db}
windows: [7d, 30d, 90d]
quantiles: [0.5, 0.85, 0.95]
sources:
  - {{name: boards, kind: azure_boards, organization_url: "http://127.0.0.1:1/o", project: Fabrikam, token: t0ken}}
  - {{name: pipelines, kind: azure_pipelines, organization_url: "http://127.0.0.1:1/o", project: Fabrikam,
      token: t0ken}}
  - {{name: github, kind: github, base_url: "http://127.0.0.1:1", token: t0ken, repositories: [contoso/web]}}
"""


def exposition() -> bytes:
    """Load the fixed store into a fresh file and print its exposition as of the fixture's NOW."""
    sys.path.insert(0, str(ROOT / "tests"))
    from fixture_data import NOW, load

    from collector.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "golden.db"
        store = Store(f"sqlite:///{db}")
        load(store)
        store.close()
        config = Path(tmp) / "golden.yaml"
        config.write_text(CONFIG.format(db=db))
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "collector",
                "metrics",
                "--config",
                str(config),
                "--at",
                NOW.isoformat(),
                "--log-format",
                "json",
            ],
            capture_output=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            timeout=120,
            check=True,
        )
        # the self-metrics (source status, requests) are empty for this store: no poll ever ran
        return done.stdout


if __name__ == "__main__":
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_bytes(exposition())
    print(f"wrote {GOLDEN.relative_to(ROOT)}")
