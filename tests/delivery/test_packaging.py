"""The product's wheel carries the product only: the sandbox is a development tool of its own."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_has_no_sandbox_and_the_sandbox_is_its_own_distribution(tmp_path: Path) -> None:
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = tmp_path.glob("cycletime_collector-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("collector/") for n in names) and any(n.startswith("exporters/") for n in names)
    assert not [n for n in names if "sandbox" in n.split("/")[0] or n.startswith("collector/sandbox")]
    from importlib import metadata

    assert metadata.distribution("cycletime-sandbox").version  # installed beside it by make test
