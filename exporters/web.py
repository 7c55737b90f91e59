"""The HTTP server: /metrics, /healthz, /readyz and the landing page, with TLS and basic auth.

Content negotiation and gzip are prometheus_client's own (``choose_encoder``, ``gzip_accepted``),
as its ``make_wsgi_app`` does them; the figures are rendered once per snapshot and format
(:class:`exporters.prometheus.MetricsCache`), the process metrics per scrape. The landing page is
``templates/landing.html`` filled with :class:`string.Template`; it never shows a secret.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hmac
import html
import logging
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from importlib import resources
from socketserver import ThreadingMixIn
from string import Template
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client.exposition import choose_encoder, gzip_accepted

from collector.config import Config
from collector.errors import CycletimeError
from collector.figures import DAY, Headline, MonthPoint
from collector.http import REDACT
from collector.store import STORE_ERRORS, Store
from exporters.prometheus import RUNTIME, MetricsCache, without_eof

log = logging.getLogger(__name__)

#: a TLS client gets this long to finish its handshake; an idle or trickling one then costs its thread
TLS_HANDSHAKE_TIMEOUT = 10.0
#: the landing page's "Stored" column: what each kind of record the store counts is called
STORED = {"work_items": "work items", "changes": "changes", "deployments": "deployments"}


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True
    #: the listen backlog: socketserver's default of 5 drops the SYNs of a burst of concurrent scrapes
    request_queue_size = 1024
    ssl_context: ssl.SSLContext | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Runs in the connection's own thread, so the TLS handshake never holds up the accept loop."""
        if self.ssl_context is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(TLS_HANDSHAKE_TIMEOUT)
        try:
            connection = self.ssl_context.wrap_socket(request, server_side=True)
        except OSError as exc:  # ssl.SSLError, a timeout or a reset: this client only
            log.debug("http: TLS handshake with %s failed: %s", client_address[0], exc)
            return
        try:
            super().finish_request(connection, client_address)
        finally:
            self.shutdown_request(connection)


class _QuietHandler(WSGIRequestHandler):
    #: a client that stops sending or reading mid-request is dropped after this long
    timeout = 60

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http: " + format, *args)


class _GzipPrefixes:
    """Each format's cached exposition compressed once, continued per scrape by the live metrics.

    gzip of a 10k-series exposition (1.3 MB) costs ~8 ms of CPU; per scrape, 200 concurrent scrapes
    queued behind it for more than a second. The cached part is compressed once per snapshot and
    format, ending on a sync flush; each scrape compresses the few kB of process metrics on a copy of
    that compressor. The answer is one ordinary gzip member (zlib writes its header, and its CRC and
    length over the whole body) that unpacks to the cached part followed by the live one.
    """

    def __init__(self) -> None:
        #: content type → (the cached exposition it was made from, its compressed prefix, the compressor)
        self._kept: dict[str, tuple[bytes, bytes, Any]] = {}

    def body(self, ctype: str, cached: bytes, live: bytes) -> bytes:
        kept = self._kept.get(ctype)
        if kept is None or kept[0] is not cached:  # new figures (or a format not asked before)
            compressor = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: gzip's header and trailer
            prefix = compressor.compress(without_eof(cached)) + compressor.flush(zlib.Z_SYNC_FLUSH)
            kept = self._kept[ctype] = (cached, prefix, compressor)
        _, prefix, compressor = kept
        rest = compressor.copy()  # the kept compressor is never fed: concurrent scrapes each copy it
        return prefix + rest.compress(live) + rest.flush()


class ExporterApp:
    """WSGI app: /metrics, /healthz, /readyz and the landing page."""

    def __init__(self, cache: MetricsCache, store: Store, config: Config) -> None:
        self.cache = cache
        self.store = store
        self.config = config
        auth = config.web.basic_auth
        self._auth = None if auth is None else (auth.username.encode(), auth.password.encode())
        self._gzip = _GzipPrefixes()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/healthz":
            return self._send(start_response, "200 OK", b"ok\n", "text/plain; charset=utf-8")
        if path == "/readyz":
            ready, why = self.ready()
            return self._send(
                start_response,
                "200 OK" if ready else "503 Service Unavailable",
                (why + "\n").encode(),
                "text/plain; charset=utf-8",
            )
        if path not in ("/", "/metrics"):
            return self._send(start_response, "404 Not Found", b"not found\n", "text/plain; charset=utf-8")
        if self._auth and not self._authorised(environ.get("HTTP_AUTHORIZATION", "")):
            start_response(
                "401 Unauthorized", [("WWW-Authenticate", 'Basic realm="cycletime"'), ("Content-Type", "text/plain")]
            )
            return [b"unauthorized\n"]
        if path == "/metrics":
            encoder, ctype = choose_encoder(environ.get("HTTP_ACCEPT", ""))
            cached, live = self.cache.encoded(encoder, ctype), encoder(RUNTIME)
            if gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING", "")):
                return self._send(start_response, "200 OK", self._gzip.body(ctype, cached, live), ctype, gzipped=True)
            return self._send(start_response, "200 OK", without_eof(cached) + live, ctype)
        return self._send(start_response, "200 OK", self.landing_page().encode(), "text/html; charset=utf-8")

    def _authorised(self, header: str) -> bool:
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).partition(b":")
        except ValueError:
            return False
        assert self._auth is not None
        return hmac.compare_digest(user, self._auth[0]) & hmac.compare_digest(password, self._auth[1])

    @staticmethod
    def _send(
        start_response: Callable[..., Any],
        status: str,
        body: bytes,
        ctype: str,
        accept_encoding: str = "",
        gzipped: bool = False,
    ) -> list[bytes]:
        """``gzipped``: ``body`` is compressed already; else it is when ``accept_encoding`` allows."""
        headers = [("Content-Type", ctype)]
        if not gzipped and gzip_accepted(accept_encoding):
            body, gzipped = gzip.compress(body, compresslevel=6), True
        if gzipped:
            headers.append(("Content-Encoding", "gzip"))
        start_response(status, [*headers, ("Content-Length", str(len(body))), ("Vary", "Accept-Encoding")])
        return [body]

    def ready(self) -> tuple[bool, str]:
        """Ready when the store is usable and the figures include every source's first full pass."""
        replaced = self.store.file_replaced()
        if replaced:
            return False, replaced
        try:
            statuses = self.store.statuses(self.cache.settings.partition.shards.total)
        except STORE_ERRORS as exc:
            return False, self.store.note_failure(exc)
        if not self.store.writable():
            return False, self.store.last_error or "store not writable"
        return self.cache.figures.ready(statuses)

    def landing_page(self) -> str:
        statuses = self.store.statuses(self.cache.settings.partition.shards.total)
        counts = self.store.record_counts()
        rows = []
        for source in self.config.sources:
            s = statuses.get(source.name)
            state = "never polled" if s is None else ("up" if s.ok else "down")
            cls = "unknown" if s is None else ("up" if s.ok else "down")
            cells = [
                html.escape(source.name),
                source.kind,
                f'<span class="{cls}">{state}</span>',
                _when(s.last_success if s else None),
                f"{s.duration:.1f} s" if s else "-",
                str(s.items) if s else "-",
                html.escape(", ".join(f"{n} {STORED[kind]}" for kind, n in counts.get(source.name, {}).items()) or "-"),
                "-" if s is None or s.rate_limit_remaining is None else f"{s.rate_limit_remaining:.0f}",
                html.escape(REDACT(s.last_error)) if s and s.last_error else "-",
            ]
            rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        head = [
            "Source",
            "Kind",
            "Status",
            "Last successful sync",
            "Duration",
            "Records (last pass)",
            "Stored",
            "Rate-limit budget",
            "Last error",
        ]
        snapshot = self.cache.figures.snapshot
        as_of = datetime.fromtimestamp(snapshot.now, UTC).strftime("%Y-%m-%d %H:%M UTC")
        return _template().substitute(
            head="".join(f"<th>{h}</th>" for h in head),
            rows="\n".join(rows),
            as_of=as_of if snapshot.computed else "not computed yet",
            headline=headline_html(snapshot.headline),
            chart=trend_svg(snapshot.trend),
        )


@functools.cache
def _template() -> Template:
    return Template((resources.files("exporters") / "templates" / "landing.html").read_text(encoding="utf-8"))


def _when(dt: Any) -> str:
    if dt is None:
        return "never"
    age = time.time() - dt.timestamp()
    return f"{dt.strftime('%Y-%m-%d %H:%M:%S')} UTC ({age:.0f} s ago)"


def _days(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / DAY:.1f}"


def _stage(stage: str | None, share: float) -> str:
    return "-" if stage is None else f"{stage} ({share:.0%})"


def headline_html(headline: Headline) -> str:
    """The headline as a table per project and a sentence for DORA; ``data-seconds`` keeps the exact
    values, equal to the exposition's."""
    rows = [
        f'<tr class="project" data-project="{html.escape(p.project)}" '
        f'data-seconds="{"" if p.p85 is None else repr(p.p85)}" data-count="{p.count}" '
        f'data-stage="{p.largest_stage or ""}">'
        f"<td>{html.escape(p.project)}</td><td>{_days(p.p85)}</td><td>{p.count}</td>"
        f"<td>{_stage(p.largest_stage, p.largest_stage_share)}</td></tr>"
        for p in headline.projects
    ]
    table = (
        '<table class="headline"><thead><tr><th>Project</th><th>Request to release, p85 (days)</th>'
        "<th>Items</th><th>Most time in</th></tr></thead><tbody>\n"
        + ("\n".join(rows) or '<tr><td colspan="4">none released in the last 30 days</td></tr>')
        + "\n</tbody></table>"
    )
    rate = headline.change_failure_rate
    total = headline.deployments_succeeded + headline.deployments_failed
    dora = (
        f'<p class="dora" data-succeeded="{headline.deployments_succeeded}" '
        f'data-failed="{headline.deployments_failed}">Production deployments: '
        f"<strong>{headline.per_day:.2f} per day</strong> ({headline.deployments_succeeded} successful); "
        f"change failure rate <strong>{'-' if rate is None else f'{rate:.1%}'}</strong> "
        f"({headline.deployments_failed} of {total}).</p>"
    )
    return table + "\n" + dora


#: the chart's geometry (pixels) and its two series: (MonthPoint attribute, class, legend)
_W, _H, _LEFT, _RIGHT, _TOP, _BOTTOM = 760, 280, 56, 16, 16, 40
_SERIES = (("request_to_release", "r2r", "Request to release, p85"), ("cycle_time", "cycle", "Cycle time, p85"))


def trend_svg(points: Sequence[MonthPoint]) -> str:
    """An inline SVG line chart of p85 request-to-release and cycle time per month (no JavaScript).

    Every point is a ``<circle>`` with its month and exact value in seconds (``data-seconds``) and a
    ``<title>`` tooltip; a month without items has no point.
    """
    values = [getattr(p, attr) for p in points for attr, _, _ in _SERIES if getattr(p, attr) is not None]
    top = max(values, default=DAY) / DAY
    step = next((s for s in (1, 2, 5, 10, 20, 30, 60, 90, 120, 180, 365, 730) if top / s <= 6), top / 5)
    ticks = max(1, int(-(-top // step)))
    top = step * ticks
    width, height = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM

    def x(i: int) -> float:
        return _LEFT + (i + 0.5) * width / max(1, len(points))

    def y(seconds: float) -> float:
        return _TOP + height - (seconds / DAY) / top * height

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="trend" width="{_W}" height="{_H}" '
        f'viewBox="0 0 {_W} {_H}" role="img" aria-label="p85 request to release and cycle time by month">'
    ]
    for k in range(ticks + 1):
        days = k * step
        ty = _TOP + height - days / top * height
        parts.append(
            f'<line class="grid" x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{ty:.1f}" y2="{ty:.1f}"/>'
            f'<text class="axis" x="{_LEFT - 6}" y="{ty + 4:.1f}" text-anchor="end">{days:g} d</text>'
        )
    for i, p in enumerate(points):
        parts.append(
            f'<text class="axis" x="{x(i):.1f}" y="{_H - _BOTTOM + 18}" text-anchor="middle">{p.month[2:]}</text>'
        )
    for attr, cls, legend in _SERIES:
        coords = [(i, getattr(p, attr), p) for i, p in enumerate(points) if getattr(p, attr) is not None]
        if coords:
            line = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v, _ in coords)
            parts.append(f'<polyline class="line {cls}" points="{line}"/>')
        for i, v, p in coords:
            count = getattr(p, f"{attr}_count")
            parts.append(
                f'<circle class="point {cls}" cx="{x(i):.1f}" cy="{y(v):.1f}" r="4" data-month="{p.month}" '
                f'data-seconds="{v!r}" data-count="{count}"><title>{p.month}: {legend} '
                f"{v / DAY:.1f} days ({count} items)</title></circle>"
            )
    for k, (_, cls, legend) in enumerate(_SERIES):
        lx = _LEFT + 10 + k * 220
        parts.append(
            f'<rect class="legend {cls}" x="{lx}" y="{_H - 14}" width="12" height="4"/>'
            f'<text class="axis" x="{lx + 18}" y="{_H - 9}">{legend}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def serve_http(app: ExporterApp, listen: str, tls: tuple[str, str] | None = None) -> WSGIServer:
    """Start the server in a daemon thread and return it (``shutdown()`` stops it).

    Raises CycletimeError with one line (``listen HOST:PORT: address already in use``) when the
    address cannot be bound or the TLS files cannot be loaded.
    """
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    context = None
    if tls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(tls[0], tls[1])
        except (OSError, ssl.SSLError) as exc:
            raise CycletimeError(f"web.tls: cannot load {tls[0]} and {tls[1]}: {exc}") from None
    try:
        server = make_server(host, int(port), app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise CycletimeError(f"listen {listen}: {reason}") from None
    server.ssl_context = context
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server
