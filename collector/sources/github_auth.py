"""GitHub App authentication: the app's JWT, then one installation token per owner, kept fresh.

A GitHub App signs a short JWT (RS256, ``iss`` = the app id) with its private key and trades it at
``POST /app/installations/{id}/access_tokens`` for an installation token that lasts about an hour
(README, "GitHub App"). Installations belong to one account, so each owner in
``repositories`` gets the token of its own installation, discovered with ``GET
/orgs/{owner}/installation`` (then ``/users/{owner}/installation``) unless ``installation_id`` is
configured. Tokens are renewed before they expire, and once more if the API still answers 401, so
a pass never sees an expired token. Every JWT and token is handed to the redactor as it is minted.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import requests
from pydantic import Field, field_validator, model_validator

from collector.config_types import ConfigModel
from collector.errors import AuthError, SourceError
from collector.http import REDACT, ApiClient, ApiTelemetry, RetryPolicy

if TYPE_CHECKING:
    # PyJWT and cryptography (~8 MB resident) load only when a GitHub App is configured
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

log = logging.getLogger(__name__)


class AppAuthError(AuthError):
    """The app itself was refused (wrong key or app id, not installed): renewing a token cannot help."""


#: GitHub refuses a JWT that lives longer than 10 minutes; 9 leaves room for clock drift
JWT_LIFETIME = 540
#: ``iat`` this far in the past, so a server clock slightly behind ours still accepts it
JWT_BACKDATE = 60
#: renew an installation token this long before it expires (a quarter of a shorter lifetime)
REFRESH_MARGIN = 300.0


def read_private_key(pem: bytes, where: str) -> RSAPrivateKey:
    """An unencrypted RSA private key in PEM form (what GitHub hands out), or ValueError naming ``where``."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(pem, password=None)
    except TypeError:
        raise ValueError(f"{where} is encrypted: the collector needs the unencrypted key GitHub generated") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else "unreadable"
        if b"-----BEGIN" not in pem:
            reason = "no -----BEGIN RSA PRIVATE KEY----- block"
        raise ValueError(f"{where} is not an RSA private key in PEM form ({reason[:120]})") from None
    if not isinstance(key, RSAPrivateKey):
        raise ValueError(f"{where} is not an RSA key: GitHub Apps sign with RSA (RS256)")
    return key


def _inline_pem(value: str) -> bytes:
    """A PEM passed through an environment variable often arrives with ``\\n`` for its line breaks."""
    if "\n" not in value and "\\n" in value:
        value = value.replace("\\n", "\n")
    return value.strip().encode()


class GitHubAppConfig(ConfigModel):
    """A GitHub App installed on the owners of ``repositories`` (README, "GitHub App")."""

    app_id: int = Field(ge=1, description="The App ID shown on the app's settings page.")
    private_key_file: str | None = Field(
        None, min_length=1, description="PEM file of the app's private key (a mounted secret)."
    )
    private_key: str | None = Field(
        None, min_length=1, description="The PEM itself, from an environment variable: ${GITHUB_APP_KEY}."
    )
    installation_id: int | None = Field(
        None, ge=1, description="The installation to use for every owner; by default discovered per owner."
    )

    @field_validator("private_key_file")
    @classmethod
    def _key_file(cls, path: str | None) -> str | None:
        if path is not None:
            try:
                pem = Path(path).read_bytes()
            except OSError as exc:
                raise ValueError(f"cannot read {path}: {exc.strerror}") from None
            read_private_key(pem, path)
        return path

    @field_validator("private_key")
    @classmethod
    def _key(cls, value: str | None) -> str | None:
        if value is not None:
            read_private_key(_inline_pem(value), "private_key")
        return value

    @model_validator(mode="after")
    def _one_key(self) -> GitHubAppConfig:
        if (self.private_key_file is None) == (self.private_key is None):
            raise ValueError("give the app's key as exactly one of private_key_file or private_key")
        return self

    def key_pem(self) -> bytes:
        if self.private_key is not None:
            return _inline_pem(self.private_key)
        return Path(str(self.private_key_file)).read_bytes()


@dataclass
class _Token:
    value: str
    expires_at: float  # epoch seconds
    refresh_at: float


_OWNER = re.compile(r"/(?:repos|orgs|users)/([^/?#]+)")


class GitHubAppAuth:
    """Installation tokens of one GitHub App, per owner, minted on first use and renewed in time.

    ``clock`` is the wall clock (epoch seconds): tokens expire on GitHub's clock, not the pass's.
    """

    def __init__(
        self,
        source: str,
        base_url: str,
        app: GitHubAppConfig,
        *,
        default_owner: str,
        telemetry: ApiTelemetry | None = None,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.source = source
        self.app_id = app.app_id
        self.installation_id = app.installation_id
        self.default_owner = default_owner
        self.clock = clock
        where = app.private_key_file or "private_key"
        try:
            self._key = read_private_key(app.key_pem(), where)
        except OSError as exc:  # checked with the config; the file may have changed since
            raise AppAuthError(f"{source}: cannot read {where}: {exc.strerror}") from None
        except ValueError as exc:
            raise AppAuthError(f"{source}: {exc}") from None
        self._jwt: tuple[str, int] | None = None
        self._prefix = urlsplit(base_url).path.rstrip("/")
        # its own session: these requests carry the JWT, never an installation token
        self.client = ApiClient(
            source, base_url, None, telemetry=telemetry, policy=policy, sleep=sleep, headers=headers
        )
        self._installations: dict[str, int] = {}
        self._tokens: dict[int, _Token] = {}
        self._lock = threading.RLock()
        self._acting = threading.local()
        #: installation tokens minted so far (the tests count renewals)
        self.minted = 0

    # -- what the API client asks -----------------------------------------------------------
    def owner_of(self, url: str) -> str:
        """The account a request is about (``/repos/{owner}/…``, ``/orgs/{owner}``…); for anything
        else (``/rate_limit``, GraphQL) the owner of :meth:`acting_for`, else the first configured."""
        path = urlsplit(url).path
        if self._prefix and path.startswith(self._prefix):
            path = path[len(self._prefix) :]
        m = _OWNER.match(path)
        if m:
            return m.group(1).lower()
        return (getattr(self._acting, "owner", None) or self.default_owner).lower()

    @contextmanager
    def acting_for(self, owner: str) -> Iterator[None]:
        """Requests whose path names no owner (a GraphQL query about ``owner``'s repositories) use
        ``owner``'s installation inside this block, in this thread."""
        before = getattr(self._acting, "owner", None)
        self._acting.owner = owner
        try:
            yield
        finally:
            self._acting.owner = before

    def token(self, owner: str) -> str:
        """A live installation token for ``owner``'s installation."""
        with self._lock:
            installation = self._installation(owner.lower())
            held = self._tokens.get(installation)
            if held is None or self.clock() >= held.refresh_at:
                fresh = self._mint(installation)
                self._tokens[installation] = fresh
                if held is not None:
                    REDACT.discard(held.value)
                held = fresh
            return held.value

    def invalidate(self, owner: str) -> None:
        """The API refused ``owner``'s token (revoked, or expired early): the next use mints a new one."""
        with self._lock:
            installation = self._installations.get(owner.lower(), self.installation_id)
            held = self._tokens.pop(installation, None) if installation is not None else None
            if held is not None:
                REDACT.discard(held.value)

    # -- JWT and installation tokens --------------------------------------------------------
    def jwt(self) -> str:
        """The app's JWT: ``iat`` a minute back, ``exp`` within GitHub's ten minutes; reused until a
        minute before it expires (one at a time is known to the redactor)."""
        now = int(self.clock())
        if self._jwt is not None and now < self._jwt[1] - 60:
            return self._jwt[0]
        claims = {"iat": now - JWT_BACKDATE, "exp": now + JWT_LIFETIME, "iss": str(self.app_id)}
        import jwt as pyjwt

        token = pyjwt.encode(claims, self._key, algorithm="RS256")
        REDACT.add(token)
        if self._jwt is not None:
            REDACT.discard(self._jwt[0])
        self._jwt = (token, now + JWT_LIFETIME)
        return token

    def _installation(self, owner: str) -> int:
        if self.installation_id is not None:
            return self.installation_id
        found = self._installations.get(owner)
        if found is None:
            found = self._discover(owner)
            self._installations[owner] = found
        return found

    def _discover(self, owner: str) -> int:
        for path in (f"/orgs/{quote(owner)}/installation", f"/users/{quote(owner)}/installation"):
            data = self._app_request("GET", path)
            if data is not None:
                installation = data.get("id") if isinstance(data, dict) else None
                if isinstance(installation, int) and not isinstance(installation, bool) and installation > 0:
                    log.info(
                        "source=%s GitHub App %d: installation %d on %s", self.source, self.app_id, installation, owner
                    )
                    return installation
                raise SourceError(f"{self.source}: {path} answered without an installation id")
        raise AppAuthError(
            f"{self.source}: GitHub App {self.app_id} is not installed on {owner}: install it on the "
            "organisation or user, or set app.installation_id"
        )

    def _mint(self, installation: int) -> _Token:
        path = f"/app/installations/{installation}/access_tokens"
        started = self.clock()
        data = self._app_request("POST", path)
        value = data.get("token") if isinstance(data, dict) else None
        expires = data.get("expires_at") if isinstance(data, dict) else None
        if not isinstance(value, str) or not value:
            raise SourceError(f"{self.source}: {path} answered without a token")
        REDACT.add(value)
        expires_at = _epoch(expires) if isinstance(expires, str) else None
        if expires_at is None:
            raise SourceError(f"{self.source}: {path} answered without a valid expires_at")
        margin = min(REFRESH_MARGIN, max(expires_at - started, 0.0) / 4)
        self.minted += 1
        log.debug(
            "source=%s GitHub App %d: installation %d token valid until %s",
            self.source,
            self.app_id,
            installation,
            expires,
        )
        return _Token(value, expires_at, expires_at - margin)

    def _app_request(self, method: str, path: str) -> Any:
        """A request authenticated as the app; None for a 404 (no such installation)."""
        try:
            data, resp = self.client.request_json(method, path, headers={"Authorization": f"Bearer {self.jwt()}"})
        except AuthError:
            raise AppAuthError(
                f"{self.source}: GitHub refused the JWT of app {self.app_id} (401 on {method} {path}): "
                "check app_id and that the private key is this app's"
            ) from None
        if resp.status_code == 404:
            return None
        if resp.status_code >= 400:
            message = data.get("message", "") if isinstance(data, dict) else ""
            raise AppAuthError(
                f"{self.source}: GitHub App {self.app_id}: {method} {path} answered {resp.status_code}"
                + (f": {str(message)[:200]}" if message else "")
            )
        return data


class InstallationAuth(requests.auth.AuthBase):
    """Puts the owner's installation token on each request as it is sent (retries included), so a
    token renewed mid-pass is used at once. A request that carries its own Authorization keeps it."""

    def __init__(self, app: GitHubAppAuth) -> None:
        self.app = app

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        if "Authorization" not in r.headers:
            r.headers["Authorization"] = f"Bearer {self.app.token(self.app.owner_of(r.url or ''))}"
        return r


def _epoch(value: str) -> float | None:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
