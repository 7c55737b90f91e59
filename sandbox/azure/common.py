"""What every Azure DevOps handler shares: error bodies, parameter parsing, the TSTU throttle, the
request context and the renderings used by more than one API area (identities, project refs, paging).
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sandbox.azure.data import Person, Project, SeededAzureOrg, iso, to_ms
from sandbox.server import Request, Response


class ApiError(Exception):
    """An error answered with the service's error body (``$id``, ``message``, ``typeKey``…)."""

    def __init__(self, status: int, message: str, type_key: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type_key = type_key
        self.headers = headers or {}

    def response(self) -> Response:
        return Response(self.status, error_body(self.message, self.type_key), dict(self.headers))


def error_body(message: str, type_key: str) -> dict[str, Any]:
    return {
        "$id": "1",
        "innerException": None,
        "message": message,
        "typeName": f"Microsoft.TeamFoundation.Framework.Server.{type_key}, Microsoft.TeamFoundation.Framework.Server",
        "typeKey": type_key,
        "errorCode": 0,
        "eventId": 3000,
    }


def parse_time(value: str, what: str) -> int:
    """Lenient ISO-8601 parse (``Z``, offsets, 1-7 fractional digits, dates) to epoch ms."""
    text = value.strip().replace(" ", "T")
    m = re.fullmatch(r"(\d{4}-\d{2}-\d{2})(?:T(\d{2}:\d{2}(?::\d{2})?)(?:\.(\d+))?)?(Z|[+-]\d{2}:?\d{2})?", text)
    if not m:
        raise ApiError(
            400, f"The value '{value}' is not a valid DateTime for parameter {what}.", "InvalidArgumentValueException"
        )
    date, clock, frac, zone = m.groups()
    stamp = date + "T" + (clock or "00:00:00")
    if clock and len(clock) == 5:
        stamp += ":00"
    if frac:
        stamp += "." + (frac + "000000")[:6]
    stamp += "+00:00" if zone in (None, "Z") else (zone if ":" in zone else zone[:3] + ":" + zone[3:])
    try:
        return to_ms(datetime.fromisoformat(stamp))
    except ValueError:
        raise ApiError(
            400, f"The value '{value}' is not a valid DateTime for parameter {what}.", "InvalidArgumentValueException"
        ) from None


def flag_arg(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("true", "1", "yes")


def csv_arg(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def int_arg(value: str | None, what: str, default: int | None = None) -> int | None:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ApiError(
            400, f"The value '{value}' is not valid for parameter {what}.", "InvalidArgumentValueException"
        ) from None


class Throttle:
    """Azure DevOps' TSTU budget over a sliding window (Azure DevOps rate limits: 200 TSTU per 5 minutes)."""

    def __init__(self, budget: float | None, window: float = 300.0, clock: Callable[[], float] = time.monotonic):
        self.budget = budget
        self.window = window
        self.clock = clock
        self.spent: deque[tuple[float, float]] = deque()
        self.lock = threading.Lock()

    def charge(self, cost: float) -> tuple[bool, dict[str, str]]:
        """Charge a request; returns (allowed, headers to send)."""
        if self.budget is None:
            return True, {}
        with self.lock:
            now = self.clock()
            while self.spent and self.spent[0][0] <= now - self.window:
                self.spent.popleft()
            used = sum(c for _, c in self.spent)
            reset = int(time.time() + (self.spent[0][0] + self.window - now if self.spent else 0))
            headers = {
                "X-RateLimit-Resource": "Core",
                "X-RateLimit-Limit": f"{self.budget:g}",
                "X-RateLimit-Reset": str(reset),
            }
            if used + cost > self.budget:
                wait = max(1, int(self.spent[0][0] + self.window - now + 0.999)) if self.spent else 1
                headers.update({"X-RateLimit-Remaining": "0", "Retry-After": str(wait), "X-RateLimit-Delay": "0.000"})
                return False, headers
            self.spent.append((now, cost))
            used += cost
            if used < 0.75 * self.budget:
                return True, {}
            headers["X-RateLimit-Remaining"] = f"{max(self.budget - used, 0):g}"
            if used >= 0.9 * self.budget:
                headers["Retry-After"] = "1"
                headers["X-RateLimit-Delay"] = "0.500"
            return True, headers


@dataclass
class Ctx:
    """Per-request facts every handler needs: where the client addressed us, which project."""

    req: Request
    org_url: str  # e.g. http://127.0.0.1:PORT/contoso
    project: Project | None
    api_version: str


class AzureHandlers:
    """Base of the per-area handler classes: the state they read and the renderings they share."""

    data: SeededAzureOrg
    organization: str
    page_size: int

    def _identity(self, ctx: Ctx, person: Person) -> dict[str, Any]:
        avatar = f"{ctx.org_url}/_apis/GraphProfile/MemberAvatars/aad.{person.id}"
        return {
            "displayName": person.name,
            "url": f"{ctx.org_url}/_apis/Identities/{person.id}",
            "_links": {"avatar": {"href": avatar}},
            "id": person.id,
            "uniqueName": person.email,
            "imageUrl": avatar,
            "descriptor": f"aad.{person.id}",
        }

    def _project_ref(self, project: Project) -> dict[str, Any]:
        return {
            "id": project.id,
            "name": project.name,
            "state": "wellFormed",
            "revision": 11,
            "visibility": "private",
            "lastUpdateTime": iso(self.data.start),
        }

    def _page(
        self, items: list[Any], req: Request, default_top: int, max_top: int = 10_000, top_name: str = "$top"
    ) -> tuple[list[Any], dict[str, str]]:
        """Offset paging with the continuation token in the ``x-ms-continuationtoken`` header."""
        top = min(max(int_arg(req.arg(top_name), top_name, default_top) or default_top, 1), max_top)
        offset = max(int_arg(req.arg("continuationToken"), "continuationToken", 0) or 0, 0)
        chunk = items[offset : offset + top]
        headers = {"x-ms-continuationtoken": str(offset + top)} if offset + top < len(items) else {}
        return chunk, headers
