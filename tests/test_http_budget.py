"""The planned rate budget of the shared HTTP client: budgets per API, and a reserve never spent."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from collector.http import ApiClient, ApiTelemetry, Budget, BudgetExhausted, RetryPolicy


@dataclass
class Window:
    """A GitHub-like primary budget: ``limit`` per window, reset at ``reset`` (Unix seconds)."""

    limit: int = 10
    remaining: int = 10
    reset: int = 0
    resource: str = "core"
    served: int = 0
    lowest: int = 10

    def renew(self, seconds: int = 30) -> None:
        self.remaining, self.reset = self.limit, int(time.time()) + seconds


@pytest.fixture
def window() -> Iterator[tuple[str, Window]]:
    state = Window()
    state.renew()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            if state.remaining <= 0:
                self.send_response(403)
            else:
                state.remaining -= 1
                state.served += 1
                state.lowest = min(state.lowest, state.remaining)
                self.send_response(200)
            body = b"{}"
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("x-ratelimit-limit", str(state.limit))
            self.send_header("x-ratelimit-remaining", str(state.remaining))
            self.send_header("x-ratelimit-reset", str(state.reset))
            self.send_header("x-ratelimit-resource", state.resource)
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", state
    server.shutdown()
    server.server_close()


def _client(url: str, reserve: float, max_wait: float, sleep: Callable[[float], None] = lambda s: None) -> ApiClient:
    return ApiClient("gh", url, None, policy=RetryPolicy(max_rate_limit_wait=max_wait), sleep=sleep, reserve=reserve)


def test_each_answer_reports_the_budget_of_its_api(window: tuple[str, Window]) -> None:
    url, state = window
    client = _client(url, reserve=0.0, max_wait=60)
    client.get_json("/a")
    assert client.telemetry.budget("rest") == Budget(9, 10, state.reset)
    state.resource = "graphql"
    client.get_json("/b")
    assert client.telemetry.budget("graphql") == Budget(8, 10, state.reset)
    assert client.telemetry.budget("rest") == Budget(9, 10, state.reset)  # its own window, untouched
    assert client.telemetry.rate_limit_remaining == 9  # the rest gauge follows rest only


def test_the_pass_ends_before_a_request_would_spend_the_reserve(window: tuple[str, Window]) -> None:
    url, state = window
    client = _client(url, reserve=0.3, max_wait=5)  # the window resets in 30 s: longer than we wait
    with pytest.raises(BudgetExhausted) as ended:
        for _ in range(20):
            client.get_json("/x")
    assert state.served == 7 and state.lowest == 3  # 3 of 10 left: the reserve
    assert ended.value.api == "rest" and ended.value.reset_at == state.reset
    assert client.telemetry.requests["403"] == 0


def test_the_client_pauses_until_the_reset_when_it_may_wait_that_long(window: tuple[str, Window]) -> None:
    url, state = window
    slept: list[float] = []

    def sleep(seconds: float) -> None:  # time passes: the server's window renews
        slept.append(seconds)
        state.reset = int(time.time()) - 1
        state.renew()

    client = _client(url, reserve=0.3, max_wait=60, sleep=sleep)
    for _ in range(20):
        client.get_json("/x")
    assert state.served == 20 and state.lowest == 3
    assert len(slept) == 2 and all(25 < s <= 32 for s in slept)  # two pauses of about the window's rest
    assert client.telemetry.requests["403"] == 0


def test_a_budget_whose_window_is_over_does_not_hold_the_next_pass(window: tuple[str, Window]) -> None:
    url, state = window
    telemetry = ApiTelemetry()
    telemetry.note_budget("rest", remaining=1, limit=10, reset_at=time.time() - 5)  # left by the last pass
    client = ApiClient("gh", url, None, telemetry=telemetry, policy=RetryPolicy(max_rate_limit_wait=0), reserve=0.3)
    client.get_json("/x")
    assert state.served == 1


def test_a_budget_reported_by_the_caller_gates_its_requests(window: tuple[str, Window]) -> None:
    """GraphQL reports its points from the ``rateLimit`` object; a query costing more than is left
    above the reserve is not sent."""
    url, state = window
    client = _client(url, reserve=0.1, max_wait=5)
    client.telemetry.note_budget("graphql", remaining=150, limit=1000, reset_at=time.time() + 600)
    client.request_json("GET", "/q", api="graphql", cost=50)
    assert state.served == 1
    client.telemetry.note_budget("graphql", remaining=149, limit=1000, reset_at=time.time() + 600)
    with pytest.raises(BudgetExhausted):
        client.request_json("GET", "/q", api="graphql", cost=50)
    assert state.served == 1
    assert client.telemetry.budget("rest") is not None  # the answer's own headers


def test_a_window_spent_by_others_ends_the_pass_cleanly_too(window: tuple[str, Window]) -> None:
    """Without a reserve (or with another client spending the token), GitHub's own refusal with a
    reset further away than we wait is the same clean end, not a failure of the pass."""
    url, state = window
    client = _client(url, reserve=0.0, max_wait=5)
    state.remaining = 0
    with pytest.raises(BudgetExhausted) as ended:
        client.get_json("/x")
    assert ended.value.api == "rest" and ended.value.reset_at == state.reset
    assert client.telemetry.requests["403"] == 1
