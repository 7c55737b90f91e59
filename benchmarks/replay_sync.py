"""Client CPU of some sources' full sync on recorded answers: one change measured alone, without the network.

``record`` syncs the named sources of the sandbox organisation once (serially, clock fixed) and
saves every answer (status, headers, body) by request; ``replay`` syncs them again into fresh
SQLite stores with those answers served by a ``requests`` transport adapter mounted on each
client's session, so everything of ours runs (HTTP client, decoding, normalising, the store) but
no socket, and prints each source's CPU seconds, the garbage collector's share and a hash of the
store's ``content_digest``: a change that keeps the hash stores the same data.

Usage: ``replay_sync.py record SOURCES [WORK_ITEMS]`` then ``replay_sync.py replay SOURCES [REPS]
[--profile]``; SOURCES is a comma-separated list (``pipelines,pipelines_tailspin``), the answers go
to ``$REPLAY_FILE`` (default ``/tmp/replay_sync.pkl``).
"""

from __future__ import annotations

import cProfile
import gc
import hashlib
import io
import json
import os
import pickle
import pstats
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from bench_api import SandboxProcess, organisation_config
from bench_throughput import api_clients
from requests.adapters import BaseAdapter, HTTPAdapter
from requests.structures import CaseInsensitiveDict

from collector.cli import freeze_startup_heap
from collector.runner import Runner
from collector.sources.base import Source
from collector.store import Store

FILE = Path(os.environ.get("REPLAY_FILE", "/tmp/replay_sync.pkl"))
#: the sources' clock in both runs: the windows they ask for (history horizon) are the same
NOW = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
#: (status, headers, body, reason) by (method, URL, body)
Answers = dict[tuple[str, str, bytes | None], tuple[int, dict[str, str], bytes, str]]


def request_key(request: requests.PreparedRequest) -> tuple[str, str, bytes | None]:
    body = request.body.encode() if isinstance(request.body, str) else request.body
    return (request.method or "", request.url or "", body)


class _Body:
    """A response body as urllib3's would be read (``read1``), from bytes."""

    def __init__(self, content: bytes) -> None:
        self._buffer = io.BytesIO(content)

    def read1(self, n: int = -1, decode_content: bool = True) -> bytes:
        return self._buffer.read1(n)

    def read(self, n: int = -1, decode_content: bool = True) -> bytes:
        return self._buffer.read(n)

    def close(self) -> None:
        pass

    def release_conn(self) -> None:
        pass


def _response(request: requests.PreparedRequest, status: int, headers: Any, body: bytes, reason: str) -> Any:
    resp = requests.Response()
    resp.status_code, resp.reason, resp.url, resp.request = status, reason, request.url or "", request
    resp.headers = CaseInsensitiveDict(headers)
    resp.raw = _Body(body)
    resp.encoding = requests.utils.get_encoding_from_headers(resp.headers)
    return resp


class Recording(HTTPAdapter):
    """The real transport, keeping each answer (its body already decompressed)."""

    def __init__(self, answers: Answers) -> None:
        super().__init__()
        self.answers = answers

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        kwargs["stream"] = False
        real = super().send(request, **kwargs)
        self.answers[request_key(request)] = (real.status_code, dict(real.headers), real.content, real.reason)
        return _response(request, real.status_code, real.headers, real.content, real.reason)  # type: ignore[no-any-return]


class Replaying(BaseAdapter):
    """The recorded answer to each request; a request not recorded is a KeyError (the sync changed)."""

    def __init__(self, answers: Answers) -> None:
        super().__init__()
        self.answers = answers

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        return _response(request, *self.answers[request_key(request)])  # type: ignore[no-any-return]

    def close(self) -> None:
        pass


def _mount(source: Source, adapter: BaseAdapter) -> None:
    source.ctx.now = lambda: NOW
    for client in api_clients(source):
        for prefix in ("http://", "https://"):
            client.session.mount(prefix, adapter)


def digest(store: Store) -> str:
    text = json.dumps(store.content_digest(), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def record(names: list[str], work_items: int) -> None:
    sandbox = SandboxProcess(work_items)
    answers: Answers = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            config = organisation_config(sandbox.url, f"sqlite:///{tmp}/recorded.db", max_concurrency=1)
            store = Store(config.store)
            runner = Runner(config, store)
            for name in names:
                _mount(runner.sources[name], Recording(answers))
                result = runner.run(name)
                assert result.ok, f"{name}: {result.error}"
            print(f"recorded {len(answers):,} answers; content {digest(store)}")
            store.close()
    finally:
        sandbox.stop()
    FILE.write_bytes(pickle.dumps((sandbox.url, answers)))


class _GcClock:
    """CPU seconds spent in the garbage collector (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.seconds, self._started = 0.0, 0.0
        gc.callbacks.append(self._note)

    def _note(self, phase: str, _info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.process_time()
        else:
            self.seconds += time.process_time() - self._started


def replay(names: list[str], reps: int, with_profile: bool) -> None:
    url, answers = pickle.loads(FILE.read_bytes())
    gc_clock = _GcClock()
    for rep in range(reps):
        with tempfile.TemporaryDirectory() as tmp:
            config = organisation_config(url, f"sqlite:///{tmp}/replayed.db", max_concurrency=1)
            store = Store(config.store)
            runner = Runner(config, store)
            freeze_startup_heap()  # as the CLI does
            profiler = cProfile.Profile() if with_profile else None
            seconds: dict[str, float] = {}
            gc_clock.seconds = 0.0
            for name in names:
                _mount(runner.sources[name], Replaying(answers))
                started = time.process_time()
                if profiler is not None:
                    profiler.enable()
                result = runner.run(name)
                if profiler is not None:
                    profiler.disable()
                seconds[name] = time.process_time() - started
                assert result.ok, f"{name}: {result.error}"
            each = " ".join(f"{name} {s:.3f}" for name, s in seconds.items())
            print(
                f"run {rep + 1}: {each}; total {sum(seconds.values()):.3f} CPU s, of which GC "
                f"{gc_clock.seconds:.3f}; content {digest(store)}"
            )
            store.close()
        if profiler is not None:
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).strip_dirs().sort_stats("tottime").print_stats(40)
            print(out.getvalue())


if __name__ == "__main__":
    mode, sources, *rest = sys.argv[1:]
    numbers = [int(a) for a in rest if a.isdigit()]
    if mode == "record":
        record(sources.split(","), numbers[0] if numbers else 10_000)
    else:
        replay(sources.split(","), numbers[0] if numbers else 3, "--profile" in rest)
