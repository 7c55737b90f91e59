"""What the Azure Boards, Pipelines and Repos sources share: the REST client, times, environments.

Why plain REST through :class:`collector.http.ApiClient` rather than the ``azure-devops`` SDK: the
SDK (7.1.0b4) returns bare lists for builds, release deployments and environment deployment
records, dropping the ``x-ms-continuationtoken`` header, so it cannot page them; its msrest
transport does not retry 429 and hides ``Retry-After`` / ``X-RateLimit-*``, so it can neither honour
Azure DevOps' throttling nor report the budget; and it needs a location-discovery round trip
(``OPTIONS /_apis``) per area before the first call. Every endpoint we read is a GET or a small
POST with a JSON body, so our own client keeps request counting, rate limiting and redaction in
one place (STYLE.md) at the cost of a few URL templates. The ``api-version`` of each endpoint is the
one the SDK (generated from the official REST specs) sends, so preview-only resources get their
``-preview.N`` suffix that Azure DevOps requires.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TypeGuard, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import Field

from collector.config_types import SourceConfigBase
from collector.errors import Rejected, SourceError
from collector.http import ApiClient, NestedTooDeeply, RequestGate, basic_auth, decode_json
from collector.sources.base import MAX_ID, Pagination, SourceContext, record_key

log = logging.getLogger(__name__)

#: api-version per endpoint (official REST specs 7.1; ``-preview.N`` where the resource is preview)
API_VERSIONS = {
    "workitemtypes": "7.1-preview.2",
    "workitemtypestates": "7.1-preview.1",
    "reporting_revisions": "7.1-preview.2",
    "workitemsbatch": "7.1-preview.1",
    "wiql": "7.1-preview.2",
    "updates": "7.1-preview.3",
    "environments": "7.1-preview.1",
    "environmentdeploymentrecords": "7.1-preview.1",
    "builds": "7.1-preview.7",
    "build_changes": "7.1-preview.2",
    "build_workitems": "7.1-preview.2",
    "release_deployments": "7.1-preview.2",
    "release": "7.1-preview.8",
    "projects": "7.1-preview.4",
    # Azure Repos (git): released in 7.1, no preview suffix (git.json's api-version: "7.1")
    "git_repositories": "7.1",
    "pull_requests": "7.1",
    "pull_request_commits": "7.1",
    "pull_request_threads": "7.1",
    "pull_request_workitems": "7.1",
}

#: Azure DevOps sends .NET's "no value" for unset dates on some records
NULL_YEAR = 1900


#: requests in flight per organisation unless the sources say otherwise (``max_concurrency``)
DEFAULT_CONCURRENCY = 4
MAX_CONCURRENCY = 16


class AzureSourceConfig(SourceConfigBase):
    """What every Azure DevOps source kind is configured with: one project of one organisation."""

    organization_url: str = Field(
        pattern=r"^https?://",
        description="https://dev.azure.com/ORG, an Azure DevOps Server collection URL, or the sandbox's URL.",
    )
    project: str = Field(min_length=1)
    max_concurrency: int = Field(
        default=DEFAULT_CONCURRENCY,
        ge=1,
        le=MAX_CONCURRENCY,
        description="Requests in flight to the organisation (1: one at a time); sources of one "
        "organisation share the smallest value.",
    )


T = TypeVar("T")


class NotFound(SourceError):
    """The endpoint answered 404: the resource (or the whole API, on an older server) is missing."""


class Interrupted(SourceError):
    """A read on a worker thread stopped before its next attempt: the process is shutting down, or
    the pass that wanted it has already failed."""


#: set in ReadPool threads: ``pool`` is the ReadPool they serve
_worker = threading.local()


class _Deferred(Future[T]):
    """A read run in the calling thread when its result is first asked for: with one worker
    nothing runs ahead, and the requests go out exactly when a serial pass sends them."""

    def __init__(self, fn: Callable[[], T]) -> None:
        super().__init__()
        self._fn: Callable[[], T] | None = fn

    def result(self, timeout: float | None = None) -> T:
        fn, self._fn = self._fn, None
        if fn is not None and self.set_running_or_notify_cancel():
            try:
                self.set_result(fn())
            except BaseException as exc:  # handed to the caller below, as a pool's future would
                self.set_exception(exc)
        return super().result(timeout)


class ReadPool:
    """Independent reads (a build's contents, a release, a batch of work items) run on up to
    ``workers`` threads, each with its own HTTP session; the caller takes each result in its own
    order, so normalisation and every store commit stay in the calling thread, in serial order.

    Closing cancels the reads not started and waits for those in flight; their next retry or
    backoff raises :class:`Interrupted` instead of sleeping, so closing takes at most one request.
    Once ``should_stop`` says so, reads not started raise :class:`Interrupted` instead: the pass
    stops within a request, with what it had not committed left for the next one.
    """

    def __init__(self, workers: int, name: str, should_stop: Callable[[], bool] = lambda: False) -> None:
        self.closing = False
        self._should_stop = should_stop
        self._executor: ThreadPoolExecutor | None = None
        if workers > 1:
            self._executor = ThreadPoolExecutor(workers, thread_name_prefix=f"{name} read", initializer=self._mark)

    def _mark(self) -> None:
        _worker.pool = self

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        if self._executor is None:
            return _Deferred(functools.partial(fn, *args))
        return self._executor.submit(self._start, functools.partial(fn, *args))

    def _start(self, read: Callable[[], T]) -> T:
        if self.closing or self._should_stop():
            raise Interrupted("stopped before a read")
        return read()

    def close(self) -> None:
        self.closing = True
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ReadPool:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def organisation_gate(ctx: SourceContext, organization_url: str, limit: int) -> RequestGate:
    """The gate every client of one organisation shares within this process."""
    key = organization_url.rstrip("/").casefold()
    gate = ctx.request_gates.setdefault(key, RequestGate(limit))
    gate.narrow(limit)
    return gate


class AzureDevOps:
    """A thin REST client for one organization/collection and project."""

    def __init__(
        self,
        source: str,
        organization_url: str,
        project: str,
        token: str,
        ctx: SourceContext,
        base_url: str | None = None,
        max_concurrency: int = DEFAULT_CONCURRENCY,
    ) -> None:
        self.project = project
        self.base_url = (base_url or organization_url).rstrip("/")
        self._client_of = functools.partial(
            ApiClient,
            source,
            self.base_url,
            basic_auth(token),
            secrets=[token],
            telemetry=ctx.telemetry,
            policy=ctx.http_policy,
            # without it a bad PAT gets a 203 sign-in page instead of a 401 (Azure DevOps authentication docs)
            headers={"X-TFS-FedAuthRedirect": "Suppress", "Accept": "application/json"},
            budget_only_while_throttled=True,
            gate=organisation_gate(ctx, organization_url, max_concurrency),
        )
        #: the calling thread's client; each ReadPool thread gets its own (a Session is not thread-safe)
        self.http = self._client_of(sleep=ctx.sleep)
        self._sleep = ctx.sleep
        self._should_stop = ctx.should_stop
        self._local = threading.local()

    def _client(self) -> ApiClient:
        pool = getattr(_worker, "pool", None)
        if pool is None:
            return self.http
        client: ApiClient | None = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self._client_of(sleep=functools.partial(self._worker_sleep, pool))
            client.session.hooks = self.http.session.hooks  # what observes the caller's requests sees these too
        return client

    def _worker_sleep(self, pool: ReadPool, seconds: float) -> None:
        if pool.closing or self._should_stop():
            raise Interrupted(f"{self.http.source}: stopped before retrying a read")
        self._sleep(seconds)

    def project_path(self, suffix: str) -> str:
        return f"{quote(self.project, safe='')}/_apis/{suffix.lstrip('/')}"

    def call(
        self, method: str, path_or_url: str, endpoint: str, params: dict[str, Any] | None = None, json_body: Any = None
    ) -> tuple[Any, dict[str, str]]:
        """One JSON call; returns (body, headers). 404 raises NotFound, other errors SourceError.

        ``api-version`` is added unless the URL already carries one (a ``nextLink``).
        """
        params = dict(params or {})
        if "api-version=" not in path_or_url:
            params["api-version"] = API_VERSIONS[endpoint]
        http = self._client()
        resp = http.request(method, path_or_url, params=params, json_body=json_body)
        if resp.status_code == 404:
            raise NotFound(f"{http.source}: {endpoint} answered 404 ({_message(resp)})")
        if resp.status_code >= 400:
            raise SourceError(f"{http.source}: {endpoint} answered HTTP {resp.status_code}: {_message(resp)}")
        try:
            return decode_json(resp), dict(resp.headers)
        except NestedTooDeeply as exc:
            raise SourceError(f"{http.source}: {endpoint} answered JSON {exc}") from None
        except ValueError:
            # truncated or non-JSON body: the shared client retries it (and spots sign-in pages)
            body, resp = http.request_json(method, path_or_url, params=params, json_body=json_body)
            return body, dict(resp.headers)

    def not_found(self, exc: NotFound) -> SourceError:
        """What a 404 on a project's first request means: a missing organisation or a missing project.

        Azure DevOps answers 404 for both; asking the organisation for the project tells them
        apart (an unknown project is ``TF200016``, an unknown organisation any other 404).
        """
        source = self.http.source
        try:
            self.get(f"_apis/projects/{quote(self.project, safe='')}", "projects")
        except NotFound as probe:
            if "TF200016" in str(probe) or "project does not exist" in str(probe).lower():
                return SourceError(f"{source}: project {self.project!r} not found in organisation {self.base_url}")
            return SourceError(
                f"{source}: organisation not found: {self.base_url} answered 404; check organization_url"
            )
        except SourceError:
            return exc
        return exc  # both exist: the 404 was about something else, and says so

    def get(self, path_or_url: str, endpoint: str, params: dict[str, Any] | None = None) -> tuple[Any, dict[str, str]]:
        return self.call("GET", path_or_url, endpoint, params)

    def pages(
        self, path: str, endpoint: str, params: dict[str, Any], token_param: str = "continuationToken"
    ) -> Iterator[list[Any]]:
        """``{count, value}`` pages chained by the ``x-ms-continuationtoken`` response header.

        A token equal to the one just sent ends the walk (servers repeat the last one); a token
        sent earlier (a cycle), a list past ``MAX_PAGES`` or ``MAX_IDLE_PAGES`` pages in a row
        without a new record raise SourceError (``Pagination``).
        """
        params = dict(params)
        walk = Pagination(f"{self.http.source}: {endpoint}")
        token: str | None = None
        while True:
            body, headers = self.get(path, endpoint, params)
            page = list_value(body, endpoint)
            walk.page([record_key(record) for record in page])
            yield page
            next_token = _header(headers, "x-ms-continuationtoken")
            if not next_token or next_token == token:
                return
            walk.follow(next_token)
            token = params[token_param] = next_token


def list_value(body: Any, endpoint: str) -> list[Any]:
    """The ``value`` list of a ``{count, value}`` envelope; a bare list is accepted too.

    An object without a ``value`` list is no answer of this API (a proxy's page, an error document):
    read as an empty list it would let the walk, and its watermark, pass a page never read."""
    if isinstance(body, list):
        return body
    value = body.get("value") if isinstance(body, dict) else None
    if isinstance(value, list):
        return value
    shape = "an object without a 'value' list" if isinstance(body, dict) else type(body).__name__
    raise SourceError(f"{endpoint}: unexpected response shape ({shape})")


def release_url(organization_url: str) -> str:
    """Classic release management lives on its own host in Azure DevOps Services.

    ``https://dev.azure.com/ORG`` → ``https://vsrm.dev.azure.com/ORG``;
    ``https://ORG.visualstudio.com`` → ``https://ORG.vsrm.visualstudio.com``; Azure DevOps Server
    (and the sandbox) serve it under the collection URL itself.
    """
    parts = urlsplit(organization_url.rstrip("/"))
    host = parts.hostname or ""
    if host == "dev.azure.com":
        return urlunsplit(parts._replace(netloc="vsrm." + parts.netloc))
    if host.endswith(".visualstudio.com") and ".vsrm." not in host:
        org = host.removesuffix(".visualstudio.com")
        return urlunsplit(parts._replace(netloc=parts.netloc.replace(host, f"{org}.vsrm.visualstudio.com")))
    return organization_url.rstrip("/")


def azure_time(value: Any) -> datetime | None:
    """An Azure DevOps timestamp (ISO 8601, up to 7 fraction digits) as aware UTC.

    None or .NET's ``0001-01-01`` mean "not set" and give None; anything else unparsable or out of
    range (``9999-12-31T23:59:59-01:00`` is past the last instant Python represents) raises
    ``Rejected("bad_timestamp")``, a ValueError: the caller rejects the record.
    """
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 40 or "T" not in value:
        raise Rejected("bad_timestamp", f"not a timestamp: {value!r}"[:80])
    try:
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        parsed = parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise Rejected("bad_timestamp", f"not a timestamp: {value!r}"[:80]) from None
    return None if parsed.year < NULL_YEAR else parsed


def format_time(value: datetime) -> str:
    """The ISO form Azure DevOps' date parameters take (UTC, ``Z``, milliseconds)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _header(headers: dict[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _message(resp: Any) -> str:
    """Azure DevOps' error body is ``{"message": …, "typeKey": …}``; keep it short."""
    try:
        body = resp.json()
        if isinstance(body, dict) and body.get("message"):
            return str(body["message"])[:200]
    except (ValueError, RecursionError):
        pass
    return resp.reason or ""


def safe_time(value: Any) -> datetime | None:
    """A timestamp, or None when it is missing, unparseable or out of range (for fields we can live
    without)."""
    try:
        return azure_time(value)
    except ValueError:
        return None


def is_count(value: Any) -> TypeGuard[int]:
    """A non-negative JSON integer up to ``MAX_ID`` (ids, revisions); bools are ints in Python but
    not in JSON."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_ID


def count_problem(value: Any) -> str | None:
    """Why a value is no id (``out_of_range``: negative or above ``MAX_ID``; ``wrong_type``), or None."""
    if is_count(value):
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return "out_of_range"
    return "wrong_type"
