"""The shared HTTP client against a hostile server on 127.0.0.1: every answer ends in bounded time."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from conftest import free_port

from collector.config import parse_config
from collector.errors import SourceError
from collector.http import AnswerTooLarge, ApiClient, RequestGate, RetryPolicy, TooDeep, _query, describe
from collector.runner import Runner
from collector.store import Store

JSON = "application/json; charset=utf-8"
#: answers whose decoding the fast decoder could get wrong: (Content-Type, body)
RAW: dict[str, tuple[str, bytes]] = {
    "big-ints": (JSON, b'{"id": 18446744073709551616, "n": -9223372036854775809, "x": 1' + b"0" * 40 + b"}"),
    "floats": (JSON, b"[1.0000000000000002, 0.1, -0.0, 1E2, 5e-324, 1.7976931348623157e308, 1.0, 0, -0]"),
    "duplicate-keys": (JSON, b'{"a": 1, "a": {"b": 2}, "b": [], "b": null}'),
    "nan": (JSON, b'{"a": NaN, "b": Infinity, "c": -Infinity}'),
    "overflow": (JSON, b'{"a": 1e400}'),
    "lone-surrogate": (JSON, b'{"title": "\\ud800 and \\udfff"}'),
    "escapes": (JSON, b'{"t": "\\u00e9\\n\\u0000\\"\\\\ \\ud83d\\ude00", "u": "\xc3\xa9\xf0\x9f\x98\x80"}'),
    "bom": (JSON, b'\xef\xbb\xbf{"a": 1}'),
    "utf16": ("application/json; charset=utf-16", '{"a": "\u00e9"}'.encode("utf-16")),
    "latin1": ("application/json; charset=iso-8859-1", '{"a": "\u00e9"}'.encode("latin-1")),
    "no-charset": ("application/json", b'{"a": "\xc3\xa9"}'),
    "text-plain": ("text/plain", b'{"a": "\xc3\xa9"}'),
}


class Hostile(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.startswith("/trickle"):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                for _ in range(200):
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:
                pass
            return
        if self.path.startswith("/slow-headers"):
            try:
                self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                for _ in range(200):  # a byte of one endless header every 0.2 s: each read succeeds
                    self.wfile.write(b"a")
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:
                pass
            return
        if self.path.startswith("/huge"):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                chunk = b"[" + b"1," * 32768
                for _ in range(400):  # ~25 MB if nobody stops reading
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:
                pass
            return
        if self.path.startswith("/announced"):
            self.send_response(200)
            self.send_header("Content-Length", str(10**9))
            self.end_headers()
            return
        if self.path.startswith("/moved"):  # a renamed repository: elsewhere for good, maybe on another host
            self.send_response(301)
            self.send_header("Location", self.path.split("to=", 1)[1] if "to=" in self.path else "/echo?moved=1")
            self.send_header("Set-Cookie", "session=abc; Path=/")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path.startswith("/echo"):
            body = json.dumps({"path": self.path, "headers": dict(self.headers)}).encode()
        elif self.path.startswith("/bigjson"):
            body = b'{"padding": "' + b"x" * 10_000 + b'"}'
        elif self.path.startswith("/nested/"):
            depth = int(self.path.rsplit("/", 1)[1])
            deep = b'{"id": 2, "x": ' + b"[" * depth + b"]" * depth + b"}"
            body = b'{"value": [{"id": 1, "s": "[{"}, ' + deep + b', {"id": 3}], "count": 3}'
        elif self.path.startswith("/nested-object"):
            body = b'{"a": ' * 100_000 + b"1" + b"}" * 100_000
        elif self.path.startswith("/nested-cut"):
            body = b'[{"id": 1}, ' + b"[" * 100_000
        elif self.path.startswith("/raw/"):
            name = self.path.split("/")[2]
            content_type, body = RAW[name]
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        elif self.path.startswith("/empty404"):
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        else:
            body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Set-Cookie", "affinity=xyz; Path=/")  # as Azure DevOps sets on its answers
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        sent = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"path": self.path, "headers": dict(self.headers), "body": sent.decode()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def client(url: str, **policy: float) -> ApiClient:
    return ApiClient("test", url, None, policy=RetryPolicy(attempts=2, backoff=0.01, **policy), sleep=lambda s: None)


def test_a_trickling_server_is_cut_at_the_deadline(server: str) -> None:
    started = time.monotonic()
    with pytest.raises(SourceError, match="did not arrive within the deadline"):
        client(server, deadline=1.0, timeout=5.0).get_json("/trickle")
    assert time.monotonic() - started < 6, "two attempts of 1 s each, not 40 s of trickle"


def test_deadlines_share_one_thread_and_spare_finished_requests(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    api = client(server, deadline=0.3)
    api.get_json("/fine")  # the deadline thread exists from the first request on
    started: list[str] = []
    start = threading.Thread.start

    def counted(thread: threading.Thread) -> None:
        started.append(thread.name)
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", counted)
    for _ in range(30):
        assert api.get_json("/fine")[0] == {"ok": True}
    assert started == []  # not a thread per request
    time.sleep(0.8)  # their deadlines pass while the connection is kept alive: nothing is cut
    assert api.get_json("/fine")[0] == {"ok": True}
    assert api.telemetry.requests["error"] == 0


def test_headers_trickling_in_are_cut_at_the_deadline_too(server: str) -> None:
    """The status line and a header that never ends: every read gets a byte within the per-read
    timeout, so only the overall deadline ends the request."""
    started = time.monotonic()
    with pytest.raises(SourceError, match="did not arrive within the deadline"):
        client(server, deadline=1.0, timeout=5.0).get_json("/slow-headers")
    assert time.monotonic() - started < 6, "two attempts of 1 s each, not 40 s of trickle"


def test_an_endless_body_stops_at_the_size_cap(server: str) -> None:
    with pytest.raises(AnswerTooLarge, match="more than 1000000 bytes"):
        client(server, max_body_bytes=1_000_000).get_json("/huge")


def test_an_announced_giant_is_not_read_at_all(server: str) -> None:
    with pytest.raises(AnswerTooLarge, match="announced 1000000000 bytes"):
        client(server, max_body_bytes=1_000_000).get_json("/announced")


@pytest.mark.parametrize("depth", [5_000, 100_000])
def test_a_list_entry_nested_too_deeply_is_marked_and_the_rest_of_the_page_kept(server: str, depth: int) -> None:
    """Deeper than the decoder's stack: the entry becomes an empty TooDeep (which the record
    guards reject as too_deep), its neighbours and the rest of the page are read as sent."""
    body, _ = client(server).get_json(f"/nested/{depth}")
    assert body["count"] == 3
    first, deep, last = body["value"]
    assert first == {"id": 1, "s": "[{"} and last == {"id": 3}
    assert isinstance(deep, TooDeep) and deep == {} and deep.label.startswith("too_deep:")
    again, _ = client(server).get_json(f"/nested/{depth}")
    assert again["value"][1].label == deep.label, "the same entry must be the same rejection on every read"


def test_json_nested_too_deeply_outside_any_list_entry_fails_the_answer(server: str) -> None:
    with pytest.raises(SourceError, match="nested too deeply to decode, outside any list entry"):
        client(server).get_json("/nested-object")


def test_a_deep_answer_cut_off_inside_the_deep_part_fails_once(server: str) -> None:
    with pytest.raises(SourceError, match="cut off inside the deep part"):
        client(server).get_json("/nested-cut")


@pytest.mark.parametrize("name", sorted(RAW))
def test_every_answer_decodes_as_the_standard_library_decodes_it(server: str, name: str) -> None:
    """The fast decoder and ``json`` agree value for value and type for type (an integer past 64
    bits stays an int, NaN and 1e400 are read as ``json`` reads them, other charsets as named, and
    what ``json`` refuses is refused)."""
    content_type, raw = RAW[name]
    charset = content_type.partition("charset=")[2] or ("iso-8859-1" if content_type.startswith("text/") else "utf-8")
    try:
        expected = json.loads(raw.decode(charset, errors="replace"))
    except ValueError:  # a byte-order mark under charset=utf-8: not JSON to ``json`` either
        with pytest.raises(SourceError, match="invalid JSON"):
            client(server).get_json(f"/raw/{name}")
        return
    body, _ = client(server).get_json(f"/raw/{name}")
    assert repr(body) == repr(expected)


def test_an_empty_404_is_a_404_not_invalid_json(server: str) -> None:
    body, resp = client(server).get_json("/empty404")
    assert body is None and resp.status_code == 404


def test_a_normal_answer_still_reads(server: str) -> None:
    body, resp = client(server).get_json("/fine")
    assert body == {"ok": True} and resp.status_code == 200


def test_query_headers_and_session_headers_arrive_as_given(server: str) -> None:
    api = ApiClient("test", server, "Bearer t0ken", headers={"Accept": "application/json"}, sleep=lambda s: None)
    body, _ = api.get_json("/echo", params={"q": "a b/c", "n": 2, "gone": None}, headers={"If-None-Match": '"e1"'})
    assert body["path"] == "/echo?q=a+b%2Fc&n=2"
    sent = body["headers"]
    assert (sent["Authorization"], sent["Accept"], sent["If-None-Match"]) == (
        "Bearer t0ken",
        "application/json",
        '"e1"',
    )


#: what ``_prepare`` must build as ``Session.prepare_request`` would: our own URLs (sent as they
#: are) and what a server may give us to follow (prepared by requests)
PREPARED_CASES = [
    ("GET", "/_apis/wit/workitemtypes/User%20Story/states", {"api-version": "7.1"}, None),
    ("GET", "/_apis/wit/reporting/workitemrevisions", {"fields": "System.Id,System.State", "token": "a/b+c="}, None),
    ("GET", "/repos/o/r/pulls", {"state": "all", "per_page": 100, "gone": None, "labels": ["a", "b c"]}, None),
    ("POST", "/graphql", None, {"query": "{ viewer { login } }", "variables": {"n": "é", "x": None}}),
    ("POST", "/_apis/wit/workitemsbatch", {"api-version": "7.1"}, {"ids": [1, 2], "$expand": "Relations"}),
    ("DELETE", "/x", None, None),
    ("GET", "/repos/o/r/issues?page=2&per_page=100", {"since": "2026-01-01T00:00:00Z"}, None),
    ("GET", "/%7Euser/%41b/%2F%2e", None, None),  # escaped unreserved characters: requests unescapes them
    ("GET", "/a/./b/../c", None, None),  # dot segments: removed
    ("GET", "/ä b/ü?q=ä b", None, None),  # not ASCII, a space
    ("GET", "/a#fragment", None, None),
    ("GET", "/p?", None, None),
    ("GET", "/p?x=%zz&y=100%", None, None),  # broken escapes
    ("GET", "", None, None),
]


@pytest.mark.parametrize(("method", "path", "params", "body"), PREPARED_CASES)
def test_requests_are_prepared_exactly_as_requests_prepares_them(
    method: str, path: str, params: dict[str, object] | None, body: object
) -> None:
    for base in ("http://127.0.0.1:8080", "https://API.GitHub.com", "https://dev.azure.com/org"):
        api = ApiClient("test", base, "Bearer t0ken", headers={"Accept": "application/json"}, sleep=lambda s: None)
        url = api.url(path) if path else base
        ours = api._prepare(method, url, params, {"If-None-Match": '"e1"'}, body)
        theirs = api.session.prepare_request(
            requests.Request(method, url, params=_query(params), headers={"If-None-Match": '"e1"'}, json=body)
        )
        assert (ours.method, ours.url, dict(ours.headers), ours.body) == (
            theirs.method,
            theirs.url,
            dict(theirs.headers),
            theirs.body,
        )


def test_a_redirect_is_followed_and_the_token_not_carried_to_another_host(server: str) -> None:
    seen: list[int] = []
    api = ApiClient("test", server, "Bearer t0ken", sleep=lambda s: None)
    api.session.hooks["response"].append(lambda r, *_a, **_k: seen.append(r.status_code))
    body, resp = api.get_json("/moved")
    assert body["path"] == "/echo?moved=1"
    assert body["headers"]["Authorization"] == "Bearer t0ken"  # same host: still ours
    assert [r.status_code for r in resp.history] == [301]
    assert seen == [301, 200]  # the hooks see every answer, as with ``Session.send``
    elsewhere = server.replace("127.0.0.1", "localhost") + "/echo"
    body, _ = api.get_json(f"/moved?to={elsewhere}")
    assert body["path"] == "/echo"
    assert "Authorization" not in body["headers"]  # requests drops it for another host


def test_no_cookie_is_kept_or_sent_back(server: str) -> None:
    api = ApiClient("test", server, "Bearer t0ken", sleep=lambda s: None)
    api.get_json("/ok")  # answered with a Set-Cookie
    api.get_json("/moved")  # and a redirect with another
    body, _ = api.get_json("/echo")
    assert "Cookie" not in body["headers"]
    assert len(api.session.cookies) == 0


def test_a_json_body_is_sent_as_requests_sends_it(server: str) -> None:
    api = ApiClient("test", server, "Bearer t0ken", sleep=lambda s: None)
    body, _ = api.request_json("POST", "/graphql", json_body={"query": "q", "variables": {"n": "é"}})
    assert json.loads(body["body"]) == {"query": "q", "variables": {"n": "é"}}
    assert body["headers"]["Content-Type"] == "application/json"
    empty, _ = api.request_json("POST", "/nothing")
    assert empty["headers"]["Content-Length"] == "0"


def test_proxy_settings_are_read_once_and_netrc_never_replaces_the_token(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password other\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    remote = ApiClient("test", "https://dev.azure.com/org", "Basic x")
    assert remote.session.proxies["https"] == "http://proxy.invalid:3128"
    local = ApiClient("test", server, "Bearer t0ken", sleep=lambda s: None)
    assert local.session.proxies == {}  # NO_PROXY covers this host
    monkeypatch.setenv("NO_PROXY", "")  # changed later: the client keeps what it resolved
    body, _ = local.get_json("/echo")
    assert body["headers"]["Authorization"] == "Bearer t0ken"


def test_the_final_error_names_the_cause() -> None:
    port = free_port()  # a port nothing listens on
    with pytest.raises(SourceError, match=r"connection refused \(nothing listens there\)"):
        client(f"http://127.0.0.1:{port}").get_json("/x")
    # no real DNS query (tests talk to 127.0.0.1 only): the exception requests raises for one
    dns = requests.exceptions.ConnectionError(
        "HTTPConnectionPool(host='x.invalid', port=80): Max retries exceeded (Caused by NameResolutionError(...))"
    )
    assert describe(dns) == "DNS lookup failed (check the host name)"
    assert describe(requests.exceptions.SSLError("bad cert")) == "TLS handshake or certificate failed"
    assert describe(requests.exceptions.ReadTimeout("x")) == "timed out waiting for an answer"


def configured_runner(tmp_path: Path, api: str, http: str) -> Runner:
    """A GitHub and an Azure Boards source against ``api``, with the config's ``http`` bounds."""
    config = parse_config(
        f"""
store: sqlite:///{tmp_path}/store.db
http: {http}
sources:
  - {{name: gh, kind: github, base_url: "{api}/api/v3", token: t0ken-1234, repositories: [contoso/web]}}
  - {{name: boards, kind: azure_boards, organization_url: "{api}/contoso", project: Fabrikam, token: t0ken-1234}}
""",
        {},
    )
    return Runner(config, Store(config.store), sleep=lambda s: None)


def test_the_configured_deadline_cuts_a_trickling_server_for_every_source_kind(server: str, tmp_path: Path) -> None:
    runner = configured_runner(tmp_path, f"{server}/trickle", "{request_deadline: 1s}")
    started = time.monotonic()
    results = runner.run_all()
    assert time.monotonic() - started < 30, "six attempts of about 1 s per source, not 40 s of trickle each"
    assert [r.source for r in results] == ["gh", "boards"]
    for result in results:
        assert not result.ok and result.error and "did not arrive within the deadline" in result.error, result.error


def test_the_configured_size_cap_refuses_a_larger_answer_for_every_source_kind(server: str, tmp_path: Path) -> None:
    runner = configured_runner(tmp_path, f"{server}/bigjson", "{max_response_bytes: 8KiB}")
    for result in runner.run_all():
        assert not result.ok and result.error, result
        assert "announced 10015 bytes, more than the 8192 we read" in result.error, result.error
    # the default cap reads the same answer (whatever the sources then make of it)
    for result in configured_runner(tmp_path / "default", f"{server}/bigjson", "{}").run_all():
        assert "we read" not in (result.error or ""), result.error


def most_inside(gate: RequestGate, threads: int = 8) -> int:
    """The most of ``threads`` contenders that held one of the gate's slots at once."""
    lock, inside, most = threading.Lock(), [0], [0]

    def work() -> None:
        with gate.slot():
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            time.sleep(0.02)
            with lock:
                inside[0] -= 1

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return most[0]


def test_the_gate_bounds_requests_in_flight_and_lets_one_through_while_throttled() -> None:
    gate = RequestGate(3)
    gate.narrow(2)
    gate.narrow(5)  # the organisation keeps the smallest limit any of its sources asks for
    assert gate.limit == 2
    assert most_inside(gate) == 2
    gate.serial(True)
    assert most_inside(gate) == 1
    gate.serial(False)
    assert most_inside(gate) == 2


def test_a_pause_holds_every_client_of_the_gate(server: str) -> None:
    gate = RequestGate(4)
    slept: list[float] = []
    other = ApiClient("t", server, None, gate=gate, sleep=slept.append)
    gate.pause(30.0)  # another client of the organisation was told Retry-After: 30
    other.request("GET", "/ok")
    assert len(slept) == 1 and 29.0 < slept[0] <= 30.0
    other.request("GET", "/ok")  # the pause was waited out once, not again
    assert len(slept) == 1


def test_a_tls_handshake_trickling_in_is_cut_at_the_deadline() -> None:
    """A server that opens a TLS record and sends its bytes one at a time: every read gets a byte
    within the per-read timeout, and the handshake runs on a socket object the request never sees,
    so only the watch reaching the connection through its descriptor ends it."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def trickle(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.sendall(b"\x16\x03\x03\x40\x00")  # a handshake record of 16 KiB, announced
            while not stop.wait(0.2):
                conn.sendall(b"\x02")

    def accept() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                conn, _ = listener.accept()
                threading.Thread(target=trickle, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        started = time.monotonic()
        with pytest.raises(SourceError):
            client(f"https://127.0.0.1:{listener.getsockname()[1]}", deadline=1.0, timeout=5.0).get_json("/x")
        assert time.monotonic() - started < 6, "two attempts of 1 s each, not an hour of handshake"
    finally:
        stop.set()
        listener.close()


def test_an_origins_pool_is_looked_up_once_and_again_once_closed(server: str) -> None:
    api = ApiClient("test", server, "Bearer t0ken", sleep=lambda s: None)
    adapter = api.session.get_adapter(server)
    api.get_json("/ok")
    api.get_json("/echo")
    assert len(adapter._pools) == 1
    (first,) = adapter._pools.values()
    adapter.poolmanager.clear()  # as the pool manager drops and closes the least recently used of more than ten
    first.close()
    body, _ = api.get_json("/echo")
    assert body["headers"]["Authorization"] == "Bearer t0ken"
    (second,) = adapter._pools.values()
    assert second is not first and second.pool is not None
