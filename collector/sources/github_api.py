"""The GitHub REST API v3 client: conditional GETs, ``Link`` pagination, typed errors.

Everything goes through our :class:`~collector.http.ApiClient`, so every request is counted by
status code, rate limits (``x-ratelimit-*``, ``Retry-After``, secondary limits) are waited out,
retries are ours and the token is redacted (a GitHub App's installation tokens too, as they are
minted: :mod:`collector.sources.github_auth`). PyGithub is not used for polling: its
``PaginatedList`` cannot send ``If-None-Match`` (PyGithub #536, #2950) and its requests would
bypass our counting and rate-limit layer.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests

from collector.errors import AuthError, Rejected, SourceError
from collector.http import REDACT, ApiClient, next_link
from collector.sources.base import Pagination, PaginationError, SourceContext, record_key
from collector.sources.github_auth import AppAuthError, GitHubAppAuth, InstallationAuth

API_VERSION = "2022-11-28"
#: the largest page GitHub serves
PER_PAGE = 100


class GitHubHTTPError(SourceError):
    """A non-retryable answer (404 missing, 403 forbidden, 410 gone, 422 …) to one request."""

    def __init__(self, status: int, path: str, message: str = "") -> None:
        self.status = status
        self.path = path
        super().__init__(f"HTTP {status} for {path}" + (f": {message}" if message else ""))


class BadAnswer(SourceError):
    """An answer of the wrong shape (an object where the API documents a list): the part fails
    visibly rather than being read as empty."""


@dataclass
class Page:
    """One answer to a GET: its JSON body (None on a 304), its ETag and the next page's URL."""

    status: int  # 200 or 304
    data: Any
    etag: str | None
    next_url: str | None


class GitHubApi:
    """The REST calls on top of ApiClient: pagination, conditional GETs, typed errors."""

    def __init__(
        self, source: str, base_url: str, auth: str | GitHubAppAuth, ctx: SourceContext, *, reserve: float = 0.0
    ) -> None:
        """``auth`` is a personal access token, or a GitHub App whose installation tokens are put
        on each request as it is sent."""
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": API_VERSION}
        self.app = auth if isinstance(auth, GitHubAppAuth) else None
        # "Bearer" works for classic and fine-grained PATs and GitHub App installation tokens alike
        self.client = ApiClient(
            source,
            base_url,
            None if self.app else f"Bearer {auth}",
            secrets=[] if self.app else [str(auth)],
            telemetry=ctx.telemetry,
            policy=ctx.http_policy,
            sleep=ctx.sleep,
            headers=headers,
            reserve=reserve,
        )
        if self.app is not None:
            self.client.session.auth = InstallationAuth(self.app)

    @staticmethod
    def key(path: str, params: dict[str, Any] | None = None) -> str:
        """The identity of a request, to match a stored ETag to the request it answered."""
        return path + ("?" + urlencode(sorted(params.items())) if params else "")

    def request_json(self, method: str, path_or_url: str, **kwargs: Any) -> tuple[Any, requests.Response]:
        """``ApiClient.request_json``; with an app, an installation token refused before its expiry
        (revoked, clocks apart) is renewed and the request sent once more, unseen by the caller."""
        try:
            return self.client.request_json(method, path_or_url, **kwargs)
        except AppAuthError:
            raise
        except AuthError:
            if self.app is None:
                raise
            self.app.invalidate(self.app.owner_of(self.client.url(path_or_url)))
            return self.client.request_json(method, path_or_url, **kwargs)

    def get(self, path_or_url: str, params: dict[str, Any] | None = None, etag: str | None = None) -> Page:
        headers = {"If-None-Match": etag} if etag else None
        data, resp = self.request_json("GET", path_or_url, params=params, headers=headers)
        if resp.status_code == 304:
            return Page(304, None, etag, None)
        if resp.status_code >= 400:
            message = data.get("message", "") if isinstance(data, dict) else ""
            raise GitHubHTTPError(resp.status_code, path_or_url.split("?", 1)[0], str(message)[:200])
        return Page(resp.status_code, data, resp.headers.get("ETag"), next_link(resp))

    def pages(
        self, path: str, params: dict[str, Any] | None = None, etag: str | None = None, list_key: str | None = None
    ) -> Iterator[Page]:
        """Page 1 (conditionally, given ``etag``), then each ``Link: rel="next"`` page.

        A 304 on page 1 is yielded and ends the walk (a 304 has no Link header). A next link seen
        before in the walk (a cycle), more than ``MAX_PAGES`` pages, or ``MAX_IDLE_PAGES`` pages in
        a row without a new record raise SourceError (``Pagination``): a misbehaving server cannot
        make us spin.
        """
        walk = Pagination(f"{self.client.source}: {path.split('?', 1)[0]}")
        page = self.get(path, params, etag)
        if page.status == 200:
            walk.page(_page_keys(page.data, list_key))
        yield page
        while page.status == 200 and page.next_url:
            if _origin(page.next_url) != _origin(self.client.base_url):
                # a link elsewhere would be sent our token with the session's headers
                raise PaginationError(
                    f"{walk.what}: the next page's link leads to another host ({_origin(page.next_url)}); not followed"
                )
            walk.follow(page.next_url)
            page = self.get(page.next_url)
            walk.page(_page_keys(page.data, list_key))
            yield page

    def items(self, path: str, params: dict[str, Any] | None = None, key: str | None = None) -> Iterator[Any]:
        """Every element of a paginated list (``key`` picks the list out of an object answer)."""
        for page in self.pages(path, params, list_key=key):
            yield from records(page.data, key)


def _origin(url: str) -> str:
    """Scheme, host and port, as a browser compares origins (host names are case-insensitive)."""
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    try:
        port = parts.port or default
    except ValueError:  # a port that is no number: no origin of ours
        return REDACT(url)[:80]
    return f"{parts.scheme.lower()}://{(parts.hostname or '').lower()}:{port}"


def github_time(value: object) -> datetime:
    """GitHub's ISO 8601 timestamps (``2024-05-01T10:00:00Z``) as aware UTC.

    Anything else, or a time with no UTC form (``9999-12-31T23:59:59-01:00``), raises
    ``Rejected("bad_timestamp")``, a ValueError: the caller rejects the record.
    """
    if not isinstance(value, str) or not value or len(value) > 40:
        raise Rejected("bad_timestamp", f"not a timestamp: {value!r}"[:80])
    if value[-1] == "Z" and "Z" not in value[:-1]:  # the usual form, tens of thousands a sync: already UTC
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass  # rejected below, with the same message
        else:
            if parsed.tzinfo is UTC:
                return parsed
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise Rejected("bad_timestamp", f"not a timestamp: {value!r}"[:80]) from None


def format_time(value: datetime) -> str:
    """The form GitHub's ``since`` parameter takes (ISO 8601, ``Z``, whole seconds)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def records(data: Any, key: str | None = None) -> list[dict[str, Any]]:
    """The dict elements of a list answer (or of ``data[key]``); other elements are no records.

    An answer that is no list (an object where the API documents one) raises BadAnswer: read as
    empty, it would silently drop a page and move the watermark past it.
    """
    if key is not None:
        data = data.get(key) if isinstance(data, dict) else None
    if not isinstance(data, list):
        raise BadAnswer(f"expected a list{f' in {key!r}' if key else ''}, got {type(data).__name__}")
    return [r for r in data if isinstance(r, dict)]


def _page_keys(data: Any, key: str | None) -> list[Any]:
    """The identities of a list page's records, for ``Pagination``."""
    if key is not None:
        data = data.get(key) if isinstance(data, dict) else None
    return [record_key(r) for r in data] if isinstance(data, list) else []
