"""Contract tests for the sandbox's GitHub App endpoints, with plain ``requests`` and PyGithub's
``GithubIntegration`` as clients.

Key sets are the ``required`` properties of ``installation`` and ``installation-token`` in
``github/rest-api-description`` (api.github.com 2022-11-28); messages are GitHub's.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from github import Auth, Github, GithubIntegration

from sandbox.app import Sandbox, SandboxOptions
from sandbox.github.apps import SandboxApp

APP_ID = 77
INSTALLATION = {
    "id",
    "account",
    "repository_selection",
    "access_tokens_url",
    "repositories_url",
    "html_url",
    "app_id",
    "target_id",
    "target_type",
    "permissions",
    "events",
    "created_at",
    "updated_at",
    "single_file_name",
    "app_slug",
    "suspended_by",
    "suspended_at",
}
INSTALLATION_TOKEN = {"token", "expires_at"}


def _pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(Encoding.PEM, PrivateFormat.TraditionalOpenSSL, NoEncryption())


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def sandbox(key: rsa.RSAPrivateKey) -> Iterator[Sandbox]:
    public = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    app = SandboxApp(app_id=APP_ID, public_key_pem=public, installations={"contoso": 11, "octo-user": 12})
    with Sandbox(SandboxOptions(seed=3, work_items=40, github_app=app)) as sb:
        yield sb


def _jwt(key: rsa.RSAPrivateKey, *, iat: float | None = None, lifetime: int = 540, iss: Any = str(APP_ID)) -> str:
    now = int(time.time() if iat is None else iat)
    return jwt.encode({"iat": now - 60, "exp": now + lifetime, "iss": iss}, key, algorithm="RS256")


def _call(sandbox: Sandbox, method: str, path: str, token: str) -> requests.Response:
    return requests.request(method, sandbox.github_url + path, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def test_installations_and_tokens_have_githubs_shapes(sandbox: Sandbox, key: rsa.RSAPrivateKey) -> None:
    app_jwt = _jwt(key)
    for path, account, kind in (
        ("/orgs/contoso/installation", "contoso", "Organization"),
        ("/users/octo-user/installation", "octo-user", "User"),
        ("/repos/contoso/web/installation", "contoso", "Organization"),
    ):
        found = _call(sandbox, "GET", path, app_jwt)
        assert found.status_code == 200, found.text
        body = found.json()
        assert set(body) >= INSTALLATION, INSTALLATION - set(body)
        assert (body["account"]["login"], body["target_type"], body["app_id"]) == (account, kind, APP_ID)
        assert body["access_tokens_url"] == f"{sandbox.github_url}/app/installations/{body['id']}/access_tokens"
    assert _call(sandbox, "GET", "/orgs/fabrikam/installation", app_jwt).status_code == 404

    minted = _call(sandbox, "POST", "/app/installations/11/access_tokens", app_jwt)
    assert minted.status_code == 201
    body = minted.json()
    assert set(body) >= INSTALLATION_TOKEN and body["token"].startswith("ghs_") and len(body["token"]) == 40
    expires = datetime.strptime(body["expires_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert 3590 <= expires.timestamp() - time.time() <= 3600
    assert body["permissions"]["metadata"] == "read" and set(body["permissions"].values()) == {"read"}
    # the token reads its own account's repositories, and no other's
    assert _call(sandbox, "GET", "/repos/contoso/web", body["token"]).status_code == 200
    assert _call(sandbox, "GET", "/repos/octo-user/web", body["token"]).status_code == 404
    assert _call(sandbox, "POST", "/app/installations/99/access_tokens", app_jwt).status_code == 404


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda key: _jwt(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
            "A JSON web token could not be decoded",
        ),
        (lambda key: _jwt(key, iss=str(APP_ID + 1)), "A JSON web token could not be decoded"),
        (lambda key: _jwt(key, iat=time.time() - 900), "'Expiration time' claim ('exp') must be a numeric value"),
        (lambda key: _jwt(key, lifetime=1200), "'Expiration time' claim ('exp') is too far in the future"),
        (lambda key: "not-a-jwt", "A JSON web token could not be decoded"),
    ],
)
def test_a_bad_jwt_gets_githubs_401(sandbox: Sandbox, key: rsa.RSAPrivateKey, make: Any, message: str) -> None:
    refused = _call(sandbox, "POST", "/app/installations/11/access_tokens", make(key))
    assert refused.status_code == 401
    assert refused.json()["message"].startswith(message)
    assert refused.json()["documentation_url"].startswith("https://docs.github.com/rest")
    assert sandbox.github.apps.issued == {}


def test_an_expired_installation_token_is_bad_credentials(sandbox: Sandbox, key: rsa.RSAPrivateKey) -> None:
    assert sandbox.github.apps.app is not None
    sandbox.github.apps.app.token_lifetime = 1
    token = _call(sandbox, "POST", "/app/installations/11/access_tokens", _jwt(key)).json()["token"]
    time.sleep(1.1)
    expired = _call(sandbox, "GET", "/repos/contoso/web/issues", token)
    assert expired.status_code == 401
    assert expired.json() == {
        "message": "Bad credentials",
        "documentation_url": "https://docs.github.com/rest",
        "status": "401",
    }
    # and an app JWT is no REST credential
    assert _call(sandbox, "GET", "/repos/contoso/web", _jwt(key)).status_code == 401


def test_pygithub_as_an_app_reads_through_its_installation(sandbox: Sandbox, key: rsa.RSAPrivateKey) -> None:
    integration = GithubIntegration(auth=Auth.AppAuth(APP_ID, _pem(key).decode()), base_url=sandbox.github_url)
    installation = integration.get_org_installation("contoso")
    assert installation.id == 11
    access = integration.get_access_token(installation.id)
    assert access.token.startswith("ghs_") and access.expires_at > datetime.now(UTC)
    repo = Github(base_url=sandbox.github_url, auth=Auth.Token(access.token)).get_repo("contoso/web")
    assert repo.full_name == "contoso/web"
