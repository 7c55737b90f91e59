"""GitHub App authentication against the sandbox: the app's JWT, installation tokens per owner that
expire and are renewed mid-pass, configuration and check-config, and secrets kept out of the logs.

The sandbox's app is given a key pair generated here; it verifies every JWT against the public key
and issues installation tokens with a lifetime the tests choose.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from collector.cli import main
from collector.config import GitHubConfig, parse_config
from collector.errors import AuthError, ConfigError
from collector.http import REDACT
from collector.sources.base import SourceContext
from collector.sources.github import GitHubSource
from collector.sources.github_auth import GitHubAppAuth, GitHubAppConfig
from collector.store import Store
from sandbox.app import Sandbox, SandboxOptions
from sandbox.github.apps import SandboxApp

NOW = datetime(2026, 1, 15, tzinfo=UTC)
APP_ID = 4242
INSTALLATIONS = {"contoso": 101, "octo-user": 202}


def _key_pair() -> tuple[bytes, bytes]:
    """An RSA key as GitHub hands it out (PKCS#1 PEM) and its public half."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(Encoding.PEM, PrivateFormat.TraditionalOpenSSL, NoEncryption())
    return private, key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture(scope="module")
def keys() -> tuple[bytes, bytes]:
    return _key_pair()


@pytest.fixture
def key_file(tmp_path: Path, keys: tuple[bytes, bytes]) -> Path:
    path = tmp_path / "app.pem"
    path.write_bytes(keys[0])
    return path


@pytest.fixture
def sandbox(keys: tuple[bytes, bytes]) -> Iterator[Sandbox]:
    app = SandboxApp(app_id=APP_ID, public_key_pem=keys[1], installations=dict(INSTALLATIONS))
    with Sandbox(SandboxOptions(seed=7, work_items=240, now=NOW, github_app=app)) as sb:
        yield sb


def _store(tmp_path: Path, name: str) -> Store:
    return Store(f"sqlite:///{tmp_path}/{name}.db")


def _sources(sandbox: Sandbox, credentials: dict[str, Any], repos: list[str] | None = None) -> list[GitHubSource]:
    """One source per sandbox repository (each delivers through its own mode), as test_github does."""
    ctx = SourceContext(now=lambda: NOW, sleep=lambda s: None)
    out = []
    for repo, mode in sandbox.github.truth()["repos"].items():
        config = GitHubConfig(
            name="gh_" + repo.split("/")[1].replace("-", "_"),
            kind="github",
            base_url=sandbox.github_url,
            repositories=repos or [repo],
            deployments_from=mode,
            **credentials,
        )
        out.append(GitHubSource(config, ctx))
    return out


def _app(key_file: Path, **extra: Any) -> dict[str, Any]:
    return {"app": {"app_id": APP_ID, "private_key_file": str(key_file), **extra}}


def _statuses(sandbox: Sandbox) -> dict[str, int]:
    return dict(sandbox.server.stats.snapshot()["by_status"])


# -- the sync -------------------------------------------------------------------------------------
def test_a_full_sync_with_an_app_stores_what_the_token_sync_stores(
    sandbox: Sandbox, key_file: Path, tmp_path: Path
) -> None:
    with_token, with_app = _store(tmp_path, "token"), _store(tmp_path, "app")
    assert all(not s.sync(with_token).problems for s in _sources(sandbox, {"token": "sandbox-token"}))
    sources = _sources(sandbox, _app(key_file))
    assert all(not s.sync(with_app).problems for s in sources)
    digest = with_app.content_digest()
    assert digest["work_items"] and digest["changes"] and digest["deployments"]
    assert digest == with_token.content_digest()
    # one installation (contoso's, discovered), one token per source: a token lives an hour
    assert sandbox.github.apps.issued == {101: len(sources)}
    assert "401" not in _statuses(sandbox)


@pytest.mark.parametrize(("api", "requests"), [("rest", 110), ("auto", 15)])
def test_tokens_that_expire_during_a_pass_are_renewed_before_any_request_fails(
    sandbox: Sandbox, key_file: Path, tmp_path: Path, api: str, requests: int
) -> None:
    """``requests``: about what this repository's first pass asks with that plan (GraphQL included)."""
    assert sandbox.github.apps.app is not None
    sandbox.github.apps.app.token_lifetime = 2  # far shorter than the pass, slowed below
    sandbox.server.faults.rate, sandbox.server.faults.kinds = 1.0, ("slow",)
    sandbox.server.faults.slow_seconds = 6 / requests
    credentials = {**_app(key_file, installation_id=101), "api": api}
    source = next(s for s in _sources(sandbox, credentials) if s.config.deployments_from == "deployments")
    app = source.api.app
    assert app is not None
    store = _store(tmp_path, "app")
    started = time.monotonic()
    report = source.sync(store)
    took = time.monotonic() - started
    assert not report.problems
    print(f"{sandbox.server.stats.snapshot()['total']} requests in {took:.1f}s, {app.minted} tokens")
    assert took > 4, f"the pass took {took:.1f}s, not much longer than one token's life: nothing was proven"
    # renewed half a second (a quarter of its life) before each expiry: a token per 1.5 s at least
    assert app.minted >= int(took / 1.5)
    assert app.minted == sandbox.github.apps.issued[101] >= 2
    assert "401" not in _statuses(sandbox)
    truth = sandbox.github.truth()
    repo = source.config.repositories[0]
    assert len(store.work_items()) == sum(1 for w in truth["work_items"] if w["project"] == repo)


def test_a_refused_token_is_renewed_once_and_the_pass_does_not_notice(
    sandbox: Sandbox, key_file: Path, tmp_path: Path
) -> None:
    source = _sources(sandbox, _app(key_file))[0]
    store = _store(tmp_path, "app")
    assert not source.sync(store).problems
    assert source.api.app is not None and source.api.app.minted == 1
    assert sandbox.github.revoke_installation_tokens() == 1
    report = source.sync(store)
    assert not report.problems
    assert _statuses(sandbox).get("401") == 1  # the revoked token, once
    assert source.api.app.minted == 2


def test_each_owner_gets_its_own_installation_token(sandbox: Sandbox, key_file: Path, tmp_path: Path) -> None:
    source = _sources(sandbox, _app(key_file), repos=["contoso/web", "octo-user/tools"])[0]
    report = source.sync(_store(tmp_path, "app"))
    # octo-user's installation has no such repository (the sandbox serves contoso only): its 404
    # is a problem of that repository, and contoso's token was never sent for it
    assert report.details["repositories"] == 1
    assert [p.split(":")[0] for p in report.problems] == ["octo-user/tools"]
    assert sandbox.github.apps.issued == {101: 1, 202: 1}
    assert sandbox.server.stats.snapshot()["by_endpoint"]["github.installation"] == 2


def test_an_owner_without_the_app_installed_is_a_clear_error(sandbox: Sandbox, key_file: Path, tmp_path: Path) -> None:
    source = _sources(sandbox, _app(key_file), repos=["fabrikam/web"])[0]
    with pytest.raises(AuthError, match=r"GitHub App 4242 is not installed on fabrikam"):
        source.sync(_store(tmp_path, "app"))


def test_a_key_of_another_app_is_a_clear_error(sandbox: Sandbox, tmp_path: Path) -> None:
    other = tmp_path / "other.pem"
    other.write_bytes(_key_pair()[0])
    source = _sources(sandbox, _app(other))[0]
    with pytest.raises(AuthError, match=r"GitHub refused the JWT of app 4242 .*private key is this app's") as exc:
        source.sync(_store(tmp_path, "app"))
    assert "Traceback" not in str(exc.value)
    assert sandbox.github.apps.issued == {}
    # refused once, not retried as an expired installation token would be
    assert _statuses(sandbox) == {"401": 1}


def test_the_jwt_is_rs256_backdated_a_minute_and_lives_under_ten(keys: tuple[bytes, bytes], key_file: Path) -> None:
    now = 1_750_000_000.0
    clock = [now]
    auth = GitHubAppAuth(
        "gh",
        "https://api.github.com",
        GitHubAppConfig(app_id=APP_ID, private_key_file=str(key_file)),
        default_owner="contoso",
        clock=lambda: clock[0],
    )
    token = auth.jwt()
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    claims = jwt.decode(token, keys[1], algorithms=["RS256"], options={"verify_exp": False, "verify_iat": False})
    assert claims["iss"] == str(APP_ID)
    assert claims["iat"] == now - 60
    assert claims["exp"] > now and claims["exp"] - claims["iat"] <= 600
    # requests name their owner; the rest (rate_limit, GraphQL) use the first configured one
    assert auth.owner_of("https://api.github.com/repos/Octo-User/tools/issues?page=2") == "octo-user"
    assert auth.owner_of("https://api.github.com/orgs/fabrikam/repos") == "fabrikam"
    assert auth.owner_of("https://api.github.com/graphql") == "contoso"
    with auth.acting_for("Octo-User"):  # a GraphQL query about octo-user's repositories
        assert auth.owner_of("https://api.github.com/graphql") == "octo-user"
        assert auth.owner_of("https://api.github.com/repos/contoso/web") == "contoso"
    assert auth.owner_of("https://api.github.com/graphql") == "contoso"
    # reused while it has more than a minute left; its successor replaces it in the redactor
    clock[0] = now + 420
    assert auth.jwt() == token and REDACT(token) == "***"
    clock[0] = now + 481
    successor = auth.jwt()
    assert successor != token and REDACT(successor) == "***" and REDACT(token) == token


def test_no_token_or_jwt_reaches_the_logs(
    sandbox: Sandbox, key_file: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    minted_jwts: list[str] = []
    original = GitHubAppAuth.jwt

    def recording(self: GitHubAppAuth) -> str:
        minted_jwts.append(original(self))
        return minted_jwts[-1]

    monkeypatch.setattr(GitHubAppAuth, "jwt", recording)
    assert sandbox.github.apps.app is not None
    sandbox.github.apps.app.token_lifetime = 2
    caplog.set_level(logging.DEBUG)
    source = _sources(sandbox, _app(key_file))[0]
    store = _store(tmp_path, "app")
    source.sync(store)
    sandbox.github.revoke_installation_tokens()
    source.sync(store)  # the refusal and the renewal are logged too
    app = source.api.app
    assert app is not None
    live = app.token("contoso")
    tokens = set(sandbox.github.apps.tokens) | set(minted_jwts)
    assert minted_jwts and sandbox.github.apps.issued[101] >= 2
    text = caplog.text
    assert "installation 101 token valid until" in text  # the log does speak of tokens…
    for secret in tokens:
        assert secret not in text  # …never of their values
    # the ones still in use are known to the redactor, whatever prints them
    assert live in tokens and REDACT(f"Authorization: Bearer {live}") == "Authorization: Bearer ***"
    assert REDACT(app.jwt()) == "***"


# -- configuration --------------------------------------------------------------------------------
APP_CONFIG = """
sources:
  - name: gh
    kind: github
    repositories: [contoso/web]
{credentials}
"""


def _config(credentials: str) -> str:
    return APP_CONFIG.format(credentials="\n".join("    " + line for line in credentials.strip().splitlines()))


def _errors(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        parse_config(text, env or {})
    return exc.value.errors


def test_an_app_with_a_key_file_or_the_key_from_the_environment(key_file: Path, keys: tuple[bytes, bytes]) -> None:
    from_file = parse_config(_config(f"app: {{app_id: 4242, private_key_file: {key_file}}}"), {})
    assert from_file.sources[0].token is None and from_file.sources[0].app.private_key_file == str(key_file)
    pem = keys[0].decode()
    from_env = parse_config(
        _config("app: {app_id: 4242, private_key: '${GITHUB_APP_KEY}', installation_id: 7}"), {"GITHUB_APP_KEY": pem}
    )
    assert from_env.sources[0].app.installation_id == 7
    assert pem in from_env.secrets()  # an inline key is redacted like a token
    # a PEM squeezed onto one line with literal \n, as environment variables often carry it
    one_line = pem.replace("\n", "\\n")
    parsed = parse_config(_config("app: {app_id: 4242, private_key: '${K}'}"), {"K": one_line})
    assert parsed.sources[0].app.key_pem() == keys[0].strip()


def test_neither_a_token_nor_an_app_is_an_error() -> None:
    assert _errors(APP_CONFIG.format(credentials="")) == [
        "sources[0]: give token (a personal access token) or app (a GitHub App)"
    ]


@pytest.mark.parametrize(
    ("credentials", "message"),
    [
        ("token: t\napp: {app_id: 1, private_key_file: KEY}", "sources[0]: give token or app, not both"),
        ("app: {app_id: 1}", "sources[0].app: give the app's key as exactly one of private_key_file or private_key"),
        (
            "app: {app_id: 1, private_key_file: KEY, private_key: 'PEM'}",
            "sources[0].app: give the app's key as exactly one of private_key_file or private_key",
        ),
        (
            "app: {app_id: 0, private_key_file: KEY}",
            "sources[0].app.app_id: Input should be greater than or equal to 1",
        ),
    ],
)
def test_exactly_one_credential_and_one_key(
    key_file: Path, keys: tuple[bytes, bytes], credentials: str, message: str
) -> None:
    text = credentials.replace("KEY", str(key_file)).replace("PEM", keys[0].decode().replace("\n", "\\n"))
    errors = _errors(_config(text))
    assert any(e.startswith(message) for e in errors), errors
    assert keys[0].decode().splitlines()[1] not in "".join(errors)  # the key itself is never echoed


def _check_config(tmp_path: Path, app: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    config = tmp_path / "config.yaml"
    config.write_text(_config(app))
    code = main(["check-config", "--config", str(config)])
    return code, capsys.readouterr().err


def test_check_config_reads_and_parses_the_key_without_the_network(
    tmp_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(_config(f"app: {{app_id: 4242, private_key_file: {key_file}}}"))
    assert main(["check-config", "--config", str(config)]) == 0  # base_url is api.github.com: never asked
    assert "ok (1 sources: gh (github))" in capsys.readouterr().out

    missing = tmp_path / "missing.pem"
    code, err = _check_config(tmp_path, f"app: {{app_id: 1, private_key_file: {missing}}}", capsys)
    assert code == 2
    assert f"  sources[0].app.private_key_file: cannot read {missing}: No such file or directory\n" in err

    garbage = tmp_path / "garbage.pem"
    garbage.write_text("ghp_this_is_a_token_not_a_key\n")
    code, err = _check_config(tmp_path, f"app: {{app_id: 1, private_key_file: {garbage}}}", capsys)
    assert code == 2
    assert f"sources[0].app.private_key_file: {garbage} is not an RSA private key in PEM form" in err
    assert "ghp_this_is_a_token_not_a_key" not in err

    ec_key = tmp_path / "ec.pem"
    ec_key.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    )
    code, err = _check_config(tmp_path, f"app: {{app_id: 1, private_key_file: {ec_key}}}", capsys)
    assert code == 2 and f"{ec_key} is not an RSA key: GitHub Apps sign with RSA (RS256)" in err

    encrypted = tmp_path / "encrypted.pem"
    encrypted.write_bytes(
        rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            Encoding.PEM, PrivateFormat.TraditionalOpenSSL, BestAvailableEncryption(b"secret")
        )
    )
    code, err = _check_config(tmp_path, f"app: {{app_id: 1, private_key_file: {encrypted}}}", capsys)
    assert code == 2 and f"{encrypted} is encrypted: the collector needs the unencrypted key GitHub generated" in err

    unreadable = tmp_path / "dir.pem"
    unreadable.mkdir()
    code, err = _check_config(tmp_path, f"app: {{app_id: 1, private_key_file: {unreadable}}}", capsys)
    assert code == 2 and f"cannot read {unreadable}: Is a directory" in err
    assert "Traceback" not in err


def test_the_chart_schema_knows_the_app_keys() -> None:
    import json

    chart = json.loads(
        (Path(__file__).resolve().parents[2] / "helm/cycletime-collector/values.schema.json").read_text()
    )
    source = chart["properties"]["config"]["properties"]["sources"]["items"]["properties"]
    assert set(source["app"]["properties"]) == set(GitHubAppConfig.model_fields)
    assert source["app"]["additionalProperties"] is False


def test_cycletime_sync_with_an_app_and_with_a_wrong_key(sandbox: Sandbox, key_file: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    from conftest import sandbox_config

    def sync(key: Path) -> subprocess.CompletedProcess[str]:
        source = {
            "name": "gh",
            "kind": "github",
            "base_url": sandbox.github_url,
            "repositories": ["contoso/web"],
            "app": {"app_id": APP_ID, "private_key_file": str(key)},
        }
        config = tmp_path / "config.yaml"
        config.write_text(sandbox_config(f"sqlite:///{tmp_path}/cli.db", [source]))
        args = [sys.executable, "-m", "collector", "sync", "-v", "--log-format", "text", "--config", str(config)]
        root = Path(__file__).resolve().parents[2]
        return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=root)

    ok = sync(key_file)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "installation 101 token valid until" in ok.stderr  # debug logging was on
    assert sandbox.github.apps.tokens and not any(token in ok.stderr for token in sandbox.github.apps.tokens)

    other = tmp_path / "other.pem"
    other.write_bytes(_key_pair()[0])
    refused = sync(other)
    assert refused.returncode == 1
    assert "source gh failed: gh: GitHub refused the JWT of app 4242" in refused.stderr
    assert "Traceback" not in refused.stderr
