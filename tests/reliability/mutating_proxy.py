"""A hostile upstream: an HTTP proxy on 127.0.0.1 in front of the sandbox that rewrites chosen JSON answers.

Each request is forwarded as it came (method, path, headers, body; the ``Host`` header is kept, so
the sandbox's absolute ``Link`` and ``nextLink`` URLs point back at the proxy). A ``Rewrite`` sees
each decoded JSON answer and may return a changed one: a hostile record injected into one page, a
continuation token that cycles, a ``Link`` header that never ends.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Answer:
    """One answer as the rewrite sees it: ``path`` includes the query string."""

    method: str
    path: str
    status: int
    headers: dict[str, str]
    body: Any
    #: the request's body (a GraphQL query and its variables: every query has the same path)
    request: bytes = b""


#: returns the answer to send instead, or None to send it unchanged
Rewrite = Callable[[Answer], Answer | None]

_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "etag"}


@dataclass
class MutatingProxy:
    upstream: str  # http://host:port of the sandbox
    rewrite: Rewrite | None = None
    requests: int = 0
    rewritten: int = 0
    _server: ThreadingHTTPServer | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> MutatingProxy:
        proxy = self
        target = urlsplit(self.upstream)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                payload = self.rfile.read(length) if length else None
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "accept-encoding")}
                conn.request(self.command, self.path, body=payload, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
                status = resp.status
                out_headers = {k: v for k, v in resp.getheaders() if k.lower() not in _HOP}
                etag = resp.getheader("ETag")
                conn.close()
                proxy.requests += 1
                if proxy.rewrite is not None and raw and "json" in (resp.getheader("Content-Type") or ""):
                    try:
                        body = json.loads(raw)
                    except ValueError:
                        body = None
                    if body is not None:
                        answer = Answer(self.command, self.path, status, out_headers, body, payload or b"")
                        changed = proxy.rewrite(answer)
                        if changed is not None:
                            proxy.rewritten += 1
                            status, out_headers = changed.status, changed.headers
                            raw = changed.body if isinstance(changed.body, bytes) else json.dumps(changed.body).encode()
                            etag = None  # a rewritten page must not be answered 304 from the original's tag
                if etag:
                    out_headers["ETag"] = etag
                self.send_response(status)
                for key, value in out_headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = do_PATCH = do_OPTIONS = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="mutating-proxy", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
