"""GitHub REST answers from ``tests/fixtures/github`` replayed over real HTTP on 127.0.0.1.

``routes.json`` maps ``path?query`` to a fixture file and, for a list with more pages, the
``path?query`` of the next one (sent as GitHub does, in a ``Link: <…>; rel="next"`` header on the
server's own address). Queries are compared as sorted, decoded pairs, so parameter order does not
matter. Every 200 carries an ``ETag`` (unless ``etags=False``); conditional requests are not
answered with 304 here. Anything else answers 404 with GitHub's error body. Every request is
recorded.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "github"


def route_key(path_and_query: str, ignore: frozenset[str] = frozenset()) -> str:
    """``path?query`` with the query's pairs decoded and sorted (and those named in ``ignore`` left out)."""
    parts = urlsplit(path_and_query)
    pairs = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in ignore]
    query = urlencode(sorted(pairs))
    return parts.path + ("?" + query if query else "")


class Replay:
    def __init__(self, fixtures: Path = FIXTURES, etags: bool = True, ignore: frozenset[str] = frozenset()) -> None:
        raw = json.loads((fixtures / "routes.json").read_text())
        #: query parameters not matched: ``since`` follows the wall clock in a command-line run
        self.ignore = ignore
        self.routes: dict[str, dict[str, Any]] = {route_key(k, ignore): v for k, v in raw.items()}
        self.fixtures = fixtures
        self.requests: list[str] = []
        self.url = ""
        #: GitHub sends an ETag with every 200; some proxies in front of GHES strip it
        self.etags = etags

    def answer(self, path_and_query: str) -> tuple[int, bytes, dict[str, str]]:
        key = route_key(path_and_query, self.ignore)
        self.requests.append(key)
        route = self.routes.get(key)
        if route is None:
            body = {"message": "Not Found", "documentation_url": "https://docs.github.com/rest", "status": "404"}
            return 404, json.dumps(body).encode(), {}
        headers = {
            "x-github-api-version-selected": "2022-11-28",
            "x-ratelimit-limit": "5000",
            "x-ratelimit-remaining": "4990",
            "x-ratelimit-reset": "4102444800",
            "x-ratelimit-resource": "core",
        }
        if route.get("next"):
            headers["Link"] = f'<{self.url}{route["next"]}>; rel="next"'
        body = (self.fixtures / route["body"]).read_bytes()
        if self.etags:
            headers["ETag"] = f'W/"{hashlib.sha1(body).hexdigest()}"'
        return 200, body, headers

    def count(self, prefix: str) -> int:
        """How many requests went to paths starting with ``prefix``."""
        return sum(r.startswith(prefix) for r in self.requests)


@contextmanager
def replay(fixtures: Path = FIXTURES, etags: bool = True, ignore: frozenset[str] = frozenset()) -> Iterator[Replay]:
    server_state = Replay(fixtures, etags, ignore)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body, headers = server_state.answer(self.path)
            self.send_response(status)
            for name, value in {
                **headers,
                "Content-Type": "application/json; charset=utf-8",
                "Content-Length": str(len(body)),
            }.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server_state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server_state
    finally:
        server.shutdown()
        server.server_close()
