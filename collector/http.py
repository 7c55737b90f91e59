"""All HTTP to source APIs goes through here: timeouts, retries, rate limits, counting, redaction.

Why hand-rolled retries instead of urllib3's ``Retry``: we must count every attempt by status code
(``cycletime_api_requests_total``), record the rate-limit budget from every answer, sleep on
``Retry-After`` even on a 200 (Azure DevOps delays before it blocks), wait for GitHub's
``x-ratelimit-reset`` on 403/429, and retry on truncated JSON bodies. urllib3 does only part of that.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import heapq
import http.cookiejar
import itertools
import json
import logging
import random
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import msgspec
import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers, guess_json_utf
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from collector.errors import AuthError, RateLimited, SourceError

log = logging.getLogger(__name__)

TRANSIENT_STATUS = {429, 500, 502, 503, 504}
USER_AGENT = "cycletime-collector/0.1"


class Redactor:
    """Replaces every known secret (and its Basic-auth encodings) with ``***`` in any text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._needles: list[str] = []
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None) -> None:
        if not secret or len(secret) < 4:
            return
        forms = {
            secret,
            base64.b64encode(f":{secret}".encode()).decode(),
            base64.b64encode(f"x:{secret}".encode()).decode(),
        }
        self._needles.extend(sorted(forms - set(self._needles), key=len, reverse=True))

    def discard(self, secret: str | None) -> None:
        """Forget a secret that is never sent again (a replaced short-lived token), so a long-running
        process does not accumulate them."""
        if not secret:
            return
        forms = {
            secret,
            base64.b64encode(f":{secret}".encode()).decode(),
            base64.b64encode(f"x:{secret}".encode()).decode(),
        }
        self._needles = [n for n in self._needles if n not in forms]

    def __call__(self, text: object) -> str:
        out = str(text)
        for needle in self._needles:
            out = out.replace(needle, "***")
        return out


#: process-wide redactor; sources register their tokens, the log formatter applies it
REDACT = Redactor()


#: the rate-limit resources GitHub names in ``x-ratelimit-resource`` and the API budget they are
#: (an answer without the header is ``rest``; other resources, e.g. ``search``, keep their name)
API_OF_RESOURCE = {"core": "rest", "graphql": "graphql"}


@dataclass(frozen=True)
class Budget:
    """One API's rate-limit window as its latest answer reported it."""

    remaining: float
    limit: float | None = None
    #: Unix time the window resets (``x-ratelimit-reset``, GraphQL's ``rateLimit.resetAt``)
    reset_at: float | None = None


class BudgetExhausted(RateLimited):
    """Another request would spend the reserve and the window resets later than we wait: the pass
    ends early and cleanly, and the next one resumes from the watermarks."""

    def __init__(self, message: str, api: str, reset_at: float | None) -> None:
        super().__init__(message)
        self.api = api
        self.reset_at = reset_at


@dataclass
class ApiTelemetry:
    """What one source's HTTP did: requests by status code and the budget of each API it spends.

    Budgets are per API (``rest``, ``graphql``): GitHub counts them separately. Clients that learn
    a budget some other way than the ``x-ratelimit-*`` headers (GraphQL's ``rateLimit`` object)
    report it with :meth:`note_budget`.
    """

    requests: Counter[str] = field(default_factory=Counter)
    #: the last ``rest`` budget (``cycletime_api_rate_limit_remaining``)
    rate_limit_remaining: float | None = None
    #: the API stopped reporting a budget (Azure DevOps sends one only while it throttles): the last
    #: value no longer holds and must not be kept
    rate_limit_expired: bool = False
    budgets: dict[str, Budget] = field(default_factory=dict)
    slept_seconds: float = 0.0
    #: attempts that failed and were tried again (errors, transient statuses, invalid answers, rate
    #: limits): a source that commits more often while its API fails reads it
    retries: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, code: str) -> None:
        with self._lock:
            self.requests[code] += 1

    def note_retry(self) -> None:
        with self._lock:
            self.retries += 1

    def note_budget(
        self, api: str, remaining: float, limit: float | None = None, reset_at: float | None = None
    ) -> None:
        """The budget an answer reported for ``api`` (``rest`` or ``graphql``); ``reset_at`` in Unix
        seconds (GraphQL's ``rateLimit { remaining limit resetAt }``: resetAt converted). The
        ``x-ratelimit-*`` headers are noted by the client itself."""
        with self._lock:
            self.budgets[api] = Budget(float(remaining), limit, reset_at)
            if api == "rest":
                self.rate_limit_remaining = float(remaining)
                self.rate_limit_expired = False

    def forget_budget(self, api: str) -> None:
        """The API no longer reports a budget for ``api``: the last one does not hold any more."""
        with self._lock:
            self.budgets.pop(api, None)
            if api == "rest":
                self.rate_limit_remaining = None
                self.rate_limit_expired = True

    def budget(self, api: str) -> Budget | None:
        with self._lock:
            return self.budgets.get(api)

    def take(self) -> Counter[str]:
        """Counts since the last take: the store adds them to its persistent counters."""
        with self._lock:
            taken, self.requests = self.requests, Counter()
            return taken


@dataclass
class RetryPolicy:
    attempts: int = 6
    backoff: float = 0.5  # first backoff; doubles each attempt, with full jitter
    max_backoff: float = 30.0
    #: the longest we sleep for one rate-limit reset; beyond it we fail rather than hang a job
    max_rate_limit_wait: float = 3600.0
    #: connect and per-read timeout: a silent server fails fast
    timeout: float = 30.0
    #: the whole answer must arrive within this, so a server trickling a byte every few seconds
    #: cannot hold a pass forever
    deadline: float = 120.0
    #: the largest answer we read; real pages are at most a few MB, so anything bigger is hostile
    max_body_bytes: int = 64 * 1024 * 1024


class RequestGate:
    """What the clients reading one organisation share: at most ``limit`` requests in flight, and
    one pause for all of them when an answer asks to slow down (README.md, "Concurrency").

    A rate limit is per caller, not per connection: a worker that keeps sending while another one
    waits out ``Retry-After`` only deepens the throttling. While the API reports a shrinking budget
    the gate lets one request through at a time.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._cond = threading.Condition()
        self._in_flight = 0
        self._paused_until = 0.0  # time.monotonic()
        self._serial = False

    def narrow(self, limit: int) -> None:
        """Sources of one organisation share the smallest limit any of them asks for."""
        with self._cond:
            self.limit = min(self.limit, limit)

    def pause(self, seconds: float) -> float:
        """No request leaves before ``seconds`` from now (monotonic; returned), nor before the end
        of a longer pause already asked for."""
        until = time.monotonic() + seconds
        with self._cond:
            self._paused_until = max(self._paused_until, until)
        return until

    def paused_until(self) -> float:
        with self._cond:
            return self._paused_until

    def serial(self, on: bool) -> None:
        """One request at a time (``on``) while the API reports a budget running short."""
        with self._cond:
            self._serial = on
            self._cond.notify_all()

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        with self._cond:
            while self._in_flight >= (1 if self._serial else self.limit):
                self._cond.wait()
            self._in_flight += 1
        try:
            yield
        finally:
            with self._cond:
                self._in_flight -= 1
                self._cond.notify()


class AnswerTooLarge(SourceError):
    """The answer exceeded ``max_body_bytes``: not retried (the same answer would come back)."""


class _DeadlineExceeded(requests.RequestException):
    """The answer did not arrive within the overall deadline (retried like a timeout)."""


class _Watch:
    """The sockets one request uses, shut down when its deadline passes: a read blocked anywhere
    (waiting for the status line, headers trickling in, a body that stalls) returns at once. The
    per-read timeout alone would let a server sending a byte every few seconds hold it forever."""

    def __init__(self) -> None:
        self.fired = False
        self.done = False  # the request ended: firing now would cut a later request on its sockets
        self._sockets: list[tuple[socket.socket, _Endpoint | None]] = []
        self._lock = threading.Lock()

    def add(self, sock: socket.socket | None, new: bool = True) -> None:
        """``new``: a connection being opened, whose TLS handshake may yet take its descriptor over
        (a kept-alive one's is over: its endpoint, two system calls, is not needed)."""
        with self._lock:
            if sock is None or any(sock is known for known, _ in self._sockets):
                return
            entry = (sock, _endpoint(sock) if new else None)
            self._sockets.append(entry)
            if not self.fired:
                return
        self._shut(*entry)

    def finish(self) -> None:
        with self._lock:
            self.done = True

    def fire(self) -> None:
        with self._lock:
            if self.done:
                return
            self.fired = True
            sockets = list(self._sockets)
        for sock, endpoint in sockets:
            self._shut(sock, endpoint)

    @staticmethod
    def _shut(sock: socket.socket, endpoint: _Endpoint | None) -> None:
        with contextlib.suppress(OSError):
            if sock.fileno() != -1:
                sock.shutdown(socket.SHUT_RDWR)
            elif endpoint is not None:
                # a TLS handshake detached this socket object and runs on its descriptor: shut the
                # connection down through the descriptor, if it still is this very connection
                fd, local, peer = endpoint
                held = socket.socket(fileno=fd)
                try:
                    if held.getsockname() == local and held.getpeername() == peer:
                        held.shutdown(socket.SHUT_RDWR)
                finally:
                    held.detach()  # the descriptor stays the TLS socket's to close


#: a connected socket's descriptor and both ends, to find it again after a TLS handshake took it over
_Endpoint = tuple[int, Any, Any]


def _endpoint(sock: socket.socket) -> _Endpoint | None:
    try:
        return sock.fileno(), sock.getsockname(), sock.getpeername()
    except OSError:
        return None


class _Deadlines:
    """One daemon thread for the whole process fires the watches whose deadline passed.

    A ``threading.Timer`` per request started a thread per request, which cost more CPU than the
    rest of the request. Watches of finished requests are dropped when they come due; the thread
    wakes at most every ``GRAIN`` seconds, so a deadline fires up to that late.
    """

    GRAIN = 0.25

    def __init__(self) -> None:
        self._due: list[tuple[float, int, _Watch]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def arm(self, watch: _Watch, seconds: float) -> None:
        entry = (time.monotonic() + seconds, next(self._order), watch)
        with self._wake:
            heapq.heappush(self._due, entry)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="cycletime-deadlines", daemon=True)
                self._thread.start()
            elif self._due[0] is entry:
                self._wake.notify()  # due before everything it waits for

    def _run(self) -> None:
        while True:
            with self._wake:
                now = time.monotonic()
                fired = []
                while self._due and self._due[0][0] <= now:
                    fired.append(heapq.heappop(self._due)[2])
                if not fired:
                    self._wake.wait(max(self._due[0][0] - now, self.GRAIN) if self._due else None)
                    continue
            for watch in fired:
                watch.fire()


_DEADLINES = _Deadlines()

#: the watch of the request this thread is sending, for the connections it opens or reuses
_WATCHING = threading.local()


class _WatchedMixin:
    """A urllib3 connection that hands its socket to the current request's watch."""

    sock: socket.socket | None

    @staticmethod
    def _watch(sock: socket.socket | None, new: bool = True) -> None:
        watch: _Watch | None = getattr(_WATCHING, "watch", None)
        if watch is not None:
            watch.add(sock, new)

    def _new_conn(self) -> socket.socket:
        sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        # a new connection's socket, before the request is sent on it (a TLS handshake wraps its
        # descriptor into another socket object, which ``request`` adds; during the handshake the
        # watch reaches the connection through the descriptor)
        self._watch(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        self._watch(self.sock, new=False)  # a kept-alive connection: its socket is already open
        super().request(*args, **kwargs)  # type: ignore[misc]


class _WatchedHTTPConnection(_WatchedMixin, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_WatchedMixin, HTTPSConnection):
    pass


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class _WatchedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}
        #: each origin's connection pool, as requests' own lookup chose it, by the settings it used
        self._pools: dict[tuple[str, str, str, tuple[tuple[str, str], ...]], HTTPConnectionPool] = {}

    def get_connection_with_tls_context(
        self, request: requests.PreparedRequest, verify: Any, proxies: Mapping[str, str] | None = None, cert: Any = None
    ) -> HTTPConnectionPool:
        """requests' lookup once per origin and settings, not per request: it parses the URL twice,
        stats the CA bundle's path and builds the pool manager's key every time."""
        url = request.url or ""
        end = url.find("/", url.find("//") + 2)
        key = (url[:end] if end > 0 else url, str(verify), str(cert), tuple(sorted((proxies or {}).items())))
        pool = self._pools.get(key)
        if pool is None or pool.pool is None:  # new, or closed since (the pool manager keeps ten)
            found: Any = super().get_connection_with_tls_context(request, verify, proxies=proxies, cert=cert)
            super().cert_verify(found, url, verify, cert)  # type: ignore[no-untyped-call]
            pool = self._pools[key] = found
        return pool

    def cert_verify(self, conn: HTTPConnectionPool, url: str, verify: Any, cert: Any) -> None:
        """Done when the pool was looked up (it stats the CA bundle and client certificate files)."""
        if not any(conn is pool for pool in self._pools.values()):
            super().cert_verify(conn, url, verify, cert)  # type: ignore[no-untyped-call]

    def build_response(self, req: requests.PreparedRequest, resp: Any) -> requests.Response:
        """``HTTPAdapter.build_response`` without reading the answer's cookies (we keep none):
        that parse cost as much as the rest of building the response."""
        response = requests.Response()
        response.status_code = resp.status
        response.headers = CaseInsensitiveDict(resp.headers)
        response.encoding = get_encoding_from_headers(response.headers)
        response.raw = resp
        response.reason = resp.reason
        response.url = req.url or ""
        response.request = req
        response.connection = self
        return response


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    """The APIs are called with a token, never a session: a cookie would only be state one request
    leaves for the next (and a tracking handle), so none is kept, even across a redirect."""

    def set_ok(self, cookie: http.cookiejar.Cookie, request: Any) -> bool:
        return False


#: a URL ``PreparedRequest.prepare_url`` leaves as it is: ASCII, lower-case host, a path without
#: dot segments, no fragment, nothing to quote and no escaped unreserved character (which it would
#: unescape). Ours are; what a server sends us to follow may not be, and gets the full preparation.
_ESCAPE = r"%(?:[0189A-Fa-f][0-9A-Fa-f]|2[0-9A-Ca-cFf]|3[A-Fa-f]|40|5[B-Eb-e]|60|7[B-Db-dFf])"  # not unreserved
_PLAIN_URL = re.compile(
    r"https?://[a-z0-9][a-z0-9.\-]*(?::[0-9]{1,5})?(?!\S*/\.)/"
    rf"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|{_ESCAPE})*(?:\?(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|{_ESCAPE})+)?"
)


def describe(exc: BaseException) -> str:
    """The cause of a failed request in words an operator can act on (DNS, refused, TLS, timeout)."""
    text = str(exc)
    if isinstance(exc, _DeadlineExceeded):
        return "the answer did not arrive within the deadline"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS handshake or certificate failed"
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connection timed out"
    if isinstance(exc, requests.exceptions.Timeout):
        return "timed out waiting for an answer"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "the connection was cut mid-answer"
    if isinstance(exc, requests.exceptions.ConnectionError):
        if "NameResolution" in text or "Name or service not known" in text or "getaddrinfo" in text:
            return "DNS lookup failed (check the host name)"
        if "Connection refused" in text:
            return "connection refused (nothing listens there)"
        if "reset" in text.lower() or "aborted" in text.lower():
            return "the connection was reset"
        return "could not connect"
    return type(exc).__name__


#: how deep a record may nest once an answer proved too deep for the JSON parser's stack; real
#: answers nest a dozen levels, and the parse of what remains must stay well inside the stack
MAX_RECORD_DEPTH = 200
#: a JSON string (skipped whole), or a run of brackets with the white space between them
_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}](?:\s*[\[\]{}])*', re.DOTALL)
_MARKER_KEY = "\u0000cycletime:too_deep"


class TooDeep(dict[str, Any]):
    """Stands in for a list entry whose JSON nested too deeply to decode: an empty record.

    Empty, so every walk over a list passes it along like any malformed record and no code that
    reads records can trip on it; the record parsers' guards reject it as ``too_deep``
    (``RecordGuard.reject(..., record=)``). ``label`` (a digest of the entry's text) identifies it
    in the rejection, the same on every re-read.
    """

    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = label


class NestedTooDeeply(SourceError):
    """An answer nested too deeply to decode, with no list entry to blame it on."""


_JSON = msgspec.json.Decoder()
#: the charsets msgspec reads (it reads UTF-8 only); ``None``: none named, which for JSON is UTF-8
#: unless the bytes say otherwise (then msgspec refuses them and ``json`` guesses as before)
_MSGSPEC_ENCODINGS = frozenset({None, "utf-8", "UTF-8", "utf8"})


def decode_json(resp: requests.Response) -> Any:
    """The answer's JSON; an entry of a list nested too deeply to decode becomes a TooDeep.

    Python's decoder recurses once per level, so a record nested a few thousand levels deep raises
    RecursionError and would cost the whole page. Then each list entry that holds the too-deep part
    is cut out of the text (a scan that keeps at most ``MAX_RECORD_DEPTH`` open brackets, so memory
    stays bounded by the body's size cap) and decoded as a TooDeep, and the rest of the page is kept.
    Raises ValueError for invalid JSON, NestedTooDeeply when no list entry holds the deep part.

    UTF-8 answers are decoded by msgspec first: 2.3 x faster than ``json`` on our pages, a fifth of
    a sync's CPU. It returns what ``json`` returns for standard JSON (integers of any size, floats
    rounded alike, the last of duplicate keys); what it refuses (NaN, 1e400, lone surrogates, a
    byte-order mark, invalid UTF-8, deep nesting) goes the standard library's way below, unchanged.
    """
    if resp.encoding in _MSGSPEC_ENCODINGS:
        try:
            return _JSON.decode(resp.content)
        except (msgspec.DecodeError, RecursionError):
            pass
    try:
        return resp.json()
    except RecursionError:
        pass
    content = resp.content
    encoding = resp.encoding or guess_json_utf(content) or "utf-8"  # type: ignore[no-untyped-call]
    text = content.decode(encoding, errors="replace")
    cut = _cut_too_deep(text)
    try:
        return json.loads(cut, object_hook=_too_deep_marker)
    except RecursionError:
        raise NestedTooDeeply("nested too deeply to decode") from None


def _too_deep_marker(obj: dict[str, Any]) -> dict[str, Any]:
    if len(obj) == 1 and _MARKER_KEY in obj and isinstance(obj[_MARKER_KEY], str):
        return TooDeep(obj[_MARKER_KEY])
    return obj


def _cut_too_deep(text: str) -> str:
    """``text`` with every list entry that nests past ``MAX_RECORD_DEPTH`` replaced by a marker object.

    Brackets come in runs (``[[[[``), counted a run at a time inside an entry being cut, so even
    a body that is nothing but brackets is scanned in about a second.
    """
    out: list[str] = []
    kept = 0  # text[:kept] is in out
    opened: list[tuple[str, int]] = []  # the open brackets above the scan, at most MAX_RECORD_DEPTH + 1
    cutting = 0  # while inside an entry being cut out: the depth of that entry
    start = depth = 0
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token[0] == '"':
            continue
        if cutting:
            opens = token.count("[") + token.count("{")
            closes = token.count("]") + token.count("}")
            if not closes or (not opens and depth - closes >= cutting):
                depth += opens - closes
                continue
        for offset, bracket in enumerate(token):
            if bracket in "[{":
                depth += 1
                if not cutting:
                    opened.append((bracket, match.start() + offset))
                    if depth > MAX_RECORD_DEPTH:
                        lists = [i for i, (kind, _) in enumerate(opened[:-1]) if kind == "["]
                        if not lists:
                            raise NestedTooDeeply("nested too deeply to decode, outside any list entry")
                        cutting = lists[0] + 2  # the depth of the outermost list's entry on this path
                        start = opened[cutting - 1][1]
                        del opened[cutting - 1 :]
            elif bracket in "]}":
                if cutting and depth == cutting:
                    end = match.start() + offset + 1
                    digest = hashlib.sha256(text[start:end].encode("utf-8", "replace")).hexdigest()[:16]
                    out += [text[kept:start], json.dumps({_MARKER_KEY: f"too_deep:{digest}"})]
                    kept, cutting = end, 0
                elif not cutting and opened:
                    opened.pop()
                depth -= 1
                if depth < 0:
                    return text  # unbalanced: the decoder reports the invalid JSON
    if cutting:
        raise NestedTooDeeply("nested too deeply to decode, and cut off inside the deep part")
    out.append(text[kept:])
    return "".join(out)


class ApiClient:
    """A ``requests.Session`` with our policies, bound to one source.

    ``auth`` is the value of the Authorization header; it is never logged. ``sleep`` is injectable
    so the sandbox tests can use short resets without changing behaviour.
    """

    def __init__(
        self,
        source: str,
        base_url: str,
        auth: str | None,
        *,
        secrets: Iterable[str] = (),
        telemetry: ApiTelemetry | None = None,
        policy: RetryPolicy | None = None,
        headers: dict[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        budget_only_while_throttled: bool = False,
        gate: RequestGate | None = None,
        reserve: float = 0.0,
    ) -> None:
        self.source = source
        #: Azure DevOps sends ``X-RateLimit-*`` only while it delays or blocks a caller: an answer
        #: without them means the budget is no longer short (GitHub sends them on every answer)
        self.budget_only_while_throttled = budget_only_while_throttled
        #: the share of each window's limit never spent (``rate_limit_reserve``): see :meth:`spend`
        self.reserve = reserve
        self.base_url = base_url.rstrip("/")
        self.telemetry = telemetry or ApiTelemetry()
        self.policy = policy or RetryPolicy()
        self.sleep = sleep
        #: shared with the other clients of the same organisation (None: this client alone)
        self.gate = gate
        #: the end of the last pause this client waited out itself or was the cause of (monotonic)
        self._waited_until = 0.0
        for secret in secrets:
            REDACT.add(secret)
        self.session = requests.Session()
        for scheme in ("http://", "https://"):
            self.session.mount(scheme, _WatchedAdapter())
        self.session.headers["User-Agent"] = USER_AGENT
        if auth:
            self.session.headers["Authorization"] = auth
        self.session.headers.update(headers or {})
        # requests resolves proxies, netrc and the CA bundle from the environment again on every
        # request (``merge_environment_settings``: two walks over ``os.environ``), and a ~/.netrc
        # entry would replace our Authorization header: resolve them once, for this API's host
        env = self.session.merge_environment_settings(self.base_url, {}, None, None, None)
        self.session.proxies.update(env["proxies"])
        self.session.verify = env["verify"]
        self.session.trust_env = False
        self.session.cookies.set_policy(_NoCookies())
        self._rng = random.Random()

    def url(self, path_or_url: str) -> str:
        if path_or_url.startswith(("http://", "https://")):
            return path_or_url
        return f"{self.base_url}/{path_or_url.lstrip('/')}"

    def get_json(
        self, path_or_url: str, params: dict[str, Any] | None = None, headers: dict[str, str] | None = None
    ) -> tuple[Any, requests.Response]:
        """GET and decode JSON, retrying truncated or non-JSON bodies like a transient error."""
        return self.request_json("GET", path_or_url, params=params, headers=headers)

    def request_json(
        self,
        method: str,
        path_or_url: str,
        *,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        json_body: Any = None,
        api: str = "rest",
        cost: float = 1.0,
    ) -> tuple[Any, requests.Response]:
        last: Exception | None = None
        for attempt in range(self.policy.attempts):
            resp = self.request(
                method, path_or_url, params=params, headers=headers, json_body=json_body, api=api, cost=cost
            )
            if resp.status_code == 304:
                return None, resp
            try:
                return decode_json(resp), resp
            except NestedTooDeeply as exc:
                raise SourceError(f"{self.source}: answer from {REDACT(self._path(path_or_url))} is {exc}") from None
            except (ValueError, json.JSONDecodeError) as exc:
                if resp.status_code >= 400:
                    return None, resp  # an error status with an empty or HTML body: the caller reports the status
                ctype = resp.headers.get("Content-Type", "")
                if "json" not in ctype and 200 <= resp.status_code < 300 and "html" in ctype:
                    # Azure DevOps answers a bad PAT with 203 + a sign-in page instead of 401
                    raise AuthError(f"{self.source}: got a sign-in page instead of JSON; check the token") from None
                last = exc
                log.warning(
                    "source=%s truncated or invalid JSON from %s (attempt %d)",
                    self.source,
                    REDACT(self._path(path_or_url)),
                    attempt + 1,
                )
                self._backoff(attempt)
        raise SourceError(f"{self.source}: invalid JSON from {REDACT(self._path(path_or_url))}: {last}")

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        json_body: Any = None,
        api: str = "rest",
        cost: float = 1.0,
    ) -> requests.Response:
        """One logical request: retried on transient failures, rate limits waited out.

        Each attempt first :meth:`spend` s ``cost`` of ``api``'s budget (what the request is
        expected to cost: 1 for a REST call, the query's points for GraphQL).
        """
        url = self.url(path_or_url)
        last_error = ""
        for attempt in range(self.policy.attempts):
            self.spend(api, cost)
            try:
                if self.gate is None:
                    resp = self._fetch(method, url, params, headers, json_body)
                else:
                    resp = self._gated_fetch(method, url, params, headers, json_body)
            except requests.RequestException as exc:
                self.telemetry.count("error")
                last_error = describe(exc)
                log.warning(
                    "source=%s %s %s failed: %s (attempt %d)",
                    self.source,
                    method,
                    REDACT(self._path(url)),
                    REDACT(exc),
                    attempt + 1,
                )
                self._backoff(attempt)
                continue
            self.telemetry.count(str(resp.status_code))
            self._note_rate_limit(resp)
            if resp.status_code == 401:
                raise AuthError(f"{self.source}: {method} {REDACT(self._path(url))} answered 401 Unauthorized")
            wait = self._rate_limit_wait(resp)
            if wait is not None:
                if wait > self.policy.max_rate_limit_wait:
                    message = f"{self.source}: rate limited for {wait:.0f}s, more than we wait"
                    if resp.headers.get("x-ratelimit-remaining") == "0" and "Retry-After" not in resp.headers:
                        # the window is spent (by us or another user of the token): like a reserve
                        # reached, the pass ends cleanly and the next one resumes after the reset
                        raise BudgetExhausted(message, api, _seconds(resp.headers.get("x-ratelimit-reset")))
                    raise RateLimited(message)
                log.warning("source=%s rate limited (HTTP %d); sleeping %.1fs", self.source, resp.status_code, wait)
                self.telemetry.note_retry()
                if self.gate is not None:
                    self._waited_until = max(self._waited_until, self.gate.pause(wait))
                self._sleep(wait)
                continue
            if resp.status_code in TRANSIENT_STATUS:
                last_error = f"HTTP {resp.status_code}"
                log.warning(
                    "source=%s %s %s answered %d (attempt %d)",
                    self.source,
                    method,
                    REDACT(self._path(url)),
                    resp.status_code,
                    attempt + 1,
                )
                self._backoff(attempt)
                continue
            # Azure DevOps may ask us to slow down on a successful answer: honour it, keep the data
            if 200 <= resp.status_code < 300 and resp.headers.get("Retry-After"):
                delay = _seconds(resp.headers["Retry-After"]) or 0.0
                if self.gate is not None:
                    self._waited_until = max(self._waited_until, self.gate.pause(delay))
                self._sleep(delay)
            return resp
        raise SourceError(
            f"{self.source}: {method} {REDACT(self._path(url))} failed after "
            f"{self.policy.attempts} attempts ({last_error})"
        )

    def _gated_fetch(
        self,
        method: str,
        url: str,
        params: dict[str, Any] | None,
        headers: dict[str, str] | None,
        json_body: Any,
    ) -> requests.Response:
        """``_fetch`` once the organisation's pause is over and a slot is free; then what the answer
        says about the budget applies to every client of the organisation."""
        assert self.gate is not None
        with self.gate.slot():
            # a pause another client was asked for, perhaps extended meanwhile (its own it sleeps itself)
            while (until := self.gate.paused_until()) > self._waited_until:
                left = until - time.monotonic()
                if left > 0:
                    self._sleep(left)
                self._waited_until = until
            resp = self._fetch(method, url, params, headers, json_body)
        # Azure DevOps: X-RateLimit-Remaining comes only while it throttles (then one at a time);
        # X-RateLimit-Delay says it held this answer back: sending more meanwhile only queues them
        if resp.status_code < 500:
            self.gate.serial(resp.headers.get("x-ratelimit-remaining") is not None)
        delay = _seconds(resp.headers.get("x-ratelimit-delay"))
        if delay:
            self._waited_until = max(self._waited_until, self.gate.pause(delay))  # this answer waited already
        return resp

    def _fetch(
        self, method: str, url: str, params: dict[str, Any] | None, headers: dict[str, str] | None, json_body: Any
    ) -> requests.Response:
        """Send and read the whole body now (so a cut connection is retried here), within the
        overall deadline and the size cap."""
        watch = _Watch()
        # a request sent while this one is prepared (a GitHub App minting its token) hands the
        # watch back when it is done
        outer = getattr(_WATCHING, "watch", None)
        _WATCHING.watch = watch
        _DEADLINES.arm(watch, self.policy.deadline)
        late = _DeadlineExceeded(f"no complete answer within {self.policy.deadline:.0f}s")
        try:
            resp = self._read(method, url, params, headers, json_body)
        except requests.RequestException as exc:
            if watch.fired:
                raise late from exc
            raise
        finally:
            watch.finish()
            _WATCHING.watch = outer
        if watch.fired:  # cut off, what arrived may look complete: it is not
            resp.close()
            raise late
        return resp

    def _read(
        self, method: str, url: str, params: dict[str, Any] | None, headers: dict[str, str] | None, json_body: Any
    ) -> requests.Response:
        started = time.monotonic()
        prepared = self._prepare(method, url, params, headers, json_body)
        session = self.session
        settings: dict[str, Any] = {
            "stream": True,
            "timeout": self.policy.timeout,
            "verify": session.verify,
            "cert": session.cert,
            "proxies": session.proxies,
        }
        # ``Session.send`` less what we do not use (cookies, the environment's settings): the
        # adapter's mapping of urllib3's errors, the hooks and the redirects are requests' own
        resp = session.get_adapter(prepared.url or "").send(prepared, **settings)
        for hook in prepared.hooks.get("response", ()):  # as ``requests.hooks.dispatch_hook``
            resp = hook(resp) or resp
        if resp.is_redirect:  # e.g. a renamed GitHub repository (301)
            prepared._cookies = session.cookies.copy()  # type: ignore[attr-defined]
            chain = [resp, *session.resolve_redirects(resp, prepared, **settings)]
            resp = chain.pop()
            resp.history = chain
        try:
            declared = int(resp.headers.get("Content-Length") or 0)
        except ValueError:
            declared = 0
        if declared > self.policy.max_body_bytes:
            resp.close()
            raise AnswerTooLarge(
                f"{self.source}: {method} {REDACT(self._path(url))} announced {declared} bytes, "
                f"more than the {self.policy.max_body_bytes} we read"
            )
        body = bytearray()
        # read1 returns whatever has arrived, so the deadline is checked even while a server trickles
        read = getattr(resp.raw, "read1", None)
        chunks = iter(lambda: read(65536, decode_content=True), b"") if read else resp.iter_content(65536)
        for chunk in _wrapped(chunks):
            body += chunk
            if len(body) > self.policy.max_body_bytes:
                resp.close()
                raise AnswerTooLarge(
                    f"{self.source}: {method} {REDACT(self._path(url))} sent more than "
                    f"{self.policy.max_body_bytes} bytes"
                )
            if time.monotonic() - started > self.policy.deadline:
                resp.close()
                raise _DeadlineExceeded(f"no complete answer within {self.policy.deadline:.0f}s")
        resp._content = bytes(body)  # what requests' own .content would have read
        resp._content_consumed = True  # type: ignore[attr-defined]
        return resp

    def _prepare(
        self, method: str, url: str, params: dict[str, Any] | None, headers: dict[str, str] | None, json_body: Any
    ) -> requests.PreparedRequest:
        """The request ``Session.prepare_request`` would build, without the parts of its work that
        cost more CPU than the rest of a request: re-quoting a URL that needs none, merging
        settings through ``typing.Protocol`` checks, copying the cookie jar (always empty)."""
        query = _query(params)
        if query:
            url = f"{url}&{query}" if "?" in url else f"{url}?{query}"
        prepared = requests.PreparedRequest()
        prepared.method = method.upper()
        if _PLAIN_URL.fullmatch(url):
            prepared.url = url
        else:  # a link a server gave us: requests' own checks and quoting
            prepared.prepare_url(url, None)
        merged: dict[str, Any] = {**self.session.headers, **(headers or {})}
        prepared.headers = CaseInsensitiveDict({k: v for k, v in merged.items() if v is not None})
        if json_body is not None:
            prepared.body = json.dumps(json_body, allow_nan=False).encode("utf-8")
            prepared.headers.setdefault("Content-Type", "application/json")
            prepared.headers["Content-Length"] = str(len(prepared.body))
        elif prepared.method not in ("GET", "HEAD"):
            prepared.headers["Content-Length"] = "0"
        prepared.hooks = self.session.hooks
        if self.session.auth is not None:  # a GitHub App's installation token, put on as it is sent
            prepared.prepare_auth(self.session.auth)
        return prepared

    def spend(self, api: str = "rest", cost: float = 1.0) -> None:
        """Wait, if need be, until ``api``'s budget can pay ``cost`` without spending the reserve.

        The reserve (``reserve`` times the window's limit) is left for whatever else shares the token
        (other tools, people, the next pass's idle requests). When paying would dip into it, sleep
        until the window resets if that is within ``max_rate_limit_wait``; otherwise raise
        BudgetExhausted so the pass ends with what it committed. A budget never reported, or
        without a limit or reset, is not planned: the API's own 403/429 handling still applies.
        """
        budget = self.telemetry.budget(api)
        if not self.reserve or budget is None or budget.limit is None or budget.reset_at is None:
            return
        now = time.time()
        if budget.remaining - cost >= self.reserve * budget.limit or now >= budget.reset_at:
            return  # affordable, or that window is over (a new one is full until an answer says otherwise)
        wait = budget.reset_at - now + 1.0  # a second of slack for a clock ahead of the server's
        if wait > self.policy.max_rate_limit_wait:
            raise BudgetExhausted(
                f"{self.source}: {api} budget down to its reserve ({budget.remaining:.0f} of {budget.limit:.0f} "
                f"left); it resets in {wait:.0f}s, more than we wait",
                api,
                budget.reset_at,
            )
        log.info(
            "source=%s %s budget down to its reserve (%.0f of %.0f left); pausing %.1fs until it resets",
            self.source,
            api,
            budget.remaining,
            budget.limit,
            wait,
        )
        self._sleep(wait)
        # a new window: its budget is unknown until the next answer reports it
        self.telemetry.note_budget(api, budget.limit, budget.limit, None)

    def _note_rate_limit(self, resp: requests.Response) -> None:
        remaining = _seconds(resp.headers.get("x-ratelimit-remaining"))
        resource = (resp.headers.get("x-ratelimit-resource") or "core").lower()
        # Azure DevOps names its resource for humans only: its one TSTU budget is ``rest``
        api = "rest" if self.budget_only_while_throttled else API_OF_RESOURCE.get(resource, resource)
        if remaining is not None:
            self.telemetry.note_budget(
                api,
                remaining,
                _seconds(resp.headers.get("x-ratelimit-limit")),
                _seconds(resp.headers.get("x-ratelimit-reset")),
            )
        elif self.budget_only_while_throttled and resp.status_code < 500:
            self.telemetry.forget_budget("rest")

    def _rate_limit_wait(self, resp: requests.Response) -> float | None:
        """Seconds to wait before retrying, if this answer is a rate limit; None otherwise."""
        if resp.status_code not in (403, 429):
            return None
        retry_after = _seconds(resp.headers.get("Retry-After"))
        if retry_after is not None:
            return max(retry_after, 0.0)
        if resp.headers.get("x-ratelimit-remaining") == "0":
            reset = _seconds(resp.headers.get("x-ratelimit-reset"))
            if reset is not None:
                return max(reset - time.time(), 0.0) + 1.0
        if resp.status_code == 429:
            return 60.0
        body = resp.text.lower()
        if "rate limit" in body:  # GitHub's secondary limit without headers: wait at least a minute
            return 60.0
        return None

    def _backoff(self, attempt: int) -> None:
        self.telemetry.note_retry()
        ceiling = min(self.policy.max_backoff, self.policy.backoff * (2**attempt))
        self._sleep(self._rng.uniform(0, ceiling))

    def _sleep(self, seconds: float) -> None:
        self.telemetry.slept_seconds += seconds
        self.sleep(seconds)

    def _path(self, url: str) -> str:
        return url.split("?", 1)[0]


def _wrapped(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """urllib3's read errors as the requests exceptions the retry loop knows (as requests does)."""
    try:
        yield from chunks
    except urllib3.exceptions.ReadTimeoutError as exc:
        raise requests.exceptions.ReadTimeout(exc) from exc
    except urllib3.exceptions.SSLError as exc:
        raise requests.exceptions.SSLError(exc) from exc
    except urllib3.exceptions.DecodeError as exc:
        raise requests.exceptions.ContentDecodingError(exc) from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise requests.exceptions.ChunkedEncodingError(exc) from exc


def _query(params: dict[str, Any] | None) -> str | None:
    """``params`` as requests would encode them (``None`` values left out), as a query string."""
    if not params:
        return None
    return urlencode([(k, v) for k, v in params.items() if v is not None], doseq=True)


def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def basic_auth(token: str) -> str:
    """Azure DevOps PAT as HTTP basic with an empty user name."""
    return "Basic " + base64.b64encode(f":{token}".encode()).decode()


def next_link(resp: requests.Response) -> str | None:
    """RFC 5988 ``Link: <…>; rel="next"`` (GitHub pagination)."""
    return resp.links.get("next", {}).get("url")
