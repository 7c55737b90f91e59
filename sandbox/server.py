"""The sandbox's HTTP core: routing, auth hooks, request counting, fault injection, ETags.

The Azure DevOps and GitHub halves (``sandbox.azure``, ``sandbox.github``) register routes on a
:class:`Router`; this module owns what both share, so each half stays a faithful list of
endpoints. Control endpoints live under ``/_sandbox/`` and are never counted or faulted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger(__name__)


@dataclass
class Request:
    method: str
    path: str  # without query string, percent-decoding left to the route
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    base_url: str  # scheme://host:port as the client addressed us, for absolute links
    params: dict[str, str] = field(default_factory=dict)  # named groups of the matched route

    def arg(self, name: str, default: str | None = None) -> str | None:
        """First value of a query parameter; names are matched case-insensitively like IIS does."""
        for key, values in self.query.items():
            if key.lower() == name.lower() and values:
                return values[0]
        return default

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Response:
    status: int = 200
    body: Any = None  # JSON-serialisable, or bytes/str sent as is
    headers: dict[str, str] = field(default_factory=dict)
    #: GitHub-style conditional GET: the core adds an ETag and answers 304 on If-None-Match
    etag: bool = False
    #: rate-limit points the answer cost beyond the request itself (GitHub GraphQL), for the stats
    points: int = 0

    def encoded(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body, separators=(",", ":")).encode()


Handler = Callable[[Request], Response]


@dataclass
class Route:
    method: str
    pattern: re.Pattern[str]
    name: str  # the endpoint name requests are counted under
    handler: Handler


class Router:
    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, pattern: str, name: str, handler: Handler) -> None:
        """``pattern`` is a full-match regex over the path; named groups become ``req.params``."""
        self.routes.append(Route(method.upper(), re.compile(pattern, re.IGNORECASE), name, handler))

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        for route in self.routes:
            if route.method != method:
                continue
            m = route.pattern.fullmatch(path)
            if m:
                return route, {k: v for k, v in m.groupdict().items() if v is not None}
        return None


@dataclass
class FaultPlan:
    """Deterministic fault injection: request n gets a fault iff the seeded RNG says so."""

    rate: float = 0.0
    kinds: tuple[str, ...] = ("429", "500", "502", "503", "reset", "truncate", "slow")
    seed: int = 0
    slow_seconds: float = 0.3
    retry_after: int = 1

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()

    def draw(self) -> str | None:
        with self._lock:
            if self.rate <= 0 or self._rng.random() >= self.rate:
                return None
            return self._rng.choice(self.kinds)


@dataclass
class Latency:
    """A network's round trip, added to every API answer: ``seconds`` ± ``jitter`` (uniform, seeded).

    A local sandbox answers in about a millisecond, which hides what serial requests cost against
    the real services (100-300 ms each); benchmarks and tests of concurrent reading set this.
    """

    seconds: float = 0.0
    jitter: float = 0.2  # fraction of ``seconds``
    seed: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()

    def draw(self) -> float:
        if self.seconds <= 0:
            return 0.0
        with self._lock:
            return self.seconds * self._rng.uniform(1 - self.jitter, 1 + self.jitter)


class Answered(NamedTuple):
    """One API request as the sandbox saw it (wall-clock seconds), for tests of request timing."""

    endpoint: str
    status: int
    arrived: float
    answered: float


class Stats:
    """Requests per endpoint name and status (and points, where an API charges them), readable at
    ``GET /_sandbox/stats``."""

    #: requests kept in the timing log (the newest)
    LOG_SIZE = 200_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._log: deque[Answered] = deque(maxlen=self.LOG_SIZE)
        self.by_endpoint: Counter[str] = Counter()
        self.by_status: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.points: Counter[str] = Counter()
        self.not_modified = 0
        self.total = 0

    def count(self, endpoint: str, status: int, points: int = 0, arrived: float | None = None) -> None:
        answered = time.time()
        with self._lock:
            self._log.append(Answered(endpoint, status, answered if arrived is None else arrived, answered))
            self.total += 1
            self.by_endpoint[endpoint] += 1
            self.by_status[str(status)] += 1
            if points:
                self.points[endpoint] += points
            if status == 304:
                self.not_modified += 1

    def fault(self, kind: str) -> None:
        with self._lock:
            self.faults[kind] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "total": self.total,
                "not_modified": self.not_modified,
                "by_endpoint": dict(self.by_endpoint),
                "by_status": dict(self.by_status),
                "faults": dict(self.faults),
                "points_by_endpoint": dict(self.points),
            }

    def requests(self) -> list[Answered]:
        """The timing log: when each request arrived and was answered, in answer order."""
        with self._lock:
            return list(self._log)

    def reset(self) -> None:
        with self._lock:
            self._log.clear()
            self.by_endpoint.clear()
            self.by_status.clear()
            self.faults.clear()
            self.points.clear()
            self.not_modified = 0
            self.total = 0


def etag_of(payload: bytes) -> str:
    return 'W/"' + hashlib.sha1(payload).hexdigest() + '"'


class SandboxHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    #: socketserver's default backlog of 5 drops the connections of a burst of concurrent clients
    #: (each dropped SYN costs the client a 1 s retransmit)
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        router: Router,
        faults: FaultPlan,
        control: Callable[[Request], Response | None],
        latency: Latency | None = None,
    ) -> None:
        super().__init__(address, _Handler)
        self.router = router
        self.faults = faults
        self.latency = latency or Latency()
        self.stats = Stats()
        self.control = control


class _Handler(BaseHTTPRequestHandler):
    server: SandboxHTTPServer
    protocol_version = "HTTP/1.1"
    #: headers and body leave in separate writes: without TCP_NODELAY each keep-alive request
    #: waits ~40 ms for the client's delayed ACK (Nagle), which dominated request-count benchmarks
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("sandbox: " + format, *args)

    def _dispatch(self) -> None:
        arrived = time.time()
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        host = self.headers.get("Host") or "{}:{}".format(*self.server.server_address[:2])
        req = Request(
            method=self.command,
            path=split.path,
            query=parse_qs(split.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            base_url=f"http://{host}",
        )
        if split.path.startswith("/_sandbox/"):
            resp = self.server.control(req) or Response(404, {"message": "no such control endpoint"})
            self._send(resp, resp.encoded())
            return
        matched = self.server.router.match(self.command, split.path)
        if matched is None:
            resp = Response(404, {"message": "Not Found", "path": split.path})
            self.server.stats.count("unmatched", 404)
            self._send(resp, resp.encoded())
            return
        route, req.params = matched
        # every thread sleeps its own round trip: concurrent clients overlap them, as on a network
        time.sleep(self.server.latency.draw())
        fault = self.server.faults.draw()
        if fault:
            self.server.stats.fault(fault)
        if fault == "reset":
            self.server.stats.count(route.name, 0, arrived=arrived)
            self._reset()
            return
        if fault in ("429", "500", "502", "503"):
            status = int(fault)
            headers = {"Retry-After": str(self.server.faults.retry_after)} if status == 429 else {}
            resp = Response(status, {"message": f"injected fault {fault}"}, headers)
            self.server.stats.count(route.name, status, arrived=arrived)
            self._send(resp, resp.encoded())
            return
        if fault == "slow":
            time.sleep(self.server.faults.slow_seconds)
        try:
            resp = route.handler(req)
        except Exception as exc:  # a sandbox bug must show as a 500, not a hung client
            log.exception("sandbox handler %s failed", route.name)
            resp = Response(500, {"message": f"sandbox error: {exc}"})
        payload = resp.encoded()
        if resp.etag and resp.status == 200:
            tag = etag_of(payload)
            resp.headers["ETag"] = tag
            if req.headers.get("if-none-match") == tag:
                resp = Response(304, None, {k: v for k, v in resp.headers.items() if k != "Link"})
                payload = b""
        self.server.stats.count(route.name, resp.status, resp.points, arrived=arrived)
        if fault == "truncate" and resp.status == 200 and len(payload) > 2:
            payload = payload[: len(payload) // 2]
            # Content-Length announces the full body: the client sees a short read, as on a cut link
            self._send(resp, payload, announced=len(payload) * 2)
            self.close_connection = True
            return
        self._send(resp, payload)

    def _reset(self) -> None:
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        finally:
            self.close_connection = True
            self.connection.close()

    def _send(self, resp: Response, payload: bytes, announced: int | None = None) -> None:
        self.send_response(resp.status)
        if resp.body is not None and not isinstance(resp.body, bytes | str):
            self.send_header("Content-Type", "application/json; charset=utf-8")
        for key, value in resp.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(announced if announced is not None else len(payload)))
        self.end_headers()
        if self.command != "HEAD" and payload:
            self.wfile.write(payload)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_OPTIONS = do_HEAD = _dispatch
