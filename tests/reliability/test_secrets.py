"""A token never shows: not in text or JSON logs, not on /metrics or the landing page, not in error
messages or the store, after runs full of failures (a wrong token's 401s, injected faults, a
repository that 404s). Neither in clear nor in its Basic-auth (base64) forms."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from conftest import free_port
from reliability_kit import TOKEN, config_yaml, start_sandbox

from sandbox.app import Sandbox

ROOT = Path(__file__).resolve().parents[2]
WRONG = "rel-Wrong-Token-19be77aa"


def forms(secret: str) -> list[str]:
    """The secret, and how it travels in an Authorization header (Azure DevOps: Basic with any user)."""
    return [secret, *(base64.b64encode(f"{user}{secret}".encode()).decode() for user in ("", ":", "x:", "user:"))]


def cycletime(*args: str, env_token: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REL_TOKEN": env_token}
    return subprocess.run(
        [sys.executable, "-m", "collector", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    """Faults of every kind, but few and with ``Retry-After: 0``: the subprocesses back off for real."""
    sb = start_sandbox(seed=3, work_items=60, fault_rate=0.05)
    sb.server.faults.retry_after = 0
    yield sb
    sb.stop()


def write_config(tmp: Path, sandbox: Sandbox, name: str, port: int = 0) -> Path:
    path = tmp / f"{name}.yaml"
    # the token comes from the environment, as the contract asks; contoso/nope answers 404
    path.write_text(
        config_yaml(
            sandbox.url,
            f"sqlite:///{tmp}/{name}.db",
            "${REL_TOKEN}",
            listen=f"127.0.0.1:{port}",
            extra_repositories=["contoso/nope"],
        )
    )
    return path


def serve_and_read(config: Path, port: int, log: Path) -> dict[str, str]:
    """`cycletime serve` until every source has been polled: its /metrics, / and /readyz, then its log."""
    env = {**os.environ, "REL_TOKEN": TOKEN}
    proc = subprocess.Popen(
        [sys.executable, "-m", "collector", "serve", "--config", str(config), "--log-format", "json"],
        cwd=ROOT,
        env=env,
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            assert proc.poll() is None, log.read_text()[-2000:]
            assert time.time() < deadline, "serve never polled every source"
            try:
                page = requests.get(url + "/", timeout=5).text
                if "never polled" not in page:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.5)
        pages = {path: requests.get(url + path, timeout=10).text for path in ("/", "/metrics", "/readyz")}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    pages["log"] = log.read_text()
    return pages


def test_no_token_anywhere_after_failing_runs(sandbox: Sandbox, tmp_path: Path) -> None:
    port = free_port()
    good = write_config(tmp_path, sandbox, "good", port)
    wrong = write_config(tmp_path, sandbox, "wrong")
    outputs: dict[str, str] = {}

    for fmt in ("text", "json"):
        run = cycletime("sync", "--config", str(good), "--log-format", fmt, "-v", env_token=TOKEN)
        assert run.returncode == 1  # the 404 repository makes gh_web fail; the others succeed
        outputs[f"sync {fmt}"] = run.stdout + run.stderr
        assert "contoso/nope" in run.stderr and "404" in run.stderr
        run = cycletime("sync", "--config", str(wrong), "--log-format", fmt, env_token=WRONG)
        assert run.returncode == 1
        outputs[f"wrong token sync {fmt}"] = run.stdout + run.stderr
        assert "401" in run.stderr
    # the failures really happened: retried faults were logged, with their context
    assert "answered 50" in outputs["sync text"] and '"level": "warning"' in outputs["sync json"]
    assert "failed" in outputs["wrong token sync json"]

    outputs["metrics command"] = cycletime("metrics", "--config", str(good), env_token=TOKEN).stdout
    assert "cycletime_api_requests_total" in outputs["metrics command"]
    pages = serve_and_read(good, port, tmp_path / "serve.log")
    assert "cycletime_api_requests_total" in pages["/metrics"]
    assert "down" in pages["/"] and "404" in pages["/"]  # the last error is shown, redacted
    outputs.update({f"serve {k}": v for k, v in pages.items()})
    for db in tmp_path.glob("*.db*"):  # the store keeps last errors and watermarks
        outputs[f"store file {db.name}"] = db.read_bytes().decode("latin-1")

    leaks = [
        (where, secret)
        for where, text in outputs.items()
        for token in (TOKEN, WRONG)
        for secret in forms(token)
        if secret in text
    ]
    assert leaks == []
    assert len(outputs) >= 10
