"""A GitHub App and its installations: the app's JWT, installation tokens with a short lifetime.

Shaped like ``github/rest-api-description`` (``apps/get-org-installation``,
``apps/get-user-installation``, ``apps/get-repo-installation``,
``apps/create-installation-access-token``). The app authenticates with a JWT signed RS256 by its
private key (verified here against the public key, ``iss`` = the app id, at most 10 minutes);
installation tokens (``ghs_…``) then work on every REST route of their account until they expire,
after which GitHub answers ``401 Bad credentials``.
"""

from __future__ import annotations

import secrets
import string
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

import jwt

from sandbox.github.common import BadRequest, GitHubHandlers
from sandbox.github.shapes import Shapes
from sandbox.server import Request, Response

DOCS_APPS = "https://docs.github.com/rest/apps/apps"
#: GitHub refuses a JWT whose ``exp`` is more than 10 minutes after ``iat``
MAX_JWT_SECONDS = 600
#: what a sandbox app may do: the collector's read-only needs
PERMISSIONS = {
    "actions": "read",
    "contents": "read",
    "deployments": "read",
    "issues": "read",
    "metadata": "read",
    "pull_requests": "read",
}


@dataclass
class SandboxApp:
    """A GitHub App the sandbox knows: its id, its public key, where it is installed."""

    app_id: int
    public_key_pem: bytes
    #: account login (an organisation or a user) → installation id
    installations: dict[str, int]
    #: seconds an installation token lives (GitHub: one hour); tests use a few seconds
    token_lifetime: int = 3600
    slug: str = "cycletime-sandbox"


@dataclass
class IssuedToken:
    installation_id: int
    account: str
    expires_at: int  # epoch seconds, as the whole-second expires_at the client was told


@dataclass
class AppState:
    app: SandboxApp | None = None
    tokens: dict[str, IssuedToken] = field(default_factory=dict)
    #: installation tokens issued so far, per installation id
    issued: dict[int, int] = field(default_factory=dict)

    def token(self, value: str) -> IssuedToken | None:
        return self.tokens.get(value)

    def revoke(self) -> int:
        """Forget every installation token (as GitHub does on ``DELETE /installation/token``)."""
        count = len(self.tokens)
        self.tokens.clear()
        return count


def verify_jwt(app: SandboxApp, token: str) -> str | None:
    """None if ``token`` is a valid JWT of ``app``; otherwise GitHub's 401 message."""
    try:
        claims = jwt.decode(
            token,
            app.public_key_pem,
            algorithms=["RS256"],
            options={"require": ["iat", "exp", "iss"], "verify_exp": False, "verify_iat": False},
        )
    except jwt.PyJWTError:
        return "A JSON web token could not be decoded"
    now = time.time()
    iat, exp = claims.get("iat"), claims.get("exp")
    if not isinstance(iat, int) or iat > now + 60:
        return "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued"
    if not isinstance(exp, int) or exp <= now:
        return (
            "'Expiration time' claim ('exp') must be a numeric value representing the future time at which "
            "the assertion expires"
        )
    if exp - iat > MAX_JWT_SECONDS:
        return "'Expiration time' claim ('exp') is too far in the future"
    if str(claims.get("iss")) != str(app.app_id):
        return "A JSON web token could not be decoded"
    return None


class AppsHandlers(GitHubHandlers):
    """``/orgs/{org}/installation``, ``/users/{user}/installation``, ``/repos/{o}/{r}/installation``
    and ``POST /app/installations/{id}/access_tokens``: called with the app's JWT."""

    apps: AppState

    def _installation_of(self, ctx: Shapes, account: str) -> Response:
        app = self.apps.app
        assert app is not None
        found = {login.lower(): (login, iid) for login, iid in app.installations.items()}.get(account.lower())
        if found is None:
            raise BadRequest(404, "Not Found")
        login, installation = found
        owner = ctx.user(login)
        return Response(200, _installation(ctx, app, installation, owner))

    def _org_installation(self, ctx: Shapes, req: Request) -> Response:
        return self._installation_of(ctx, unquote(req.params["org"]))

    def _user_installation(self, ctx: Shapes, req: Request) -> Response:
        return self._installation_of(ctx, unquote(req.params["user"]))

    def _repo_installation(self, ctx: Shapes, req: Request) -> Response:
        return self._installation_of(ctx, unquote(req.params["owner"]))

    def _access_token(self, ctx: Shapes, req: Request) -> Response:
        app = self.apps.app
        assert app is not None
        installation = int(req.params["id"])
        account = next((login for login, iid in app.installations.items() if iid == installation), None)
        if account is None:
            raise BadRequest(404, "Not Found")
        value = "ghs_" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(36))
        expires_at = int(time.time()) + app.token_lifetime
        self.apps.tokens[value] = IssuedToken(installation, account.lower(), expires_at)
        self.apps.issued[installation] = self.apps.issued.get(installation, 0) + 1
        body = {
            "token": value,
            "expires_at": datetime.fromtimestamp(expires_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "permissions": dict(PERMISSIONS),
            "repository_selection": "all",
        }
        return Response(201, body)


def _installation(ctx: Shapes, app: SandboxApp, installation: int, owner: dict[str, Any]) -> dict[str, Any]:
    kind = owner["type"]
    settings = "organizations/" + owner["login"] if kind == "Organization" else "settings"
    return {
        "id": installation,
        "client_id": f"Iv1.{app.app_id:016x}",
        "account": owner,
        "repository_selection": "all",
        "access_tokens_url": f"{ctx.api}/app/installations/{installation}/access_tokens",
        "repositories_url": f"{ctx.api}/installation/repositories",
        "html_url": f"{ctx.web}/{settings}/installations/{installation}",
        "app_id": app.app_id,
        "app_slug": app.slug,
        "target_id": owner["id"],
        "target_type": kind,
        "permissions": dict(PERMISSIONS),
        "events": [],
        "created_at": "2025-01-06T09:00:00Z",
        "updated_at": "2025-01-06T09:00:00Z",
        "single_file_name": None,
        "has_multiple_single_files": False,
        "single_file_paths": [],
        "suspended_by": None,
        "suspended_at": None,
    }
