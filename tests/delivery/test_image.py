"""`make image`: picks the OCI builder that is installed (docker, podman, buildah) and tags the image.

No container engine runs here, so the builders are fake scripts recording their arguments, alone on a
PATH of their own (so a real `docker` elsewhere on the machine is never picked).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from .promql import CHART_DIR, ROOT

MAKE = shutil.which("make")
pytestmark = pytest.mark.skipif(MAKE is None, reason="GNU make is not installed")
APP_VERSION = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text(encoding="utf-8"))["appVersion"]


def fake_builder(bin_dir: Path, name: str, *, exit_code: int = 0, info_works: bool = True) -> Path:
    """A `name` executable that appends its arguments, one per line, to bin_dir/name.calls."""
    bin_dir.mkdir(exist_ok=True)
    calls = bin_dir / f"{name}.calls"
    script = bin_dir / name
    script.write_text(
        "#!/bin/bash\n"
        f'printf "%s\\n" "$@" "--" >> "{calls}"\n'
        f'if [ "$1" = info ]; then exit {0 if info_works else 1}; fi\n'
        f"exit {exit_code}\n",
        encoding="utf-8",
    )
    script.chmod(0o755)
    return calls


def make_image(bin_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert MAKE is not None
    bin_dir.mkdir(exist_ok=True)
    return subprocess.run(
        [MAKE, "--no-print-directory", "-C", str(ROOT), "image", *args],
        env={"PATH": str(bin_dir), "HOME": str(bin_dir)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def invocations(calls: Path) -> list[list[str]]:
    if not calls.exists():
        return []
    found, current = [], []
    for line in calls.read_text(encoding="utf-8").splitlines():
        if line == "--":
            found.append(current)
            current = []
        else:
            current.append(line)
    return found


def test_podman_builds_the_dockerfile_with_the_chart_app_version_as_tag(tmp_path: Path) -> None:
    calls = fake_builder(tmp_path / "bin", "podman")
    result = make_image(tmp_path / "bin")
    assert result.returncode == 0, result.stdout + result.stderr
    assert invocations(calls) == [["build", "--file", "Dockerfile", "--tag", f"cycletime-collector:{APP_VERSION}", "."]]
    assert "podman" in result.stdout and f"cycletime-collector:{APP_VERSION}" in result.stdout


def test_image_name_and_tag_come_from_the_command_line(tmp_path: Path) -> None:
    calls = fake_builder(tmp_path / "bin", "podman")
    result = make_image(
        tmp_path / "bin", "IMAGE=registry.example.com/platform/cycletime-collector", "IMAGE_TAG=0.1.0-rc1"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (call,) = invocations(calls)
    assert call[call.index("--tag") + 1] == "registry.example.com/platform/cycletime-collector:0.1.0-rc1"


def test_docker_comes_first_when_its_engine_answers(tmp_path: Path) -> None:
    docker = fake_builder(tmp_path / "bin", "docker")
    podman = fake_builder(tmp_path / "bin", "podman")
    assert make_image(tmp_path / "bin").returncode == 0
    assert [c[0] for c in invocations(docker)] == ["info", "build"]
    assert invocations(podman) == []


def test_a_docker_client_without_an_engine_is_passed_over(tmp_path: Path) -> None:
    docker = fake_builder(tmp_path / "bin", "docker", info_works=False)
    podman = fake_builder(tmp_path / "bin", "podman")
    result = make_image(tmp_path / "bin")
    assert result.returncode == 0, result.stdout + result.stderr
    assert [c[0] for c in invocations(docker)] == ["info"]
    assert [c[0] for c in invocations(podman)] == ["build"]


def test_buildah_builds_with_bud(tmp_path: Path) -> None:
    calls = fake_builder(tmp_path / "bin", "buildah")
    result = make_image(tmp_path / "bin")
    assert result.returncode == 0, result.stdout + result.stderr
    assert invocations(calls) == [["bud", "--file", "Dockerfile", "--tag", f"cycletime-collector:{APP_VERSION}", "."]]


def test_oci_builder_chooses_explicitly(tmp_path: Path) -> None:
    docker = fake_builder(tmp_path / "bin", "docker")
    buildah = fake_builder(tmp_path / "bin", "buildah")
    assert make_image(tmp_path / "bin", "OCI_BUILDER=buildah").returncode == 0
    assert invocations(docker) == []
    assert [c[0] for c in invocations(buildah)] == ["bud"]


def test_without_a_builder_one_clear_line_and_failure(tmp_path: Path) -> None:
    result = make_image(tmp_path / "bin")
    assert result.returncode != 0  # the recipe exits 1; make reports it as its own status 2
    assert "no OCI image builder found: install docker, podman or buildah" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_failing_build_fails_make(tmp_path: Path) -> None:
    fake_builder(tmp_path / "bin", "podman", exit_code=125)
    assert make_image(tmp_path / "bin").returncode != 0


def test_dockerfile_copies_the_package_only() -> None:
    """No tests, benchmarks, scripts or docs in the image nor the sandbox, a development tool."""
    copies = [
        line.split()[1:-1]
        for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()
        if line.startswith("COPY ")
    ]
    assert sorted(src for sources in copies for src in sources) == [
        "README.md",
        "collector",
        "exporters",
        "pyproject.toml",
    ]


def test_the_default_repository_is_documented_as_one_to_replace() -> None:
    values = (CHART_DIR / "values.yaml").read_text(encoding="utf-8")
    image_block = values[values.index("image:") : values.index("imagePullSecrets")]
    assert "make image" in image_block and "replace" in image_block.lower()
    chart_readme = (CHART_DIR / "README.md").read_text(encoding="utf-8")
    assert "make image" in chart_readme and "no image is published" in chart_readme.lower()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "### Building and pushing the image" in readme and "make image" in readme
