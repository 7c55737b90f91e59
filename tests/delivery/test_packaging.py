"""The product's wheel carries the product only: the sandbox is a development tool of its own."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _wheel_files(project: Path, name: str, into: Path) -> list[str]:
    """Build ``project``'s wheel as pip would and list the files in it."""
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
            str(into),
            str(project),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = into.glob(f"{name}-*.whl")
    return zipfile.ZipFile(wheel).namelist()


def test_the_wheel_has_no_sandbox_and_the_sandbox_is_its_own_distribution(tmp_path: Path) -> None:
    names = _wheel_files(ROOT, "cycletime_collector", tmp_path)
    assert any(n.startswith("collector/") for n in names) and any(n.startswith("exporters/") for n in names)
    assert not [n for n in names if "sandbox" in n.split("/")[0] or n.startswith("collector/sandbox")]
    from importlib import metadata

    assert metadata.distribution("cycletime-sandbox").version  # installed beside it by make test


def test_the_sandbox_distribution_carries_every_sandbox_module(tmp_path: Path) -> None:
    """``sandbox/pyproject.toml`` lists its packages by hand: a new API-area package must be listed."""
    shipped = {n for n in _wheel_files(ROOT / "sandbox", "cycletime_sandbox", tmp_path) if n.endswith(".py")}
    here = ROOT / "sandbox"
    sources = {f"sandbox/{p.relative_to(here).as_posix()}" for p in here.rglob("*.py") if "build" not in p.parts}
    assert sources - shipped == set()
