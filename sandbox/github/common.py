"""What every GitHub handler shares: the error they raise, argument parsing, user ids, and the
lookups of the base class (repository, sorted views, objects by id)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from sandbox.github.data import BOT, PRIVATE_REPO, Repo, SeededGitHubOrg
from sandbox.server import Request


def user_id(login: str) -> int:
    if login == BOT:
        return 41898282
    if login == "web-flow":
        return 19864447
    return 5_000_000 + sum((i + 1) * ord(ch) for i, ch in enumerate(login))


def parse_time(value: str) -> datetime:
    """ISO-8601 as GitHub accepts it (``Z`` or an offset; a bare date is midnight UTC)."""
    text = value.strip().replace("Z", "+00:00").replace(" ", "+")
    dt = datetime.fromisoformat(text)
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def int_arg(req: Request, name: str, default: int, lo: int, hi: int) -> int:
    try:
        value = int(req.arg(name) or default)
    except ValueError:
        value = default
    return max(lo, min(hi, value))


def time_arg(req: Request, name: str) -> datetime | None:
    value = req.arg(name)
    if not value:
        return None
    try:
        return parse_time(value)
    except ValueError:
        raise BadRequest(422, f"Invalid value for `{name}`: {value!r} is not an ISO 8601 timestamp") from None


class GitHubHandlers:
    """Base of the per-area handler classes: the state they read and the lookups they share."""

    data: SeededGitHubOrg
    organization: str
    _sorted: dict[tuple[Any, ...], list[Any]]
    _sorted_version: int

    def _sorted_items(self, key: tuple[Any, ...], make: Callable[[], list[Any]]) -> list[Any]:
        """Sorted views, cached until the data change (sort once, slice per request)."""
        if self._sorted_version != self.data.version:
            self._sorted.clear()
            self._sorted_version = self.data.version
        if key not in self._sorted:
            self._sorted[key] = make()
        return self._sorted[key]

    def _repo_of(self, req: Request) -> Repo:
        owner, name = unquote(req.params["owner"]).lower(), unquote(req.params["repo"]).lower()
        if owner != self.organization.lower():
            raise BadRequest(404, "Not Found")
        if name == PRIVATE_REPO:
            raise BadRequest(403, "Resource not accessible by personal access token")
        repo = self.data.repos.get(name)
        if repo is None:
            raise BadRequest(404, "Not Found")
        return repo

    def _by_id(self, repo: Repo, kind: str, req: Request) -> Any:
        """Deployments, releases and runs by id (an index, so per-object calls stay O(1) at scale)."""
        index = self._sorted_items((kind, repo.name), lambda: [{x.id: x for x in getattr(repo, kind)}])[0]
        found = index.get(int(req.params["id"]))
        if found is None:
            raise BadRequest(404, "Not Found")
        return found
