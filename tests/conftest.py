"""Shared fixtures: store backends (real SQLite files; a real PostgreSQL server when available)."""

from __future__ import annotations

import datetime as dt
import glob
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

BACKENDS_RAN: set[str] = set()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving_half(routes: Any) -> Iterator[tuple[str, Any]]:
    """One half of the sandbox (``AzureRoutes`` or ``GitHubRoutes``) alone on a free port, without the
    control endpoints, for options ``Sandbox`` does not expose; yields its root URL and its server."""
    from sandbox.server import FaultPlan, Router, SandboxHTTPServer

    router = Router()
    routes.register(router)
    server = SandboxHTTPServer(("127.0.0.1", 0), router, FaultPlan(), lambda req: None)
    threading.Thread(target=server.serve_forever, name="sandbox-half", daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server
    finally:
        server.shutdown()
        server.server_close()


# -- the Azure half's contract tests: one seeded organisation ------------------------------------------------

ADO_ORG_TOKEN = "test-pat"
ADO_ORG_NOW = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def ado_org() -> Iterator[Any]:
    """The sandbox with a seeded 400-item organisation (seed 11), one per test module."""
    from sandbox.app import Sandbox, SandboxOptions

    with Sandbox(SandboxOptions(seed=11, work_items=400, token=ADO_ORG_TOKEN, now=ADO_ORG_NOW)) as sb:
        yield sb


@pytest.fixture
def ado_api(ado_org: Any) -> Any:
    """A plain ``requests`` client of ``ado_org``, authenticated as the Azure sources are."""
    return azure_session(ADO_ORG_TOKEN)


# -- collector configurations against the sandbox ----------------------------------------------------------


def azure_session(token: str) -> Any:
    """A plain ``requests`` client as the Azure sources are: Basic auth with the PAT, fed-auth
    redirects suppressed, api-version 7.1 on every request."""
    import requests

    session = requests.Session()
    session.auth = ("", token)
    session.headers["X-TFS-FedAuthRedirect"] = "Suppress"
    session.params = {"api-version": "7.1"}
    return session


def azure_source(
    kind: str,
    sandbox_url: str,
    token: str,
    project: str = "Fabrikam",
    *,
    name: str | None = None,
    organization: str = "contoso",
    **settings: Any,
) -> dict[str, Any]:
    """An ``azure_boards`` or ``azure_pipelines`` source reading one project of the sandbox at ``sandbox_url``."""
    return {
        "name": name or kind.removeprefix("azure_"),
        "kind": kind,
        "organization_url": f"{sandbox_url}/{organization}",
        "project": project,
        "token": token,
        **settings,
    }


def github_source(
    sandbox_url: str,
    token: str,
    repositories: Iterable[str] = ("contoso/web",),
    *,
    name: str = "github",
    **settings: Any,
) -> dict[str, Any]:
    """A ``github`` source reading the sandbox at ``sandbox_url`` (GitHub Enterprise Server style)."""
    return {
        "name": name,
        "kind": "github",
        "base_url": f"{sandbox_url}/api/v3",
        "token": token,
        "repositories": list(repositories),
        **settings,
    }


def record_pass(
    store: Any,
    source: str,
    *,
    started_at: float,
    ok: bool = True,
    duration: float = 1.0,
    items: int = 0,
    error: str | None = None,
    rate_limit_remaining: float | None = None,
) -> None:
    """A pass of ``source`` recorded as the runner records it (with the runner's histogram bounds)."""
    from collector.runner import POLL_BUCKETS

    store.record_poll(
        source,
        ok=ok,
        started_at=started_at,
        duration=duration,
        bounds=POLL_BUCKETS,
        items=items,
        error=error,
        rate_limit_remaining=rate_limit_remaining,
    )


def sandbox_config(store: str, sources: Iterable[dict[str, Any]], **settings: Any) -> str:
    """A collector configuration (YAML): ``store``, the other top-level ``settings``, then one source a
    line (each value written as JSON, which YAML reads as is; ``${VAR}`` still substitutes)."""
    lines = [f"{key}: {json.dumps(value)}" for key, value in {"store": store, **settings}.items()]
    lines += ["sources:", *(f"  - {json.dumps(source)}" for source in sources)]
    return "\n".join(lines) + "\n"


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


class _PostgresServer:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (Debian's `postgresql` package).

    PostgreSQL refuses to run as root, so as root the cluster belongs to the `postgres` user.
    """

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="cycletime-pg-", dir="/tmp")
        self.port = free_port()
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
            self.prefix = ["runuser", "-u", "postgres", "--"]
        data = os.path.join(self.dir, "data")
        subprocess.run(
            [*self.prefix, _pg_bin("initdb"), "-D", data, "-U", "cycletime", "--auth=trust", "-E", "UTF8"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                *self.prefix,
                _pg_bin("pg_ctl"),
                "-D",
                data,
                "-w",
                "-l",
                os.path.join(self.dir, "log"),
                "-o",
                f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1",
                "start",
            ],
            check=True,
            capture_output=True,
        )
        self.data = data
        self.url = f"postgresql://cycletime@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        subprocess.run(
            [*self.prefix, _pg_bin("pg_ctl"), "-D", self.data, "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(self.dir, ignore_errors=True)


_PG: _PostgresServer | None = None


def postgres_url() -> str | None:
    """CYCLETIME_TEST_POSTGRES_URL if set, else a local server started once per session."""
    global _PG
    if os.environ.get("CYCLETIME_TEST_POSTGRES_URL"):
        return os.environ["CYCLETIME_TEST_POSTGRES_URL"]
    if _PG is None and _pg_bin("initdb") and _pg_bin("pg_ctl"):
        _PG = _PostgresServer()
    return _PG.url if _PG else None


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _PG is not None:
        _PG.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if BACKENDS_RAN:
        terminalreporter.write_line(f"store backends tested: {', '.join(sorted(BACKENDS_RAN))}")
        if "postgresql" not in BACKENDS_RAN:
            terminalreporter.write_line(
                "PostgreSQL store tests did NOT run: no server binaries and no CYCLETIME_TEST_POSTGRES_URL"
            )


def _backends() -> list[str]:
    """Both backends where PostgreSQL can run; in CI (CI=true) it must, so a missing server fails
    every store test instead of quietly testing SQLite alone."""
    if os.environ.get("CYCLETIME_TEST_POSTGRES_URL") or _pg_bin("initdb") or os.environ.get("CI") == "true":
        return ["sqlite", "postgresql"]
    return ["sqlite"]


@pytest.fixture(params=_backends())
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty store URL on every backend this machine can run."""
    if request.param == "sqlite":
        BACKENDS_RAN.add("sqlite")
        yield f"sqlite:///{tmp_path}/store.db"
        return
    url = postgres_url()
    assert url, (
        "PostgreSQL did not start (no initdb/pg_ctl: scripts/system-deps.sh installs the postgresql "
        "package) and CYCLETIME_TEST_POSTGRES_URL is not set"
    )
    import sqlalchemy as sa

    from collector.store import normalise_url

    db = f"t{abs(hash(request.node.nodeid)) % 10**9}"
    admin = sa.create_engine(normalise_url(url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{db}"'))
        conn.execute(sa.text(f'CREATE DATABASE "{db}"'))
    BACKENDS_RAN.add("postgresql")
    yield url.rsplit("/", 1)[0] + "/" + db
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
    admin.dispose()


def self_signed(folder: Path) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and its key, as PEM files (cryptography if present, else openssl)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
                "-keyout",
                str(key),
                "-out",
                str(cert),
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        return str(cert), str(key)
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(cert), str(key)


def chromium(url: str, folder: Path, window: str = "1200,600", min_screenshot_bytes: int = 5_000) -> str:
    """The DOM headless Chromium built from ``url``; a screenshot of the page is left in ``folder``."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    assert binary, "chromium (Debian package) is required: `make test` installs it"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--no-first-run",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={folder / 'chromium-profile'}",
    ]
    shot = folder / "landing.png"
    subprocess.run(
        [binary, *flags, f"--screenshot={shot}", f"--window-size={window}", url], capture_output=True, timeout=120
    )
    assert shot.exists() and shot.stat().st_size > min_screenshot_bytes, "no screenshot"
    dom = subprocess.run([binary, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert "cycletime-collector" in dom.stdout, dom.stderr[-2000:]
    return dom.stdout
