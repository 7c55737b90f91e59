"""Prometheus exposition: a custom collector translating compute's figures, and the HTTP server.

The exporter only translates (STYLE.md): figures come from ``collector.compute`` over the store,
self-metrics from the store's counters, so a restart re-exports identical counters and buckets.
Computing happens in :meth:`MetricsCache.refresh` (after a sync, or when windows need to move on),
never on the scrape path; a scrape serves pre-rendered bytes for the negotiated format.
"""

from __future__ import annotations

import base64
import hmac
import html
import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.openmetrics import exposition as openmetrics

from collector.cardinality import cap_labels
from collector.compute import BUCKETS, Figures, Observations, compute, histogram, window_quantiles
from collector.config import Config, format_duration
from collector.errors import CycletimeError
from collector.http import REDACT
from collector.store import POLL_BUCKETS, STORE_ERRORS, Store

log = logging.getLogger(__name__)

HISTOGRAMS: tuple[tuple[str, str, str], ...] = (
    ("lead_time", "cycletime_work_item_lead_time",
     "Lead time of completed work items: completed_at - created_at (Azure DevOps Analytics' Lead Time)."),
    ("cycle_time", "cycletime_work_item_cycle_time",
     "Cycle time of completed work items: completed_at - first entry into InProgress or Resolved."),
    ("request_to_release", "cycletime_request_to_release",
     "Request-to-release: first successful production deployment containing a linked change - created_at."),
    ("change_lead_time", "cycletime_change_lead_time",
     "DORA lead time for changes: first successful production deployment containing the change - first commit."),
    ("recovery", "cycletime_failed_deployment_recovery",
     "Failed deployment recovery time: next successful deployment - first failed deployment, same environment."),
)


@dataclass(frozen=True)
class Settings:
    windows: tuple[tuple[str, float], ...]  # (label, seconds)
    quantiles: tuple[float, ...]
    sources: tuple[str, ...]  # configured source names, so a never-polled source shows as down
    max_label_values: int = 200

    @classmethod
    def from_config(cls, config: Config) -> Settings:
        return cls(tuple((format_duration(w), w.total_seconds()) for w in config.windows),
                   tuple(config.quantiles), tuple(s.name for s in config.sources), config.max_label_values)


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


def figure_families(figures: Figures, settings: Settings, now: float) -> list[Metric]:
    """Histograms, window gauges, counters and WIP gauges (docs/metrics.md) from compute's figures,
    with at most ``max_label_values`` values per label per source."""
    figures, capped = cap_labels(figures, settings.max_label_values)
    families: list[Metric] = []
    for attr, base, doc in HISTOGRAMS:
        obs: Observations = getattr(figures, attr)
        names = list(obs.label_names)
        hist = HistogramMetricFamily(f"{base}_seconds", doc, labels=names)
        quant = GaugeMetricFamily(f"{base}_window_seconds",
                                  f"Exact quantile over the items whose end event is in the window. {doc}",
                                  labels=[*names, "window", "quantile"])
        count = GaugeMetricFamily(f"{base}_window_count", "How many items the window quantiles are over.",
                                  labels=[*names, "window"])
        for labels in sorted(obs.by_labels):
            pairs = obs.by_labels[labels]
            data = histogram(pairs[:, 1])
            hist.add_metric(list(labels), [(_le(b), c) for b, c in zip(BUCKETS, data.buckets, strict=True)],
                            data.total)
            for window_label, seconds in settings.windows:
                summary = window_quantiles(pairs, now, seconds, settings.quantiles)
                count.add_metric([*labels, window_label], summary.count)
                for q, value in summary.quantiles.items():
                    quant.add_metric([*labels, window_label, repr(q)], value)
        families += [hist, quant, count]

    state = CounterMetricFamily("cycletime_work_item_state_seconds",
                                "Time completed work items spent in each state (flow efficiency, waiting).",
                                labels=["source", "project", "team", "type", "state", "category"])
    for labels, seconds in sorted(figures.state_seconds.items()):
        state.add_metric(list(labels), seconds)
    deployments = CounterMetricFamily("cycletime_deployments", "Deployments by outcome, every environment.",
                                      labels=["source", "service", "environment", "production", "status"])
    for labels, n in sorted(figures.deployments.items()):
        deployments.add_metric(list(labels), n)
    windows = _window_families(figures, settings, now)
    wip = GaugeMetricFamily("cycletime_work_items_in_progress",
                            "Work items now in each non-terminal state category (WIP).",
                            labels=["source", "project", "team", "type", "category"])
    for labels, n in sorted(figures.wip.items()):
        wip.add_metric(list(labels), n)
    folded = CounterMetricFamily("cycletime_label_values_capped",
                                 "Label values folded into 'other' by the per-source cap (max_label_values).",
                                 labels=["source", "label"])
    for (source, label), n in sorted(capped.items()):
        folded.add_metric([source, label], n)
    return [*families, state, deployments, *windows, wip, folded]


def _window_families(figures: Figures, settings: Settings, now: float) -> list[Metric]:
    """Per-window figures that panels would otherwise need days of scrapes for (``increase()``)."""
    counts = GaugeMetricFamily("cycletime_deployments_window_count",
                               "Deployments finished in the window: deployment frequency and change failure "
                               "rate from the first scrape.", labels=[*figures.deployment_events.label_names,
                                                                       "window"])
    for labels in sorted(figures.deployment_events.by_labels):
        ends = figures.deployment_events.by_labels[labels][:, 0]
        for window_label, seconds in settings.windows:
            counts.add_metric([*labels, window_label], float(((ends > now - seconds) & (ends <= now)).sum()))
    flow = GaugeMetricFamily("cycletime_work_item_flow_efficiency_window_ratio",
                             "Time in the InProgress category / lead time, over the items completed in the window.",
                             labels=[*figures.active_time.label_names, "window"])
    for labels in sorted(figures.active_time.by_labels):
        active, lead = figures.active_time.by_labels[labels], figures.lead_time.by_labels.get(labels)
        if lead is None:
            continue
        for window_label, seconds in settings.windows:
            in_window = (active[:, 0] > now - seconds) & (active[:, 0] <= now)
            lead_in_window = (lead[:, 0] > now - seconds) & (lead[:, 0] <= now)
            total = float(lead[lead_in_window, 1].sum())
            if total > 0:
                flow.add_metric([*labels, window_label], float(active[in_window, 1].sum()) / total)
    return [counts, flow]


def self_families(store: Store, settings: Settings, compute_rejections: Iterable[tuple[tuple[str, str], int]]
                  ) -> list[Metric]:
    """The collector's own health, read from the store so restarts do not reset counters."""
    statuses = store.statuses()
    up = GaugeMetricFamily("cycletime_source_up", "1 if the last poll of the source succeeded.", labels=["source"])
    last = GaugeMetricFamily("cycletime_source_last_success_timestamp_seconds",
                             "End of the last successful poll (Unix time).", labels=["source"])
    budget = GaugeMetricFamily("cycletime_api_rate_limit_remaining",
                               "Last rate-limit budget the API reported.", labels=["source"])
    for name in sorted(set(settings.sources) | set(statuses)):
        status = statuses.get(name)
        up.add_metric([name], 1.0 if status and status.ok else 0.0)
        if status and status.last_success:
            last.add_metric([name], status.last_success.timestamp())
        if status and status.rate_limit_remaining is not None:
            budget.add_metric([name], status.rate_limit_remaining)
    polls = HistogramMetricFamily("cycletime_source_poll_duration_seconds", "Duration of polls.", labels=["source"])
    for name, (counts, total) in sorted(store.poll_histograms().items()):
        cumulative, running = [], 0
        for bound, c in zip(POLL_BUCKETS, counts, strict=True):
            running += c
            cumulative.append((_le(bound), running))
        polls.add_metric([name], cumulative, total)
    requests_total = CounterMetricFamily("cycletime_api_requests", "HTTP requests sent to the source API.",
                                         labels=["source", "code"])
    for (name, code), n in sorted(store.api_request_counts().items()):
        requests_total.add_metric([name, code], n)
    rejected = CounterMetricFamily("cycletime_records_rejected", "Input records skipped as invalid.",
                                   labels=["source", "reason"])
    merged: dict[tuple[str, str], int] = dict(store.rejection_counts())
    for key, n in compute_rejections:
        merged[key] = merged.get(key, 0) + n
    for (name, reason), n in sorted(merged.items()):
        rejected.add_metric([name, reason], n)
    return [up, last, budget, polls, requests_total, rejected]


def store_families(store: Store) -> list[Metric]:
    """The store's health as this process last saw it: readable even when the store is not."""
    up = GaugeMetricFamily("cycletime_store_up", "1 if the last use of the store succeeded.")
    up.add_metric([], 1.0 if store.healthy else 0.0)
    failures = CounterMetricFamily("cycletime_store_failures", "Store operations that failed in this process "
                                   "(disk full, database unreachable).")
    failures.add_metric([], store.failures)
    return [up, failures]


class _Families:
    """A registry-compatible collector over a fixed list of families."""

    def __init__(self, families: Sequence[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def render(families: Sequence[Metric], openmetrics_format: bool = False) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return openmetrics.generate_latest(registry) if openmetrics_format else generate_latest(registry)


class MetricsCache:
    """Recomputes figures when the store changed or the windows need to slide; serves bytes."""

    def __init__(self, store: Store, settings: Settings, clock: Callable[[], float] = time.time,
                 max_age: float = 60.0, as_of: float | None = None) -> None:
        self.store = store
        self.settings = settings
        #: a pinned clock (``cycletime metrics --at``): every figure as of that time
        self.as_of = as_of
        self.clock = clock if as_of is None else (lambda: as_of)
        self.max_age = max_age
        self._lock = threading.Lock()
        self._version = -1
        self._computed_at = 0.0
        self._data: Figures | None = None
        self._figures: list[Metric] = []
        self._self: list[Metric] = []
        self._rendered: dict[bool, bytes] = {}

    def refresh(self, force: bool = False) -> None:
        """Reload the store only when its data changed; otherwise just slide the windows.

        When the store fails, the last figures stay published beside ``cycletime_store_up 0``:
        a scrape never fails because the database does.
        """
        with self._lock:
            try:
                families = self._refresh(force)
            except STORE_ERRORS as exc:
                reason = self.store.note_failure(exc)
                log.error("metrics refresh: %s", reason)
                families = [*self._figures, *self._self]
            families += store_families(self.store)
            self._rendered = {False: render(families, False), True: render(families, True)}

    def _refresh(self, force: bool) -> list[Metric]:
        now = self.clock()
        version = self.store.data_version
        if force or self._data is None or version != self._version:
            links = self.store.links()
            table = self.store.work_item_table(linked={link.work_item for link in links})
            self._data = compute(table, self.store.changes(), self.store.deployments(), links, self.as_of)
            del table
            self._version = version
            self._figures = figure_families(self._data, self.settings, now)
            self._computed_at = now
        elif now - self._computed_at >= self.max_age:
            self._figures = figure_families(self._data, self.settings, now)
            self._computed_at = now
        self._self = self_families(self.store, self.settings, self._data.rejected.items())
        return [*self._figures, *self._self]

    def exposition(self, openmetrics_format: bool = False) -> bytes:
        """The cached figures of the store (the HTTP handler appends the live process metrics)."""
        if not self._rendered:
            self.refresh()
        return self._rendered[openmetrics_format]


def _runtime_registry() -> CollectorRegistry:
    """process_*, python_* and cycletime_build_info: what operators expect of any exporter."""
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    info = Info("cycletime_build", "Version of the collector.", registry=registry)
    try:
        info.info({"version": metadata.version("cycletime-collector")})
    except metadata.PackageNotFoundError:
        info.info({"version": "unknown"})
    return registry


RUNTIME = _runtime_registry()


def with_runtime(cached: bytes, openmetrics_format: bool) -> bytes:
    """Cached figures + live process metrics, rendered per scrape (a few dozen samples)."""
    if openmetrics_format:
        live = openmetrics.generate_latest(RUNTIME)
        return cached.removesuffix(b"# EOF\n") + live
    return cached + generate_latest(RUNTIME)


# -- HTTP server -------------------------------------------------------------------------------

#: a TLS client gets this long to finish its handshake; an idle or trickling one then costs its thread
TLS_HANDSHAKE_TIMEOUT = 10.0


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


def wants_openmetrics(accept: str) -> bool:
    """Content negotiation as prometheus_client does it: OpenMetrics only when asked for."""
    return any(part.split(";")[0].strip() == "application/openmetrics-text" for part in accept.split(","))


class ExporterApp:
    """WSGI app: /metrics, /healthz, /readyz and the landing page."""

    def __init__(self, cache: MetricsCache, store: Store, config: Config,
                 source_kinds: dict[str, str]) -> None:
        self.cache = cache
        self.store = store
        self.config = config
        self.source_kinds = source_kinds
        auth = config.web.basic_auth
        self._auth = None if auth is None else (auth.username.encode(), auth.password.encode())

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/healthz":
            return self._send(start_response, "200 OK", b"ok\n", "text/plain; charset=utf-8")
        if path == "/readyz":
            ready, why = self.ready()
            return self._send(start_response, "200 OK" if ready else "503 Service Unavailable",
                              (why + "\n").encode(), "text/plain; charset=utf-8")
        if path not in ("/", "/metrics"):
            return self._send(start_response, "404 Not Found", b"not found\n", "text/plain; charset=utf-8")
        if self._auth and not self._authorised(environ.get("HTTP_AUTHORIZATION", "")):
            start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="cycletime"'),
                                                ("Content-Type", "text/plain")])
            return [b"unauthorized\n"]
        if path == "/metrics":
            om = wants_openmetrics(environ.get("HTTP_ACCEPT", ""))
            ctype = openmetrics.CONTENT_TYPE_LATEST if om else "text/plain; version=0.0.4; charset=utf-8"
            return self._send(start_response, "200 OK", with_runtime(self.cache.exposition(om), om), ctype)
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
    def _send(start_response: Callable[..., Any], status: str, body: bytes, ctype: str) -> list[bytes]:
        start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))])
        return [body]

    def ready(self) -> tuple[bool, str]:
        replaced = self.store.file_replaced()
        if replaced:
            return False, replaced
        try:
            statuses = self.store.statuses()
        except STORE_ERRORS as exc:
            return False, self.store.note_failure(exc)
        if not self.store.writable():
            return False, self.store.last_error or "store not writable"
        waiting = [s.name for s in self.config.sources
                   if s.name not in statuses or statuses[s.name].last_success is None]
        if waiting:
            return False, "not synced yet: " + ", ".join(waiting)
        return True, "ready"

    def landing_page(self) -> str:
        statuses = self.store.statuses()
        counts = self.store.record_counts()
        rows = []
        for source in self.config.sources:
            s = statuses.get(source.name)
            state = "never polled" if s is None else ("up" if s.ok else "down")
            cls = "unknown" if s is None else ("up" if s.ok else "down")
            cells = [source.name, source.kind, f'<span class="{cls}">{state}</span>',
                     _when(s.last_success if s else None), f"{s.duration:.1f} s" if s else "-",
                     str(s.items) if s else "-",
                     html.escape(", ".join(f"{n} {label}" for label, n in counts.get(source.name, {}).items()) or "-"),
                     "-" if s is None or s.rate_limit_remaining is None else f"{s.rate_limit_remaining:.0f}",
                     html.escape(REDACT(s.last_error)) if s and s.last_error else "-"]
            rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        head = ["Source", "Kind", "Status", "Last successful sync", "Duration", "Records (last pass)", "Stored",
                "Rate-limit budget", "Last error"]
        return _PAGE.format(rows="\n".join(rows), head="".join(f"<th>{h}</th>" for h in head))


def _when(dt: Any) -> str:
    if dt is None:
        return "never"
    age = time.time() - dt.timestamp()
    return f'{dt.strftime("%Y-%m-%d %H:%M:%S")} UTC ({age:.0f} s ago)'


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cycletime-collector</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
table {{ border-collapse: collapse; }}
th, td {{ padding: .4rem .8rem; border-bottom: 1px solid #ddd; text-align: left; }}
.up {{ color: #1a7f37; font-weight: 600; }} .down {{ color: #cf222e; font-weight: 600; }} .unknown {{ color: #777; }}
</style></head><body>
<h1>cycletime-collector</h1>
<p>Request-to-release, cycle time, lead time and DORA figures for Prometheus.
<a href="/metrics">Metrics</a> · <a href="/healthz">Health</a> · <a href="/readyz">Readiness</a></p>
<h2>Sources</h2>
<table><thead><tr>{head}</tr></thead><tbody>
{rows}
</tbody></table>
</body></html>
"""


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
