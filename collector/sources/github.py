"""GitHub source: issues (work items), merged pull requests (changes and links), deployments.

REST requests go through :class:`~collector.sources.github_api.GitHubApi` (REST API v3), GraphQL
queries through :class:`~collector.sources.github_graphql.GitHubGraphQL`. Which API reads what is
the ``api`` option (docs/definitions.md, "Which GitHub API reads what"): ``auto`` (the default)
asks each list first with a conditional REST request (a 304 costs no budget, so an idle pass costs
what the REST plan costs) and reads what changed, with its history, over GraphQL: 100 issues with
their timelines, 100 merged pull requests with their commits and the timeline items that date
their readiness and reviews, 100 deployments with their statuses per query, the commits of 50
release tags per query, and the jobs of 100 finished workflow runs per query (``nodes(ids:)`` by the
runs' ``node_id``: each run's check suite's check runs; a run the answer does not give is read
over REST alone). Compares of two commits (deployment contents), the lists of releases and
workflow runs, and the conditional re-reads of unfinished deliveries stay on REST. ``rest`` reads
everything over REST; ``graphql`` skips the REST probes. The GraphQL answers are turned into the
REST records, so every plan feeds the same normaliser and stores the same records.

Streams per repository, each with its own watermark (a JSON document) committed in the same
transaction as the batch it reaches, so a crash between batches loses nothing:

- ``repos:<owner>`` (``owner/*``): the discovered repositories the ``skip_*`` options keep, with
  the listing's page-1 ETag and ``pushed_at`` high-water mark (incremental discovery,
  docs/definitions.md "Which GitHub repositories are read, and when"). A discovered repository
  needs no ``repo:`` read: its listing entry has the name and default branch.
- ``repo:<o/r>``: the repository's canonical name and default branch (conditional GET), read once
  per process, and again when a workflow run on another branch may mean a renamed default branch.
- ``probe:<o/r>`` (plans other than ``rest``): the change probe's marks (last push, newest
  issues, pull requests and deployments, one GraphQL query per 100 repositories) as they were when
  every stream was last read to the end: while the probe answers the same, none of the lists is
  asked for (docs/definitions.md "Idle passes").
- ``synced:<o/r>``: the push and the issues list's version at which the pull requests were last
  read to the end: while both hold, an idle pass does not ask for the pull requests.
- ``issues:<o/r>``: ``/issues?state=all&sort=updated&direction=asc&since=…``, oldest change first,
  so the watermark moves page by page. Every changed issue's whole timeline is re-read and handed
  over with ``Batch.replace_history``. ``since`` is inclusive: the watermark keeps the numbers
  already read at its exact second so they are not read again.
- ``pulls:<o/r>``: ``/pulls?state=closed&sort=updated&direction=desc``; paging stops at the
  watermark (the endpoint has no ``since``), so page 1's ETag is what makes idle polls free. A
  merged pull request is read once, when first seen merged: over REST its commits and its timeline
  (``/issues/{n}/timeline``: ``ready_for_review``, ``reviewed``, ``line-commented``), two
  requests (more past 100 entries), not repeated by later passes.
- ``deployments:<o/r>`` / ``releases:<o/r>`` / ``runs:<o/r>:<workflow>``: newest first, paging
  stops at the highest id already seen; the new ones are then read oldest first, in chunks each
  committed with the id it reaches. Unfinished deployments, draft releases and running runs are
  kept in the watermark with their ETag and re-read conditionally until they finish; a draft or a
  run listed on the first page is not re-read while that page is unchanged (304): its change
  would have changed the page. A deployment's new status does not show in its list, so unfinished
  deployments are re-read every pass.

What a successful production deployment *contains* is ``compare/{P.sha}...{D.sha}``, P being the
latest deployment created before D (same repository and environment) that succeeded and whose commit
still exists; without P, the commits reachable from D's sha since the history horizon. Other
deployments are counted, not opened (no figure uses their contents). Contained commits that no
merged pull request brought are direct pushes, changes of their own (docs/definitions.md). A compare that 404s (a
force-push removed a sha) is counted in ``SyncReport.details["compare_fallbacks"]`` and resolved:
if D's own commit is gone D contains nothing, otherwise the next earlier P is tried.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import heapq
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import quote

from pydantic import Field, field_validator, model_validator

from collector.config_types import EnvironmentPatterns, SourceConfigBase
from collector.errors import Rejected, SourceError
from collector.http import BudgetExhausted, TooDeep
from collector.model import (
    Batch,
    Category,
    Change,
    Deployment,
    Link,
    Rejection,
    StateChange,
    WorkItem,
    ado_ref,
    commit_ref,
    gh_issue_ref,
    gh_pr_ref,
)
from collector.sources.base import (
    MAX_ID,
    RECORD_ERRORS,
    PaginationError,
    RecordGuard,
    Source,
    SourceContext,
    SourceStore,
    SyncReport,
    entry_label,
    matches_environment,
    record_label,
    shape_problem,
)
from collector.sources.github_api import (
    API_VERSION,
    PER_PAGE,
    BadAnswer,
    GitHubApi,
    GitHubHTTPError,
    format_time,
    github_time,
    records,
)
from collector.sources.github_auth import GitHubAppAuth, GitHubAppConfig
from collector.sources.github_graphql import (
    NOT_A_NODE,
    PROBE_BATCH,
    GitHubGraphQL,
    GraphQLError,
    deployment_record,
    issue_record,
    proves,
    pull_record,
)
from collector.sources.github_refs import azure_boards_mentions, closing_references
from collector.sources.registry import register

log = logging.getLogger(__name__)

#: the streams of each repository, read in this order (``cycletime_sync_backlog`` counts them)
STREAMS = ("issues", "pull requests", "deployments")
#: records per transaction on streams whose watermark only moves at the end of the pass
BATCH_SIZE = 50
#: the most REST requests one new deployment, release or run may cost: its statuses, its tag (and
#: an annotated tag's object) or its jobs, and the compare that finds its contents
RECORD_REQUESTS = 3
#: GitHub's own limit on an issue or pull request body; anything longer is not GitHub's data
MAX_BODY = 65536
_SHA = re.compile(r"^[0-9a-fA-F]{40}$")
#: ``owner/*``: how often the owner's repositories are listed in full, to see what moves no push
#: (archived, deleted, renamed repositories); the passes between read only what was pushed since
FULL_LISTING_EVERY = timedelta(days=1)

#: the REST record of each GraphQL list's node (``_list``)
GRAPHQL_RECORDS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "issues": issue_record,
    "pullRequests": pull_record,
    "deployments": deployment_record,
}

#: GitHub issue states as work item states (the ``state`` label) and their categories (docs/definitions.md)
CATEGORY_OF_STATE = {
    "open": Category.PROPOSED,
    "in_progress": Category.IN_PROGRESS,
    "completed": Category.COMPLETED,
    "not_planned": Category.REMOVED,
}
#: sharded: how long a shard waits for the shard listing ``owner/*`` to store its first listing
LISTING_WAIT = 120.0
#: contents to read in one pass from which (plans other than ``rest``) the default branch's history
#: is listed once, ⌈commits / 100⌉ requests, and compared locally instead of one compare each
HISTORY_LISTING_FROM = 20
#: ``api: auto``'s conditional probe of the closed pull requests (newest update first): its ETag is
#: what it is for, since every change the walk reads moves a pull request to the top of page 1; a
#: page of 100 would hold ~3 MB of decoded pull requests just to be dropped (the peak of a sync)
PULLS_PROBE = 10
#: workflow run conclusions that are failed deployments; the others (cancelled, skipped…) are none
FAILED_CONCLUSIONS = {"failure", "timed_out", "startup_failure"}


class GitHubConfig(SourceConfigBase):
    kind: Literal["github"]
    base_url: str = Field("https://api.github.com", pattern=r"^https?://")
    repositories: list[str] = Field(min_length=1, description="owner/repo, or owner/* for every repository.")
    production_environments: EnvironmentPatterns = Field(
        default=["production"], min_length=1, description="Environment names, or /regex/."
    )
    deployments_from: str = Field(
        "deployments",
        pattern=r"^(deployments|releases|workflow_runs:\S+)$",
        description="deployments | releases | workflow_runs:<workflow file>",
    )
    team_from: str = Field("label:team/", description="label:<prefix>, or a fixed team name.")
    type_labels: dict[str, str] = Field(
        default={"bug": "Bug", "feature": "Feature"}, description="label → work item type; others are 'Issue'."
    )
    skip_archived: bool = Field(True, description="owner/*: leave out archived repositories (read-only, nothing new).")
    skip_forks: bool = Field(True, description="owner/*: leave out forks (their history is their parent's).")
    skip_empty: bool = Field(
        True, description="owner/*: leave out repositories never pushed to (size 0, no default branch or no push)."
    )
    rate_limit_reserve: float = Field(
        0.1,
        ge=0.0,
        le=0.9,
        description="Share of each rate-limit window (REST and GraphQL) a pass never spends: it pauses "
        "until the reset, or ends early and resumes next pass. 0 spends the whole budget.",
    )
    # a personal token, or a GitHub App instead (exactly one of the two)
    token: str | None = Field(  # type: ignore[assignment]
        None, min_length=1, description="Personal access token (${ENV_VAR}); or use app."
    )
    app: GitHubAppConfig | None = Field(None, description="A GitHub App instead of a personal token.")
    api: Literal["auto", "rest", "graphql"] = Field(
        "auto",
        description="auto: conditional REST requests find what changed, GraphQL reads its history; "
        "rest: REST only; graphql: GraphQL for every list it can serve (docs/definitions.md).",
    )
    probe_min_repositories: int = Field(
        10,
        ge=1,
        description="api auto: ask the GraphQL change probe only when a pass polls at least this many "
        "repositories (the probe spends points where REST's 304s are free; 1: always). api graphql "
        "always probes (it is cheaper than its lists); api rest never does.",
    )

    @model_validator(mode="after")
    def _one_credential(self) -> GitHubConfig:
        if self.token is None and self.app is None:
            raise ValueError("give token (a personal access token) or app (a GitHub App)")
        if self.token is not None and self.app is not None:
            raise ValueError("give token or app, not both: the app's installation tokens replace the personal token")
        return self

    def secrets(self) -> list[str]:
        return super().secrets() + ([self.app.private_key] if self.app and self.app.private_key else [])

    def credential(self) -> str | None:
        """A GitHub App's rate limits are its installation's: sources of one app on the same
        installation (configured, or discovered for the same owners) share them, whatever key file
        each names. A source spanning several owners' installations is keyed by all of them."""
        if self.app is None:
            return super().credential()
        if self.app.installation_id is not None:
            return f"app:{self.app.app_id}:installation:{self.app.installation_id}"
        owners = sorted({repo.split("/", 1)[0].lower() for repo in self.repositories})
        return f"app:{self.app.app_id}:owners:{','.join(owners)}"

    @field_validator("repositories")
    @classmethod
    def _repo_names(cls, value: list[str]) -> list[str]:
        for repo in value:
            if not re.fullmatch(r"[\w.-]+/([\w.-]+|\*)", repo):
                raise ValueError(f"{repo!r} is not owner/repo or owner/*")
        return value


@dataclass
class _Finished:
    """A finished deployment, release or run, before its contents are known."""

    native_id: str
    order: int  # the API id: creation order
    environment: str
    status: str  # success | failure
    sha: str
    started_at: datetime | None
    finished_at: datetime


@dataclass
class _ListPage:
    """One page of a list, whichever API read it: its records in the REST shape and what failed."""

    status: int  # 200, or 304 when the conditional request found nothing new
    etag: str | None  # of the REST page 1 (or probe) that tells the next pass whether anything changed
    records: list[dict[str, Any]]
    failed: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # GraphQL errors of left-out nodes
    #: GraphQL nodes that are no record (null, or of shapes no record has): counted with the page
    rejections: list[Rejection] = dataclasses.field(default_factory=list)


class _History:
    """The default branch's commits since the history horizon, listed newest first, as a graph.

    ``ahead(head, base)`` is what ``compare/{base}...{head}`` answers (the commits reachable from
    ``head`` and not from ``base``, oldest first), or None when the listing cannot tell: either
    commit is not in it, or the walk from ``head`` leaves it (an ancestor older than the horizon).
    """

    def __init__(self, entries: list[dict[str, Any]]) -> None:
        self.entries = {e["sha"]: e for e in entries}
        self.rank = {e["sha"]: i for i, e in enumerate(entries)}  # 0: the newest
        self.parents = {
            e["sha"]: [
                p["sha"].lower()
                for p in e.get("parents") or []
                if isinstance(p, dict) and isinstance(p.get("sha"), str)
            ]
            for e in entries
        }
        self.generation = _generations(self.parents)

    def _reachable(self, sha: str) -> set[str]:
        seen: set[str] = set()
        stack = [sha]
        while stack:
            s = stack.pop()
            if s in seen or s not in self.entries:
                continue
            seen.add(s)
            stack.extend(self.parents[s])
        return seen

    def ahead(self, head: str, base: str) -> list[dict[str, Any]] | None:
        if head not in self.entries or base not in self.entries:
            return None
        if self.generation is not None:
            return self._ahead_by_generation(head, base, self.generation)
        behind = self._reachable(base)
        out: set[str] = set()
        stack = [head]
        while stack:
            s = stack.pop()
            if s in out or s in behind:
                continue
            if s not in self.entries:
                return None  # older than the listing: only a compare can tell
            out.add(s)
            stack.extend(self.parents[s])
        return [self.entries[s] for s in sorted(out, key=lambda s: -self.rank[s])]

    def _ahead_by_generation(self, head: str, base: str, generation: dict[str, int]) -> list[dict[str, Any]] | None:
        """``ahead`` without walking all of ``base``'s ancestry (once per deployment: quadratic in a
        first sync). Commits are visited highest generation first, each marked with whether ``head``
        and ``base`` reach it; a commit's parents have lower generations, so its marks are final
        when it is visited, and the walk ends once no commit reached from ``head`` alone is queued."""
        marks = {head: _HEAD}
        marks[base] = marks.get(base, 0) | _BASE
        queue = [(-generation[s], s) for s in marks]
        heapq.heapify(queue)
        from_head_only = sum(1 for m in marks.values() if m == _HEAD)
        out: list[str] = []
        while from_head_only:
            _, s = heapq.heappop(queue)
            mark = marks[s]
            if mark == _HEAD:
                from_head_only -= 1
                out.append(s)
            for parent in self.parents[s]:
                if parent not in self.entries:
                    if mark == _HEAD:
                        return None  # older than the listing: only a compare can tell
                    continue
                known = marks.get(parent)
                if known is None:
                    marks[parent] = mark
                    heapq.heappush(queue, (-generation[parent], parent))
                    from_head_only += mark == _HEAD
                elif known | mark != known:
                    marks[parent] = known | mark
                    from_head_only -= known == _HEAD
        return [self.entries[s] for s in sorted(out, key=lambda s: -self.rank[s])]


_HEAD, _BASE = 1, 2


def _generations(parents: dict[str, list[str]]) -> dict[str, int] | None:
    """Each listed commit's generation: 0 without a listed parent, else one more than its highest
    listed parent's; None when the parents form a cycle (a hostile answer: walked the slow way)."""
    generation: dict[str, int] = {}
    visiting: set[str] = set()
    for root in parents:
        if root in generation:
            continue
        stack = [root]
        while stack:
            s = stack[-1]
            if s in generation:
                stack.pop()
                continue
            todo = [p for p in parents[s] if p in parents and p not in generation]
            if todo:
                if s in visiting and any(p in visiting for p in todo):
                    return None
                visiting.add(s)
                for p in todo:
                    if p in visiting:
                        return None
                stack.extend(todo)
                continue
            visiting.discard(s)
            generation[s] = 1 + max((generation[p] for p in parents[s] if p in parents), default=-1)
            stack.pop()
    return generation


def _slim_commit(c: dict[str, Any], sha: str) -> dict[str, Any]:
    """A listed commit with only what is read from it (parents, dates, message), the values as
    served so their checks still apply: a default branch's year of full commit objects (URLs,
    users, verification) is ~14 MB at 2,000 items, the kept part a fifth of it."""
    out: dict[str, Any] = {"sha": sha}
    if "parents" in c:
        parents = c["parents"]
        out["parents"] = (
            [{"sha": p.get("sha")} if isinstance(p, dict) else p for p in parents]
            if isinstance(parents, list)
            else parents
        )
    if "commit" in c:
        detail = c["commit"]
        if isinstance(detail, dict):
            kept: dict[str, Any] = {}
            for person in ("author", "committer"):
                if person in detail:
                    value = detail[person]
                    kept[person] = {"date": value.get("date")} if isinstance(value, dict) else value
            if "message" in detail:
                kept["message"] = detail["message"]
            detail = kept
        out["commit"] = detail
    return out


@dataclass
class _Repo:
    full_name: str  # canonical owner/name, the project/service label
    default_branch: str
    configured: str = ""  # as in the configuration (owner/* expanded): the key of its stream
    #: the last push (``pushed_at``, GitHub's form) as the listing said; None: unknown
    pushed_at: str | None = None
    #: the ``repos:<owner>`` stream that discovered it (``owner/*``); None when named explicitly
    listed_in: str | None = None


def _listed_repos(kept: dict[str, dict[str, Any]], stream: str) -> list[_Repo]:
    return [
        _Repo(name, str(e.get("default_branch") or "main"), name, e.get("pushed_at"), stream)
        for name, e in kept.items()
    ]


@dataclass
class _Span:
    """Pull requests updated in ``(low, high]`` were read by a walk that ended early (``high_seen``:
    the numbers read at ``high``)."""

    low: datetime
    high: datetime
    high_seen: list[int]

    @classmethod
    def of(cls, value: Any) -> _Span | None:
        if not isinstance(value, dict):
            return None
        try:
            return cls(github_time(value["low"]), github_time(value["high"]), [int(n) for n in value["high_seen"]])
        except (KeyError, TypeError, ValueError):
            return None  # unreadable: read everything again

    def to_json(self) -> dict[str, Any]:
        return {"low": format_time(self.low), "high": format_time(self.high), "high_seen": self.high_seen}


@dataclass
class _Mode:
    """One ``deployments_from`` mode: where its list is, how it is ordered, how its records are read."""

    stream: str
    path: str
    params: dict[str, Any]
    list_key: str | None  # the list inside an object answer (workflow runs)
    horizon_field: str  # the time compared with the history horizon on the first pass
    read: Callable[[_Repo, list[dict[str, Any]], dict[str, Any], Batch], list[_Finished]]
    #: listed newest id first, so the first known id ends the walk. Releases are listed by
    #: created_at, the *tagged commit's* date: a new release of an old commit can sit behind older
    #: releases, so their walk ends only at a page with nothing new.
    by_id: bool = True
    #: a record's change (a draft published, a run completed) changes the list page it is on
    listed_changes: bool = True


@register
class GitHubSource(Source):
    kind = "github"
    config_model = GitHubConfig
    config: GitHubConfig
    many_scopes = True

    def __init__(self, config: GitHubConfig, ctx: SourceContext) -> None:
        super().__init__(config, ctx)
        self.api = GitHubApi(
            self.name, config.base_url, config.token or self._app(config, ctx), ctx, reserve=config.rate_limit_reserve
        )
        self.graphql = GitHubGraphQL(self.api, config.base_url, ctx) if config.api != "rest" else None
        #: per repository, this pass: its listed history (read once), or whether one is worth reading
        self._histories: dict[str, _History] = {}
        self._many_contents: set[str] = set()
        #: per repository, this pass: the commits of its stored pull requests (read once)
        self._in_pulls: dict[str, set[str]] = {}
        #: per repository, during its pass: its stored deliveries by native id
        self._delivered: dict[str, dict[str, Deployment]] = {}
        self.type_labels = {k.lower(): v for k, v in config.type_labels.items()}
        self.guard = RecordGuard(self.name)
        #: configured name → the repository as this process read it; which of them this pass read
        self._repos: dict[str, _Repo] = {}
        self._repos_read: set[str] = set()
        #: this pass: the repositories in the order they are read (configured name, lower case), and
        #: the change probe's marks of those probed so far (None: probed, no usable answer)
        self._queue: list[tuple[str, _Repo | None]] = []
        self._probed: dict[str, dict[str, Any] | None] = {}

    def _app(self, config: GitHubConfig, ctx: SourceContext) -> GitHubAppAuth:
        assert config.app is not None
        return GitHubAppAuth(
            self.name,
            config.base_url,
            config.app,
            default_owner=config.repositories[0].split("/", 1)[0],
            telemetry=ctx.telemetry,
            policy=ctx.http_policy,
            sleep=ctx.sleep,
            headers={"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": API_VERSION},
        )

    # -- the pass ---------------------------------------------------------------------------
    def sync(self, store: SourceStore) -> SyncReport:
        """One pass over every repository's streams, ended early when the budget reaches its reserve.

        Budget exhaustion is no failure: what was committed stays, each stream's watermark says
        where the next pass resumes, and ``report.backlog`` counts the streams left behind.
        """
        report = SyncReport()
        report.details.update(
            repositories=0, compare_fallbacks=0, pulls_skipped=0, repositories_gone=0, repositories_unchanged=0
        )
        self._repos_read = set()
        self._histories, self._many_contents, self._in_pulls, self._delivered = {}, set(), {}, {}
        try:
            repositories = self._repositories(store, report)
        except BudgetExhausted as exc:
            self._defer(report, exc)
            return report
        repositories = [r for r in repositories if self.ctx.owns(r[0].lower())]  # this shard's (docs/sharding.md)
        self._queue, self._probed = repositories, {}
        # streams neither brought up to date nor failed (a failure is a problem, not a backlog)
        total = report.backlog = len(repositories) * len(STREAMS)
        self.ctx.plan(0, total)
        claimed = self.claimed(
            ((r[0].lower(), r) for r in repositories), lambda _: self._settle(report), report.problems
        )
        try:
            for configured, listed in claimed:
                if self.ctx.should_stop():
                    break
                try:
                    repo = listed or self._repository(store, configured)
                except GitHubHTTPError as exc:
                    report.problems.append(f"{configured}: {_problem(exc)}")
                    log.warning("source=%s repository %s skipped: %s", self.name, configured, exc)
                    report.backlog -= len(STREAMS)
                    continue
                report.details["repositories"] += 1
                try:
                    self._sync_repository(store, repo, report)
                finally:
                    # needed for this repository's deployments only
                    self._histories.pop(repo.full_name, None)
                    self._in_pulls.pop(repo.full_name, None)
                    self._delivered.pop(repo.full_name, None)
                self.ctx.plan(total - report.backlog, total)
        except BudgetExhausted as exc:
            self._defer(report, exc)
        finally:
            claimed.close()  # releases the scope claim held for the repository last yielded
        return report

    def _settle(self, report: SyncReport) -> None:
        """A repository polled by another replica this pass: no backlog of ours."""
        report.backlog = None if report.backlog is None else report.backlog - len(STREAMS)

    @classmethod
    def scope_of(cls, config: Any, value: str) -> str:
        """One scope per repository (``owner/name`` as labelled, or configured; case-insensitive)."""
        return value.lower()

    def _defer(self, report: SyncReport, exc: BudgetExhausted) -> None:
        report.details["deferred"] = str(exc)
        log.warning("source=%s pass ended early, to resume after the reset: %s", self.name, exc)

    def _sync_repository(self, store: SourceStore, repo: _Repo, report: SyncReport) -> None:
        """Issues, then pull requests, then deployments of one repository.

        Plans other than ``rest``: when the change probe's marks (``_probe``) equal those stored in
        ``probe:<repo>``, nothing its issues, pull requests or deployments lists would show has
        changed, and none of them is asked for; unfinished deployments are re-read all the same
        (a new status moves no mark), and releases and workflow runs keep their conditional REST
        request (docs/definitions.md "Idle passes"). The marks are stored only once every stream
        was brought up to date, so a pass stopped, killed or failed in between proves nothing.

        The pull requests are not asked for when the listing proves them unchanged either: no
        push since they were last read to the end, and the issues list, which lists pull requests
        too, answered 304 with the very version it had then. ``synced:<repo>`` holds both, written
        only once that read completed.
        """
        synced_stream = f"synced:{repo.full_name}"
        synced = self._state(store, synced_stream)
        unchanged_issues: str | None = None
        marks = self._probe(repo)
        probe_stream = f"probe:{repo.full_name}"
        stored_marks = self._state(store, probe_stream).get("marks") if marks is not None else None
        unchanged = marks is not None and stored_marks == marks and proves(marks)
        complete = True  # every stream brought up to date: only then are the marks stored
        problems = len(report.problems)
        if unchanged:
            report.details["repositories_unchanged"] += 1

        def settle(streams: int) -> None:  # brought up to date, or failed: no backlog any more
            report.backlog = None if report.backlog is None else report.backlog - streams

        for position, label in enumerate(STREAMS):
            if self.ctx.should_stop():
                return
            if unchanged and label in ("issues", "pull requests"):
                settle(1)
                continue
            if (
                label == "pull requests"
                and unchanged_issues is not None
                and repo.pushed_at is not None
                and synced == {"pushed_at": repo.pushed_at, "issues": unchanged_issues}
            ):
                report.details["pulls_skipped"] += 1
                settle(1)
                continue
            try:
                if label == "issues":
                    unchanged_issues = self._sync_issues(store, repo, report)
                elif label == "pull requests":
                    if not self._sync_pulls(store, repo, report):
                        complete = False
                        continue  # stopped: not up to date
                    if repo.pushed_at is not None:
                        now = {"pushed_at": repo.pushed_at, "issues": self._issues_version(store, repo)}
                        if now["issues"] is not None and now != synced:
                            store.set_watermark(self.name, synced_stream, json.dumps(now))
                else:
                    self._sync_deployments(store, repo, report, listed=unchanged and "deployments" in (marks or {}))
            except (GitHubHTTPError, BadAnswer, PaginationError, GraphQLError) as exc:
                complete = False
                if isinstance(exc, GitHubHTTPError) and label == "issues" and exc.status == 410:
                    settle(1)
                    continue  # issues are disabled in this repository: nothing to read
                if isinstance(exc, GitHubHTTPError) and label == "issues" and exc.status == 404 and repo.listed_in:
                    self._forget(store, repo)  # deleted since it was listed
                    report.details["repositories_gone"] += 1
                    settle(len(STREAMS) - position)
                    return
                report.problems.append(f"{repo.full_name}: {label}: {_problem(exc)}")
                log.warning("source=%s %s %s skipped: %s", self.name, repo.full_name, label, exc)
                if label == "pull requests":
                    # a commit of an unread pull request would pass for a direct push: the
                    # deployments wait for the next pass (their watermark has not moved)
                    settle(len(STREAMS) - position)
                    return
            settle(1)
        # a stop may have ended a stream early (issues and deliveries return quietly then)
        fresh = marks is not None and marks != stored_marks
        if fresh and complete and len(report.problems) == problems and not self.ctx.should_stop():
            store.set_watermark(self.name, probe_stream, json.dumps({"marks": marks}, sort_keys=True))

    def _probe(self, repo: _Repo) -> dict[str, Any] | None:
        """The change probe's marks of ``repo`` (plans other than ``rest``), None without them.

        The first repository not probed yet is probed with the ``PROBE_BATCH`` - 1 after it, in
        one GraphQL query (``GitHubGraphQL.probe``): a pass that ends early has not probed what
        it did not reach. The marks: the last push, the two most recently updated issues and pull
        requests (any state), and in ``deployments`` mode the two newest deployments, each list
        with its total count (``probe_marks``); ``proves`` says when equal marks prove nothing.
        """
        if self.graphql is None:
            return None
        if self.config.api == "auto" and len(self._queue) < self.config.probe_min_repositories:
            return None  # a few repositories' 304s are free, where a probe costs a point a pass
        key = (repo.configured or repo.full_name).lower()
        if key not in self._probed:
            names: dict[str, str] = {}  # name to ask → its configured key
            at = next((i for i, (configured, _) in enumerate(self._queue) if configured.lower() == key), None)
            upcoming = self._queue[at:] if at is not None else []
            for configured, listed in upcoming:
                if len(names) >= PROBE_BATCH:
                    break
                k = configured.lower()
                if k in self._probed:
                    continue
                known = listed or self._repos.get(configured)
                names[(known.full_name if known else configured)] = k
            names.setdefault(repo.full_name, key)
            modes = (
                ("issues", "pulls", "deployments")
                if self.config.deployments_from == "deployments"
                else ("issues", "pulls")
            )
            found = self.graphql.probe(list(names), modes)
            for name, k in names.items():
                marks = found.get(name.lower())
                self._probed[k] = None if marks is None else {"mode": self.config.deployments_from, **marks}
        return self._probed[key]

    def _repositories(self, store: SourceStore, report: SyncReport) -> list[tuple[str, _Repo | None]]:
        """Configured ``owner/repo`` names, with ``owner/*`` expanded (organisation, else user).

        A discovered repository comes with what its listing entry says (name, default branch,
        last push), so it needs no request of its own; a named one is read with ``_repository``.
        """
        out: dict[str, tuple[str, _Repo | None]] = {}
        for entry in self.config.repositories:
            owner, name = entry.split("/", 1)
            if name != "*":
                out.setdefault(entry.lower(), (entry, None))
                continue
            try:
                with self.ctx.claim(entry.lower()) as mine:  # sharded: one shard lists, the others read its list
                    listed = self._owner_repositories(store, owner) if mine else self._listed_by_other(store, owner)
            except (GitHubHTTPError, BadAnswer, PaginationError) as exc:
                report.problems.append(f"{entry}: {_problem(exc)}")
                continue
            for repo in listed:
                out[repo.full_name.lower()] = (repo.full_name, repo)
        return list(out.values())

    def _owner_repositories(self, store: SourceStore, owner: str) -> list[_Repo]:
        """The repositories of an organisation (or, if it is none, of a user) that the ``skip_*``
        options keep, discovered incrementally (docs/definitions.md "Repositories of an owner").

        The list is read most recently pushed first. Page 1 is asked with its ETag (a 304: no
        repository was pushed, created, archived or changed on that page), and the walk stops after
        the first page that reaches a repository pushed before the stored high-water mark: the
        pages after it were read before and hold no push since. What moves no push (archiving,
        deletion, renames) is caught by a full listing once every ``FULL_LISTING_EVERY`` or when
        the options change.
        """
        stream = f"repos:{owner}"
        state = self._state(store, stream)
        options = [self.config.skip_archived, self.config.skip_forks, self.config.skip_empty]
        listing = {"sort": "pushed", "direction": "desc", "per_page": PER_PAGE}
        candidates = [
            (f"/orgs/{quote(owner)}/repos", {"type": "all", **listing}),
            (f"/users/{quote(owner)}/repos", {"type": "owner", **listing}),
        ]
        if str(state.get("key", "")).startswith("/users/"):
            candidates.reverse()  # known to be a user: ask there first (and only, while it answers)
        full_at = _time_or_none(state.get("full_at"))
        for path, params in candidates:
            key = GitHubApi.key(path, params)
            incremental = (
                state.get("key") == key
                and state.get("options") == options
                and isinstance(state.get("repos"), dict)
                and full_at is not None
                and self.ctx.now() - full_at < FULL_LISTING_EVERY
            )
            kept: dict[str, dict[str, Any]] = dict(state["repos"]) if incremental else {}
            high = _time_or_none(state.get("high")) if incremental else None
            newest = high
            first_etag: str | None = None
            try:
                for page in self.api.pages(path, params, state.get("etag") if incremental else None):
                    if page.status == 304:
                        return _listed_repos(kept, stream)
                    first_etag = first_etag or page.etag
                    past_mark = False
                    for raw in records(page.data):
                        name = raw.get("full_name")
                        if not isinstance(name, str) or "/" not in name:
                            continue
                        pushed = _time_or_none(raw.get("pushed_at"))
                        if pushed is not None and high is not None and pushed < high:
                            # pushed before the last listing: the pages after this one are older
                            # still, unchanged since; this page's entries are read all the same
                            past_mark = True
                        if pushed is not None and (newest is None or pushed > newest):
                            newest = pushed
                        kept.pop(name, None)
                        if self._kept(raw):
                            branch = raw.get("default_branch")
                            kept[name] = {
                                "default_branch": branch if isinstance(branch, str) and branch else None,
                                "pushed_at": format_time(pushed) if pushed is not None else None,
                            }
                    if past_mark:
                        break
            except GitHubHTTPError as exc:
                if exc.status == 404 and path != candidates[-1][0]:
                    continue  # not an organisation: try the user of that name (or the other way round)
                raise
            value = {
                "key": key,
                "etag": first_etag,
                "high": format_time(newest) if newest is not None else None,
                "full_at": state.get("full_at") if incremental else format_time(self.ctx.now()),
                "options": options,
                "repos": kept,
            }
            store.set_watermark(self.name, stream, json.dumps(value, sort_keys=True))
            return _listed_repos(kept, stream)
        return []

    def _listed_by_other(self, store: SourceStore, owner: str) -> list[_Repo]:
        """Sharded: the repositories of ``owner/*`` as the shard owning that listing stored them,
        waiting for its first listing (up to ``LISTING_WAIT``); none yet: none this pass."""
        stream = f"repos:{owner}"
        waited = 0.0
        while True:
            repos = self._state(store, stream).get("repos")
            if isinstance(repos, dict):
                return _listed_repos(repos, stream)
            if waited >= LISTING_WAIT or self.ctx.should_stop():
                log.warning("source=%s %s/*: not listed by its shard yet; its repositories wait", self.name, owner)
                return []
            self.ctx.sleep(0.25)
            waited += 0.25

    def _forget(self, store: SourceStore, repo: _Repo) -> None:
        """A discovered repository that is gone (deleted, or no longer visible to the token): out
        of the discovered set, so it is not asked for again until a listing shows it again."""
        assert repo.listed_in is not None
        if not self.ctx.owns(repo.listed_in.removeprefix("repos:").lower() + "/*"):
            return  # sharded: the listing is another shard's; its next full listing drops the repository
        state = self._state(store, repo.listed_in)
        if isinstance(state.get("repos"), dict) and state["repos"].pop(repo.full_name, None) is not None:
            store.set_watermark(self.name, repo.listed_in, json.dumps(state, sort_keys=True))
        log.info("source=%s %s is gone (HTTP 404): no longer read", self.name, repo.full_name)

    def _kept(self, raw: dict[str, Any]) -> bool:
        """Whether a listed repository is read, per the ``skip_*`` options."""
        if self.config.skip_archived and raw.get("archived") is True:
            return False
        if self.config.skip_forks and raw.get("fork") is True:
            return False
        empty = raw.get("size") == 0 or not raw.get("default_branch") or raw.get("pushed_at") is None
        return not (self.config.skip_empty and empty)

    def _repository(self, store: SourceStore, configured: str, reread: bool = False) -> _Repo:
        """Name and default branch, read once per process: they rarely change, and a renamed
        repository's old name keeps answering (GitHub redirects it) until the next start."""
        if configured in self._repos and (not reread or configured in self._repos_read):
            return self._repos[configured]
        self._repos_read.add(configured)
        stream = f"repo:{configured}"
        state = self._state(store, stream)
        path = f"/repos/{configured}"
        cached = state.get("full_name")
        page = self.api.get(path, etag=state.get("etag") if cached else None)
        if page.status == 304:
            repo = _Repo(str(cached), str(state.get("default_branch") or "main"), configured)
            self._repos[configured] = repo
            return repo
        data = page.data if isinstance(page.data, dict) else {}
        repo = _Repo(str(data.get("full_name") or configured), str(data.get("default_branch") or "main"), configured)
        self._repos[configured] = repo
        store.set_watermark(
            self.name,
            stream,
            json.dumps({"etag": page.etag, "full_name": repo.full_name, "default_branch": repo.default_branch}),
        )
        return repo

    # -- issues -----------------------------------------------------------------------------
    def _sync_issues(self, store: SourceStore, repo: _Repo, report: SyncReport) -> str | None:
        """Read the issues changed since the watermark. When page 1 answered 304 (nothing changed):
        the version of the list that was unchanged (see ``_issues_version``), else None."""
        stream = f"issues:{repo.full_name}"
        state = self._state(store, stream)
        since = state.get("since") or format_time(self.ctx.history_start())
        cursor_at, cursor_seen = github_time(since), set(state.get("seen", []))
        path = f"/repos/{repo.full_name}/issues"
        params = {"state": "all", "sort": "updated", "direction": "asc", "since": since, "per_page": PER_PAGE}
        key = GitHubApi.key(path, params)
        first_etag: str | None = None
        etag = state.get("etag") if state.get("key") == key else None

        def new(raw: dict[str, Any]) -> bool:
            number, updated = _list_position(raw)
            fresh = updated > cursor_at or (updated == cursor_at and number not in cursor_seen)
            return fresh and not is_pull_request(raw)

        for page in self._list(repo, "issues", path, params, etag, new, since=since):
            if page.status == 304:
                return f"{key} {state.get('etag')}"
            first_etag = first_etag or page.etag
            batch = Batch(replace_history=True, rejections=list(page.rejections))
            try:
                for raw in page.records:
                    try:
                        number, updated = _list_position(raw)
                    except RECORD_ERRORS as bad:
                        self.guard.reject(batch, _record_id(repo, raw), bad, record=raw)
                        continue
                    if updated < cursor_at or (updated == cursor_at and number in cursor_seen):
                        continue  # read in an earlier pass at this very second
                    if not is_pull_request(raw):  # the list includes pull requests: changes, not requests
                        self._issue(repo, raw, batch)
                    # the cursor passes an issue only once it is read: a pass ended by the budget
                    # mid-page keeps the issues read so far and resumes after them
                    if updated > cursor_at:
                        cursor_at, cursor_seen = updated, set()
                    cursor_seen.add(number)
            except BudgetExhausted:
                self._commit_issues(store, stream, batch, cursor_at, cursor_seen, key, None, report)
                raise
            if page.failed:
                self._fail_part(store, batch, report, repo, "issues", page.failed)
            self._commit_issues(store, stream, batch, cursor_at, cursor_seen, key, first_etag, report)
            if self.ctx.should_stop():
                return None
        return None

    def _issues_version(self, store: SourceStore, repo: _Repo) -> str | None:
        """The issues list as last read: its request (with ``since``) and page 1's ETag."""
        state = self._state(store, f"issues:{repo.full_name}")
        return f"{state.get('key')} {state.get('etag')}" if state.get("key") and state.get("etag") else None

    def _commit_issues(
        self,
        store: SourceStore,
        stream: str,
        batch: Batch,
        cursor_at: datetime,
        cursor_seen: set[int],
        key: str,
        etag: str | None,
        report: SyncReport,
    ) -> None:
        watermark = {"since": format_time(cursor_at), "seen": sorted(cursor_seen), "key": key, "etag": etag}
        store.commit(self.name, batch, stream=stream, watermark=json.dumps(watermark))
        self._account(report, batch)

    def _issue(self, repo: _Repo, raw: dict[str, Any], batch: Batch) -> None:
        native_id = f"{repo.full_name}#{raw['number']}"
        try:
            item = self._work_item(repo, raw)
        except RECORD_ERRORS as bad:
            reason = self.guard.reject(batch, native_id, bad)
            log.warning("source=%s issue %s rejected: %s", self.name, native_id, reason)
            return
        if item is not None:
            batch.work_items.append(item)

    def _work_item(self, repo: _Repo, raw: dict[str, Any]) -> WorkItem | None:
        """An issue with its history; None when it vanished while it was read. Raises what its
        parsing raises (the caller rejects it)."""
        number = raw["number"]
        native_id = f"{repo.full_name}#{number}"
        created_at = _required_time(raw, "created_at")
        if raw.get("state") not in ("open", "closed"):
            raise Rejected("unknown_state")
        closed_at = _optional_time(raw, "closed_at")
        if closed_at is not None and closed_at < created_at:
            raise Rejected("end_before_start")
        _check_body(raw)
        labels = [str(lb.get("name", "")) for lb in raw.get("labels") or [] if isinstance(lb, dict)]
        try:
            events = _readable(
                raw["_timeline"]
                if "_timeline" in raw
                else list(self.api.items(f"/repos/{repo.full_name}/issues/{number}/timeline", {"per_page": PER_PAGE}))
            )
        except GitHubHTTPError as exc:
            if exc.status in (404, 410):  # deleted or transferred since the list was read
                log.info("source=%s %s vanished while reading its timeline", self.name, native_id)
                return None
            raise
        # an event without a valid time (or of a shape no documentation shows) rejects the issue:
        # its history could not be ordered
        history = issue_history(native_id, created_at, events)
        return WorkItem(
            source=self.name,
            native_id=native_id,
            ref=gh_issue_ref(repo.full_name, number),
            project=repo.full_name,
            team=self._team(labels),
            type=self._type(raw, labels),
            created_at=created_at,
            history=history,
        )

    def _team(self, labels: list[str]) -> str:
        spec = self.config.team_from
        if not spec.startswith("label:"):
            return spec
        prefix = spec.removeprefix("label:").lower()
        for label in labels:
            if label.lower().startswith(prefix) and len(label) > len(prefix):
                return label[len(prefix) :]
        return ""  # no team label: docs/definitions.md "Labels"

    def _type(self, raw: dict[str, Any], labels: list[str]) -> str:
        """The issue's native issue type when it has one, else the first ``type_labels`` match."""
        native = raw.get("type")
        name = native.get("name") if isinstance(native, dict) else None
        if isinstance(name, str) and name.strip():
            return name.strip()
        for label in labels:
            if label.lower() in self.type_labels:
                return self.type_labels[label.lower()]
        return "Issue"

    # -- pull requests ----------------------------------------------------------------------
    def _sync_pulls(self, store: SourceStore, repo: _Repo, report: SyncReport) -> bool:
        """Closed pull requests newest first, down to the watermark; True when read to the end.

        The list has no ``since``: the watermark moves only when the walk reaches it. A walk ended
        early (budget, shutdown, crash) leaves ``resume``: the span ``(low, high]`` of update times
        it read completely, skipped by the next walk, so a first sync longer than one budget
        window converges instead of starting over.
        """
        stream = f"pulls:{repo.full_name}"
        state = self._state(store, stream)
        floor = github_time(state["at"]) if state.get("at") else self.ctx.history_start()
        seen = set(state.get("seen", []))
        new_at, new_seen = (floor, set(seen)) if state.get("at") else (None, set())
        resume = _Span.of(state.get("resume"))
        if resume is not None and (new_at is None or resume.high > new_at):
            new_at, new_seen = resume.high, set(resume.high_seen)
        path = f"/repos/{repo.full_name}/pulls"
        per_page = PULLS_PROBE if self.config.api == "auto" else PER_PAGE  # auto's REST is the probe alone
        params = {"state": "closed", "sort": "updated", "direction": "desc", "per_page": per_page}
        key = GitHubApi.key(path, params)
        etag = state.get("etag") if state.get("key") == key and resume is None else None
        first_etag: str | None = None
        last_read: datetime | None = None  # the update time of the last pull request read completely
        batch = Batch()

        def partial() -> str:
            span = resume
            if last_read is not None and new_at is not None and (resume is None or last_read <= resume.low):
                span = _Span(last_read, new_at, sorted(new_seen))  # contiguous with what was read before
            return json.dumps(
                {
                    "at": state.get("at"),
                    "seen": sorted(seen),
                    "key": key,
                    "etag": None,
                    "resume": span.to_json() if span else None,
                }
            )

        def new(raw: dict[str, Any]) -> bool:
            number, updated = _list_position(raw)
            fresh = updated > floor or (updated == floor and number not in seen)
            if resume is not None and resume.low < updated <= resume.high:
                fresh = False  # read by the walk that ended early
            return fresh and raw.get("merged_at") is not None

        try:
            for page in self._list(repo, "pullRequests", path, params, etag, new):
                if page.status == 304:
                    return True
                if page.failed:
                    # before any of the page is read: a partial commit of it would mark the failed
                    # pull requests' times as read
                    self._fail_part(store, batch, report, repo, "pull requests", page.failed)
                first_etag = first_etag or page.etag
                batch.rejections += page.rejections
                reached_watermark = False
                for raw in page.records:
                    try:
                        number, updated = _list_position(raw)
                    except RECORD_ERRORS as bad:
                        self.guard.reject(batch, _record_id(repo, raw), bad, record=raw)
                        continue
                    if updated < floor:
                        reached_watermark = True  # newest first: the rest was read in earlier passes
                        break
                    if updated == floor and number in seen:
                        continue
                    if resume is not None and resume.low < updated <= resume.high:
                        continue  # read by the walk that ended early
                    if raw.get("merged_at") is not None:
                        self._pull(repo, raw, batch)
                    if new_at is None or updated > new_at:
                        new_at, new_seen = updated, set()
                    if updated == new_at:
                        new_seen.add(number)
                    last_read = updated
                    if len(batch) + len(batch.rejections) >= BATCH_SIZE:
                        store.commit(self.name, batch, stream=stream, watermark=partial())
                        self._account(report, batch)
                        batch = Batch()
                        if self.ctx.should_stop():
                            return False
                if reached_watermark:
                    break
        except BudgetExhausted:
            store.commit(self.name, batch, stream=stream, watermark=partial())
            self._account(report, batch)
            raise
        watermark = {
            "at": format_time(new_at) if new_at else None,
            "seen": sorted(new_seen),
            "key": key,
            "etag": first_etag,
        }
        store.commit(self.name, batch, stream=stream, watermark=json.dumps(watermark))
        self._account(report, batch)
        return True

    def _pull(self, repo: _Repo, raw: dict[str, Any], batch: Batch) -> None:
        """A merged pull request → its Change and the Links its text and commits carry."""
        native_id = f"{repo.full_name}#{raw['number']}"
        added = Batch()
        try:
            self._read_pull(repo, raw, added)
        except RECORD_ERRORS as bad:
            reason = self.guard.reject(batch, native_id, bad)
            log.warning("source=%s pull request %s rejected: %s", self.name, native_id, reason)
            return
        batch.changes += added.changes
        batch.links += added.links
        batch.rejections += added.rejections

    def _read_pull(self, repo: _Repo, raw: dict[str, Any], batch: Batch) -> None:
        number = raw["number"]
        native_id = f"{repo.full_name}#{number}"
        pr_ref = gh_pr_ref(repo.full_name, number)
        created_at = _required_time(raw, "created_at")
        merged_at = _required_time(raw, "merged_at")
        if merged_at < created_at:
            raise Rejected("end_before_start")
        _check_body(raw)
        shas: list[str] = []
        authored: list[datetime] = []
        links: list[Link] = []
        for entry in _readable(
            raw["_commits"]
            if "_commits" in raw
            else list(self.api.items(f"/repos/{repo.full_name}/pulls/{number}/commits", {"per_page": PER_PAGE}))
        ):
            sha = entry.get("sha") if isinstance(entry, dict) else None
            if not isinstance(sha, str) or not _SHA.match(sha):
                continue
            shas.append(sha.lower())
            detail = _object(entry.get("commit"))
            when = _time_or_none(_object(detail.get("author")).get("date")) or _time_or_none(
                _object(detail.get("committer")).get("date")
            )
            if when is not None:
                authored.append(when)
            # GitHub links a commit-message reference to the commit, not to the pull request
            links += self._mentions(detail.get("message"), repo.full_name, commit_ref(sha))
        if not authored:
            batch.rejections.append(Rejection(self.name, native_id, "missing_field"))
            return
        ready_at, first_review_at = review_times(
            created_at,
            raw.get("user"),
            _readable(
                raw["_timeline"]
                if "_timeline" in raw
                else list(self.api.items(f"/repos/{repo.full_name}/issues/{number}/timeline", {"per_page": PER_PAGE}))
            ),
        )
        merge_sha = raw.get("merge_commit_sha")
        if isinstance(merge_sha, str) and _SHA.match(merge_sha):
            shas.append(merge_sha.lower())
        text = "\n".join(str(raw.get(k) or "") for k in ("title", "body"))
        links += self._mentions(text, repo.full_name, pr_ref)
        batch.changes.append(
            Change(
                source=self.name,
                native_id=native_id,
                ref=pr_ref,
                service=repo.full_name,
                kind="pull_request",
                first_commit_at=min(authored),
                merged_at=merged_at,
                commits=tuple(dict.fromkeys(shas)),
                ready_at=ready_at,
                first_review_at=first_review_at,
            )
        )
        batch.links.extend(dict.fromkeys(links))

    def _mentions(self, text: str | None, repo: str, target: str) -> list[Link]:
        """Links from ``Fixes #N`` closing references and ``AB#123`` mentions to ``target``."""
        out = [Link(self.name, gh_issue_ref(r, n), target) for r, n in closing_references(text, repo)]
        out += [Link(self.name, ado_ref(n), target) for n in azure_boards_mentions(text)]
        return out

    # -- deployments ------------------------------------------------------------------------
    def _mode(self, repo: _Repo) -> _Mode:
        base = f"/repos/{repo.full_name}"
        mode = self.config.deployments_from
        if mode == "deployments":
            return _Mode(
                f"deployments:{repo.full_name}",
                f"{base}/deployments",
                {"per_page": PER_PAGE},
                None,
                "created_at",
                self._read_deployments,
                listed_changes=False,
            )
        if mode == "releases":
            return _Mode(
                f"releases:{repo.full_name}",
                f"{base}/releases",
                {"per_page": PER_PAGE},
                None,
                "published_at",
                self._read_releases,
                by_id=False,
            )
        workflow = mode.split(":", 1)[1]
        # no filter parameters: GitHub caps filtered run searches at 1,000 results; the branch is
        # checked here instead
        return _Mode(
            f"runs:{repo.full_name}:{workflow}",
            f"{base}/actions/workflows/{quote(workflow, safe='')}/runs",
            {"per_page": PER_PAGE},
            "workflow_runs",
            "created_at",
            self._read_runs,
        )

    def _sync_deployments(self, store: SourceStore, repo: _Repo, report: SyncReport, listed: bool = False) -> None:
        """The new deliveries, and the unfinished ones again. ``listed``: the change probe proved
        the list unchanged, so it is not asked for (as if it answered 304)."""
        mode = self._mode(repo)
        state = self._state(store, mode.stream)
        key = GitHubApi.key(mode.path, mode.params)
        max_id = state.get("max_id", 0)
        if _id_problem(max_id) is not None:
            max_id = 0  # a watermark poisoned by an absurd id before ids were checked: read again
        pending: dict[str, Any] = dict(state.get("pending", {}))
        bad = Batch()
        fresh: list[dict[str, Any]] = []
        etag = state.get("etag") if state.get("key") == key else None
        first_etag: str | None = None
        modified = False
        first_page: set[str] = set()
        pages: Iterator[_ListPage]
        if listed:
            pages = iter([_ListPage(304, etag, [])])
        elif self.config.deployments_from == "deployments":
            pages = self._list(
                repo,
                "deployments",
                mode.path,
                mode.params,
                etag,
                lambda raw: _id_problem(raw.get("id")) is None and raw["id"] > max_id,
            )
        else:
            pages = self._rest_list(mode.path, mode.params, etag, mode.list_key)
        for page in pages:
            if page.status == 304:
                break
            if page.failed:
                raise GraphQLError(page.failed, f"{repo.full_name} deployments")  # read again next pass
            if not modified:
                first_page = {str(raw.get("id")) for raw in page.records}
            modified = True
            bad.rejections += page.rejections
            first_etag = first_etag or page.etag
            old = new = 0
            for raw in page.records:
                problem = _id_problem(raw.get("id"))
                if problem is not None:
                    # counted, never a high-water mark: one id of 2**63 would hide every later record
                    bad.rejections.append(
                        Rejection(self.name, f"{mode.stream}:{entry_label(raw)}", shape_problem(raw, problem))
                    )
                    continue
                if (
                    raw["id"] <= max_id
                    or (_time_or_none(raw.get(mode.horizon_field)) or self.ctx.now()) < self.ctx.history_start()
                ):
                    old += 1  # read in an earlier pass, or older than the history we keep
                    continue
                new += 1
                fresh.append(raw)
            if (old and mode.by_id) or not new:
                break
        if not modified and all(entry.get("listed") for entry in pending.values()):
            return  # 304: nothing new, and what is unfinished is on the unchanged first page
        if mode.list_key == "workflow_runs" and any(r.get("head_branch") != repo.default_branch for r in fresh):
            # a run on another branch: perhaps the default branch was renamed since we read it
            repo = self._repository(store, repo.configured or repo.full_name, reread=True)
        # oldest first, a chunk at a time, each committed with the id it reaches: a pass ended by the
        # budget resumes after the last chunk (and until the last, no ETag: a 304 must not hide the rest)
        fresh.sort(key=lambda r: int(r["id"]))
        if len(fresh) >= HISTORY_LISTING_FROM:
            self._many_contents.add(repo.full_name)  # read in chunks: one listing serves them all
        batch, position = bad, 0
        while position == 0 or fresh:
            size = self._chunk_size()
            chunk, fresh = fresh[:size], fresh[size:]
            # the unfinished records of earlier passes are re-read once, with the first chunk
            work = pending if position == 0 else {}
            position += 1
            finished = mode.read(repo, chunk, work, batch)
            pending.update(work)
            if modified:
                for record_id, entry in pending.items():
                    entry["listed"] = mode.listed_changes and record_id in first_page
            max_id = max([max_id, *(r["id"] for r in chunk)])
            last = not fresh
            new_state = {
                "max_id": max_id,
                "pending": pending,
                "key": key,
                "etag": (first_etag or etag) if last else None,
            }
            for deployment in self._with_contents(store, repo, finished, report, batch):
                batch.deployments.append(deployment)
                if len(batch) >= BATCH_SIZE:
                    store.commit(self.name, batch)
                    self._account(report, batch)
                    batch = Batch()
            store.commit(self.name, batch, stream=mode.stream, watermark=json.dumps(new_state))
            self._account(report, batch)
            batch = Batch()
            if self.ctx.should_stop() and not last:
                return

    def _chunk_size(self) -> int:
        """Records in the next chunk of new deployments, releases or runs: ``BATCH_SIZE``, or fewer
        when the REST budget left above the reserve pays for fewer (``RECORD_REQUESTS`` each).

        A chunk is what a pass ended by the budget keeps: one that costs more than the window has
        left is never committed, and when it costs more than a whole window, the passes after
        each reset would read it again and again without moving on.
        """
        client = self.api.client
        budget = client.telemetry.budget("rest")
        if budget is None or budget.limit is None or budget.reset_at is None or time.time() >= budget.reset_at:
            return BATCH_SIZE
        spare = budget.remaining - client.reserve * budget.limit
        return max(1, min(BATCH_SIZE, int(spare // RECORD_REQUESTS)))

    def _read_deployments(
        self, repo: _Repo, fresh: list[dict[str, Any]], pending: dict[str, Any], batch: Batch
    ) -> list[_Finished]:
        """Deployments API: a deployment is finished at its latest finished status."""
        # statuses the GraphQL list brought along; the others are read (conditionally) over REST
        prefetched = {str(raw["id"]): raw["_statuses"] for raw in fresh if "_statuses" in raw}
        for raw in fresh:
            # only strings are kept: the pending list is stored as JSON in the watermark
            pending[str(raw["id"])] = {
                k: v if isinstance(v, str) else None
                for k, v in (
                    ("sha", raw.get("sha")),
                    ("environment", raw.get("environment")),
                    ("created_at", raw.get("created_at")),
                )
            } | {"etag": None}
        finished: list[_Finished] = []
        for dep_id, entry in list(pending.items()):
            record_id = f"{repo.full_name}:deployment:{dep_id}"
            try:
                sha = _sha_of(entry.get("sha"))
                created = _required_time(entry, "created_at")
                if not isinstance(entry.get("environment"), str) or not entry["environment"]:
                    raise Rejected("missing_field")
                if len(entry["environment"]) > 255:
                    raise Rejected("too_large")
            except RECORD_ERRORS as bad:
                self.guard.reject(batch, record_id, bad)
                del pending[dep_id]
                continue
            if dep_id in prefetched and (self.config.api != "auto" or _finished(prefetched[dep_id])):
                statuses, first_etag = prefetched[dep_id], None
            else:
                path = f"/repos/{repo.full_name}/deployments/{dep_id}/statuses"
                pages = self.api.pages(path, {"per_page": PER_PAGE}, entry.get("etag"))
                try:
                    first = next(pages)
                except GitHubHTTPError as exc:
                    if exc.status != 404:
                        raise
                    del pending[dep_id]  # the deployment was deleted
                    continue
                if first.status == 304:
                    continue
                statuses = records(first.data) + [status for page in pages for status in records(page.data)]
                first_etag = first.etag
            try:
                outcome = deployment_outcome(_readable(statuses))
            except RECORD_ERRORS as bad:
                self.guard.reject(batch, record_id, bad)
                del pending[dep_id]
                continue
            if outcome is None:  # no terminal status yet: read again (conditionally) next time
                entry["etag"] = first_etag
                continue
            del pending[dep_id]
            status, finished_at = outcome
            if finished_at < created:
                batch.rejections.append(Rejection(self.name, record_id, "end_before_start"))
                continue
            finished.append(
                _Finished(
                    f"deployment:{dep_id}", int(dep_id), str(entry["environment"]), status, sha, created, finished_at
                )
            )
        return finished

    def _reread_pending(self, pending: dict[str, dict[str, Any]], base: str) -> list[dict[str, Any]]:
        """Conditionally re-read the unfinished records (drafts, running runs) kept from earlier passes.

        A 304 means unchanged (nothing returned); a 404 means it was deleted (forgotten).
        """
        changed = []
        for record_id, entry in list(pending.items()):
            try:
                page = self.api.get(f"{base}/{record_id}", etag=entry.get("etag"))
            except GitHubHTTPError as exc:
                if exc.status != 404:
                    raise
                del pending[record_id]
                continue
            if page.status == 200 and isinstance(page.data, dict):
                changed.append({**page.data, "_etag": page.etag})
        return changed

    def _etag_of(self, raw: dict[str, Any], path: str) -> str | None:
        """The ETag of an unfinished record; first sight: read it alone once, so later polls are conditional."""
        return raw.get("_etag") or self.api.get(path).etag

    def _read_releases(
        self, repo: _Repo, fresh: list[dict[str, Any]], pending: dict[str, Any], batch: Batch
    ) -> list[_Finished]:
        """Releases: each published release (not a draft, not a prerelease) deploys its tag to production."""
        releases = list(fresh)
        # drafts seen before: published since?
        releases.extend(self._reread_pending(pending, f"/repos/{repo.full_name}/releases"))
        finished: list[_Finished] = []
        tag_commits = self._tag_commits(repo, releases)
        for raw in releases:
            rel_id = str(raw.get("id"))
            record_id = f"{repo.full_name}:release:{record_label(raw.get('id'))}"
            if _id_problem(raw.get("id")) is not None:
                self.guard.reject(batch, record_id, Rejected(_id_problem(raw.get("id")) or "wrong_type"), record=raw)
                pending.pop(rel_id, None)
                continue
            if raw.get("draft"):
                pending[rel_id] = {"etag": self._etag_of(raw, f"/repos/{repo.full_name}/releases/{rel_id}")}
                continue
            pending.pop(rel_id, None)
            if raw.get("prerelease"):
                continue  # a release candidate is not a production deployment
            try:
                published = _required_time(raw, "published_at")
                sha = self._release_sha(repo, raw, tag_commits)
            except RECORD_ERRORS as bad:
                self.guard.reject(batch, record_id, bad)
                continue
            finished.append(
                _Finished(
                    f"release:{rel_id}",
                    int(rel_id),
                    "production",
                    "success",
                    sha,
                    _time_or_none(raw.get("created_at")),
                    published,
                )
            )
        return finished

    def _tag_commits(self, repo: _Repo, releases: list[dict[str, Any]]) -> dict[str, str]:
        """Plans other than ``rest``: the tag commits of the published releases whose
        ``target_commitish`` names no commit, in one GraphQL query per 50 (1 point each) instead of
        a REST tag lookup each (docs/definitions.md, "Which GitHub API reads what"). What the query
        cannot answer is looked up over REST, as is everything when it fails."""
        if self.graphql is None:
            return {}
        tags = [
            tag
            for raw in releases
            if not raw.get("draft")
            and not raw.get("prerelease")
            and not (isinstance(raw.get("target_commitish"), str) and _SHA.match(raw["target_commitish"]))
            and isinstance(tag := raw.get("tag_name"), str)
            and tag
        ]
        if not tags:
            return {}
        owner, name = repo.full_name.split("/", 1)
        try:
            return self.graphql.tag_commits(owner, name, list(dict.fromkeys(tags)))
        except (GraphQLError, GitHubHTTPError) as exc:
            log.warning(
                "source=%s %s: release tags over GraphQL failed (%s); over REST", self.name, repo.full_name, exc
            )
            return {}

    def _release_sha(self, repo: _Repo, raw: dict[str, Any], tag_commits: dict[str, str] | None = None) -> str:
        """The commit a release's tag points to (``target_commitish`` is usually a branch name)."""
        target = raw.get("target_commitish")
        if isinstance(target, str) and _SHA.match(target):
            return target.lower()
        tag = raw.get("tag_name")
        if not isinstance(tag, str) or not tag:
            raise Rejected("missing_field")
        known = (tag_commits or {}).get(tag)
        if known is not None and _SHA.match(known):
            return known.lower()
        try:
            obj = (self.api.get(f"/repos/{repo.full_name}/git/ref/tags/{quote(tag, safe='')}").data or {}).get(
                "object"
            ) or {}
            if obj.get("type") == "tag":  # an annotated tag: one more hop to its commit
                obj = (self.api.get(f"/repos/{repo.full_name}/git/tags/{obj.get('sha')}").data or {}).get(
                    "object"
                ) or {}
        except GitHubHTTPError as exc:
            if exc.status != 404:
                raise
            raise Rejected("missing_field") from None
        return _sha_of(obj.get("sha"))

    def _read_runs(
        self, repo: _Repo, fresh: list[dict[str, Any]], pending: dict[str, Any], batch: Batch
    ) -> list[_Finished]:
        """Workflow runs on the default branch: completed success/failure runs are deployments."""
        runs = [r for r in fresh if r.get("head_branch") == repo.default_branch]
        # runs in progress last time
        runs.extend(self._reread_pending(pending, f"/repos/{repo.full_name}/actions/runs"))
        finished: list[_Finished] = []
        jobs = self._run_jobs(repo, runs)
        for raw in runs:
            run_id = str(raw.get("id"))
            record_id = f"{repo.full_name}:run:{record_label(raw.get('id'))}"
            if _id_problem(raw.get("id")) is not None:
                self.guard.reject(batch, record_id, Rejected(_id_problem(raw.get("id")) or "wrong_type"), record=raw)
                pending.pop(run_id, None)
                continue
            if raw.get("status") != "completed":
                pending[run_id] = {"etag": self._etag_of(raw, f"/repos/{repo.full_name}/actions/runs/{run_id}")}
                continue
            pending.pop(run_id, None)
            if not _deploys(raw):
                continue  # cancelled, skipped, neutral…: not a deployment
            try:
                sha = _sha_of(raw.get("head_sha"))
                started = _optional_time(raw, "run_started_at") or _optional_time(raw, "created_at")
                finished_at = self._run_finished_at(repo, raw, jobs.get(raw["id"]))
                if started is not None and finished_at < started:
                    raise Rejected("end_before_start")
            except RECORD_ERRORS as bad:
                self.guard.reject(batch, record_id, bad)
                continue
            except GitHubHTTPError as exc:
                if exc.status not in (404, 410):
                    raise
                log.info("source=%s run %s was deleted while it was read", self.name, record_id)
                continue
            status = "success" if raw.get("conclusion") == "success" else "failure"
            finished.append(_Finished(f"run:{run_id}", int(run_id), "production", status, sha, started, finished_at))
        return finished

    def _run_jobs(self, repo: _Repo, runs: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
        """Plans other than ``rest``: the jobs of the finished runs that are deployments, over
        GraphQL, 100 runs a query of 1 point, instead of a REST ``/jobs`` request each
        (docs/definitions.md, "Which GitHub API reads what"). A run the answer does not give is
        read over REST, as is every run when the query fails."""
        if self.graphql is None:
            return {}
        wanted = {
            raw["id"]: raw["node_id"]
            for raw in runs
            if _id_problem(raw.get("id")) is None
            and raw.get("status") == "completed"
            and _deploys(raw)
            and isinstance(raw.get("node_id"), str)
            and raw["node_id"]
        }
        if not wanted:
            return {}
        try:
            return self.graphql.run_jobs(repo.full_name.split("/", 1)[0], wanted)
        except (GraphQLError, GitHubHTTPError) as exc:
            log.warning("source=%s %s: run jobs over GraphQL failed (%s); over REST", self.name, repo.full_name, exc)
            return {}

    def _run_finished_at(self, repo: _Repo, raw: dict[str, Any], jobs: list[dict[str, Any]] | None = None) -> datetime:
        """A finished run ends when its last job completes (``/actions/runs/{id}/jobs``, read once,
        unless ``jobs`` came over GraphQL).

        ``updated_at`` is no finish time: re-runs and later edits move it, sometimes by a year.
        A run that never started a job (a workflow file error) ends at ``updated_at``.
        """
        if jobs is None:
            jobs = list(
                self.api.items(
                    f"/repos/{repo.full_name}/actions/runs/{raw['id']}/jobs",
                    {"filter": "latest", "per_page": PER_PAGE},
                    "jobs",
                )
            )
        jobs = _readable(jobs)
        ends = [_required_time(job, "completed_at") for job in jobs if job.get("completed_at") is not None]
        return max(ends) if ends else _required_time(raw, "updated_at")

    # -- what a deployment contains ---------------------------------------------------------
    def _with_contents(
        self, store: SourceStore, repo: _Repo, finished: list[_Finished], report: SyncReport, batch: Batch
    ) -> list[Deployment]:
        """Deployments with ``contains``, in creation order; direct pushes found in them go to ``batch``.

        Contents are read only where a figure uses them: successful production deployments. The
        base of each is the latest *earlier-created* success to the same environment, so a
        deployment that finishes successfully after later ones were stored changes their base:
        those are recomputed too.
        """
        stored = self._delivered.get(repo.full_name)
        if stored is None:
            # read once per repository and pass, then kept up to date with what each chunk stores:
            # re-read per chunk, a first sync read the store's deliveries quadratically
            stored = self._delivered[repo.full_name] = {
                d.native_id: d for d in store.deployments(self.name, service=repo.full_name)
            }
        successes: dict[str, dict[int, str]] = {}
        for d in stored.values():
            if d.status == "success" and d.sha:
                successes.setdefault(d.environment, {})[_order(d.native_id)] = d.sha
        for f in finished:
            if f.status == "success":
                successes.setdefault(f.environment, {})[f.order] = f.sha
        # each environment's successes in creation order: a deployment's bases are those before it,
        # newest first, found by bisection and walked only as far as ``_contents`` needs
        ordered = {env: sorted(by_order.items()) for env, by_order in successes.items()}
        todo: dict[str, tuple[int, Deployment]] = {}
        earliest_new: dict[str, int] = {}
        for f in finished:
            todo[f.native_id] = (
                f.order,
                Deployment(
                    source=self.name,
                    native_id=f.native_id,
                    service=repo.full_name,
                    environment=f.environment,
                    production=matches_environment(f.environment, self.config.production_environments),
                    status=f.status,
                    started_at=f.started_at,
                    finished_at=f.finished_at,
                    sha=f.sha,
                ),
            )
            if f.status == "success":
                earliest_new[f.environment] = min(f.order, earliest_new.get(f.environment, f.order))
        for d in stored.values():
            if (
                d.native_id not in todo
                and d.environment in earliest_new
                and _order(d.native_id) > earliest_new[d.environment]
            ):
                todo[d.native_id] = (_order(d.native_id), d)
        gone: set[str] = set()
        out = []
        in_pulls = self._in_pulls.get(repo.full_name)
        to_open = sum(1 for _, d in todo.values() if d.production and d.status == "success")
        history = self._histories.get(repo.full_name)
        many = to_open >= HISTORY_LISTING_FROM or repo.full_name in self._many_contents
        if history is None and self.graphql is not None and many:
            # many compares (a first sync): one listing of the branch answers most of them
            history = self._histories[repo.full_name] = self._history(repo)
        for order, d in sorted(todo.values(), key=lambda t: t[0]):
            if not (d.production and d.status == "success"):
                out.append(dataclasses.replace(d, contains=()))  # counted, not opened
                continue
            commits = self._contents(
                repo, d.sha or "", _earlier(ordered.get(d.environment, []), order), gone, report, history
            )
            out.append(dataclasses.replace(d, contains=tuple(commit_ref(c["sha"]) for c in commits)))
            if in_pulls is None:
                # the pull requests were read before the deployments (a pass reads streams in that
                # order) and the deployments add none: one read for the repository's whole stream
                in_pulls = self._in_pulls[repo.full_name] = {
                    sha
                    for c in store.changes(self.name, service=repo.full_name)
                    if c.kind == "pull_request"
                    for sha in c.commits
                }
            self._direct_pushes(repo, [c for c in commits if c["sha"] not in in_pulls], batch)
        stored.update((d.native_id, d) for d in out)  # the caller stores them next
        return out

    def _direct_pushes(self, repo: _Repo, commits: list[dict[str, Any]], batch: Batch) -> None:
        """Commits on the default branch that no merged pull request brought: changes of their own.

        Their messages link like a pull request's text: closing keywords and ``AB#123``. The time
        of the change is the commit's author date (a skewed clock shows up as a negative lead
        time, which the figures reject and count).
        """
        for entry in commits:
            sha = entry["sha"]
            native_id = f"{repo.full_name}@{sha}"
            try:
                detail = _object(entry.get("commit"))
                authored = _time_or_none(_object(detail.get("author")).get("date"))
                committed = _time_or_none(_object(detail.get("committer")).get("date"))
            except RECORD_ERRORS as bad:
                self.guard.reject(batch, native_id, bad)
                continue
            first = authored or committed
            if first is None:
                batch.rejections.append(Rejection(self.name, native_id, "missing_field"))
                continue
            target = commit_ref(sha)
            batch.changes.append(
                Change(
                    source=self.name,
                    native_id=native_id,
                    ref=target,
                    service=repo.full_name,
                    kind="commit",
                    first_commit_at=first,
                    merged_at=committed or authored,
                    commits=(sha,),
                )
            )
            batch.links.extend(dict.fromkeys(self._mentions(detail.get("message"), repo.full_name, target)))

    def _history(self, repo: _Repo) -> _History:
        params = {"sha": repo.default_branch, "since": format_time(self.ctx.history_start()), "per_page": PER_PAGE}
        try:
            return _History(self._listed(f"/repos/{repo.full_name}/commits", params))
        except GitHubHTTPError as exc:
            if exc.status not in (404, 409, 422):
                raise
            return _History([])  # an empty repository or branch: every content is a compare

    def _contents(
        self,
        repo: _Repo,
        head: str,
        bases: Iterable[str],
        gone: set[str],
        report: SyncReport,
        history: _History | None = None,
    ) -> list[dict[str, Any]]:
        """Commits reachable from ``head`` and not from the first base whose commit still exists."""
        for base in bases:
            if base in gone:
                continue
            if base == head:
                return []
            local = history.ahead(head, base) if history is not None else None
            if local is not None:
                return local
            try:
                return self._listed(
                    f"/repos/{repo.full_name}/compare/{base}...{head}", {"per_page": PER_PAGE}, "commits"
                )
            except GitHubHTTPError as exc:
                if exc.status != 404:
                    raise
            report.details["compare_fallbacks"] += 1
            if not self._exists(repo, head):
                log.warning(
                    "source=%s %s: deployed commit %s no longer exists (force-push?); it contains nothing",
                    self.name,
                    repo.full_name,
                    head,
                )
                gone.add(head)
                return []
            log.warning(
                "source=%s %s: base commit %s no longer exists (force-push?); comparing with an earlier deployment",
                self.name,
                repo.full_name,
                base,
            )
            gone.add(base)
        params = {"sha": head, "since": format_time(self.ctx.history_start()), "per_page": PER_PAGE}
        try:
            return self._listed(f"/repos/{repo.full_name}/commits", params)
        except GitHubHTTPError as exc:
            if exc.status not in (404, 409, 422):
                raise
            report.details["compare_fallbacks"] += 1
            log.warning(
                "source=%s %s: cannot list the commits of %s (HTTP %d); it contains nothing",
                self.name,
                repo.full_name,
                head,
                exc.status,
            )
            return []

    def _listed(self, path: str, params: dict[str, Any], key: str | None = None) -> list[dict[str, Any]]:
        """The commits of a list (compare or commits), one per sha (lower case), in list order."""
        out: dict[str, dict[str, Any]] = {}
        for c in self.api.items(path, params, key):
            if isinstance(c.get("sha"), str) and _SHA.match(c["sha"]):
                sha = c["sha"].lower()
                if sha not in out:
                    out[sha] = _slim_commit(c, sha)
        return list(out.values())

    def _exists(self, repo: _Repo, sha: str) -> bool:
        try:
            self.api.get(f"/repos/{repo.full_name}/commits/{sha}")
        except GitHubHTTPError as exc:
            if exc.status in (404, 422):
                return False
            raise
        return True

    # -- which API reads a list ---------------------------------------------------------------
    def _list(
        self,
        repo: _Repo,
        connection: str,
        path: str,
        params: dict[str, Any],
        etag: str | None,
        new: Callable[[dict[str, Any]], bool],
        since: str | None = None,
    ) -> Iterator[_ListPage]:
        """A repository list (``issues``, ``pullRequests``, ``deployments``) in REST records.

        ``rest``: the REST pages. ``auto``: REST page 1 conditionally first (a 304 is free and ends
        it, as in the REST plan; its ETag is what the next pass sends); if that page is the whole
        list and holds nothing ``new`` that needs a history (the first pass after a sync re-asks
        with a newer ``since``), it is the answer; otherwise the GraphQL pages, with each record's
        history. ``graphql``: the GraphQL pages alone.

        GraphQL's issues exclude pull requests, REST's include them: when the probe is the whole
        list, its pull requests follow the GraphQL pages, so the watermark's ``since`` ends where
        the REST plan's would and the next pass's probe is the same URL (a 304 when idle).
        """
        if self.graphql is None:
            yield from self._rest_list(path, params, etag)
            return
        probe_etag: str | None = None
        tail: list[dict[str, Any]] = []
        if self.config.api == "auto":
            probe = self.api.get(path, params, etag)
            if probe.status == 304:
                yield _ListPage(304, etag, [])
                return
            probe_etag = probe.etag
            if probe.next_url is None and not any(_is_new(new, raw) for raw in records(probe.data)):
                yield _ListPage(200, probe_etag, records(probe.data))
                return
            if connection == "issues" and probe.next_url is None:
                tail = [raw for raw in records(probe.data) if is_pull_request(raw)]
        owner, name = repo.full_name.split("/", 1)
        for nodes, failed in self.graphql.pages(owner, name, connection, since):
            page = _ListPage(200, probe_etag, [], [e for e in failed if e.get("type") != NOT_A_NODE])
            for node in nodes:
                self._graphql_record(repo, connection, node, page)
            for error in failed:
                if error.get("type") == NOT_A_NODE:  # a null node no error explains: a record not there
                    cursor = hashlib.sha256(str(error.get("cursor")).encode()).hexdigest()[:12]
                    where = f"{repo.full_name}:{connection}:{cursor}:{(error.get('path') or ['', '?'])[-1]}"
                    page.rejections.append(Rejection(self.name, where, "missing_field"))
            yield page
        if tail:
            yield _ListPage(200, probe_etag, tail)

    def _graphql_record(self, repo: _Repo, connection: str, node: dict[str, Any], page: _ListPage) -> None:
        """A GraphQL node as the REST record onto ``page``, or its rejection when it cannot be one.

        An entry nested too deeply to decode stays the TooDeep it is, so the stream rejects it as
        such, like any entry of a REST page."""
        if isinstance(node, TooDeep):
            page.records.append(node)
            return
        try:
            page.records.append(GRAPHQL_RECORDS[connection](node))
        except RECORD_ERRORS as bad:
            key = "databaseId" if connection == "deployments" else "number"
            where = f"{repo.full_name}#{entry_label(node, key)}"
            if connection == "deployments":
                where = f"deployments:{repo.full_name}:{entry_label(node, key)}"
            rejected = Batch()
            reason = self.guard.reject(rejected, where, bad, record=node)
            page.rejections += rejected.rejections
            log.warning("source=%s GraphQL %s node %s rejected: %s", self.name, connection, where, reason)

    def _rest_list(
        self, path: str, params: dict[str, Any], etag: str | None, list_key: str | None = None
    ) -> Iterator[_ListPage]:
        for page in self.api.pages(path, params, etag, list_key=list_key):
            yield _ListPage(page.status, page.etag, records(page.data, list_key) if page.status == 200 else [])

    def _fail_part(
        self,
        store: SourceStore,
        batch: Batch,
        report: SyncReport,
        repo: _Repo,
        label: str,
        errors: list[dict[str, Any]],
    ) -> None:
        """Keep what a partial GraphQL answer held (upserts, the watermark stays), then fail the part:
        the next pass reads from the same watermark, so the nodes that failed are not lost."""
        store.commit(self.name, batch)
        self._account(report, batch)
        raise GraphQLError(errors, f"{repo.full_name} {label} (partial answer, kept {len(batch)} records)")

    # -- helpers ----------------------------------------------------------------------------
    def _state(self, store: SourceStore, stream: str) -> dict[str, Any]:
        raw = store.watermark(self.name, stream)
        try:
            value = json.loads(raw) if raw else {}
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    def _account(self, report: SyncReport, batch: Batch) -> None:
        report.items += len(batch)
        report.batches += 1
        if len(batch) + len(batch.rejections):
            self.ctx.progress(len(batch) + len(batch.rejections))


# -- pure normalisation (unit-tested without HTTP) ------------------------------------------
def issue_history(native_id: str, created_at: datetime, events: list[dict[str, Any]]) -> tuple[StateChange, ...]:
    """An issue's states over time from its timeline (docs/definitions.md), one StateChange per change.

    Walk the timeline in order: ``assigned``/``unassigned`` change the assignees, ``closed`` closes
    with its ``state_reason`` (none = completed), ``reopened`` reopens. A ``cross-referenced`` event
    from a pull request that *closes* the issue (a closing keyword for it in the pull request's title
    or body) links it; a pull request that only mentions it ("related to #N") does not. A linked pull
    request stops being open at its ``closed_at`` (merged or not), a step taken after the timeline
    events of that same second. ``connected`` (a pull request linked in the sidebar, which closes
    the issue on merge) links until ``disconnected``: the REST timeline does not say which pull
    request, so it counts as one open pull request until then. The state after each step: closed →
    ``completed``/``not_planned``; open with an assignee or an open linked pull request →
    ``in_progress``; else ``open``. ``seq`` counts the states from 1 (the creation).
    """
    repo, _, number = native_id.rpartition("#")
    steps: list[tuple[datetime, int, int, str, Any]] = []
    for i, event in enumerate(events):
        kind = event.get("event") if isinstance(event, dict) else None
        if kind == "cross-referenced":
            issue = (event.get("source") or {}).get("issue")
            if not isinstance(issue, dict) or not is_pull_request(issue):
                continue  # mentioned by another issue: nobody is working on ours because of that
            if not _closes(issue, repo, number):
                continue  # "related to #N": a mention, not work on it
            pr = issue.get("url") or issue.get("html_url") or issue.get("number")
            steps.append((github_time(event.get("created_at")), 0, i, "linked", pr))
            if issue.get("closed_at"):
                steps.append((github_time(issue["closed_at"]), 1, i, "unlinked", pr))
        elif kind == "connected":
            steps.append((github_time(event.get("created_at")), 0, i, "linked", "connected"))
        elif kind == "disconnected":
            steps.append((github_time(event.get("created_at")), 0, i, "unlinked", "connected"))
        elif kind in ("assigned", "unassigned", "closed", "reopened"):
            steps.append((github_time(event.get("created_at")), 0, i, kind, event))
    steps.sort(key=lambda s: (s[0], s[1], s[2]))
    closed: str | None = None
    assignees: set[str] = set()
    open_prs: set[Any] = set()
    states = [StateChange(native_id, 1, created_at, "open", Category.PROPOSED)]
    for at, _, _, kind, detail in steps:
        if kind == "linked":
            open_prs.add(detail)
        elif kind == "unlinked":
            open_prs.discard(detail)
        elif kind == "assigned":
            assignees.add(_login(detail.get("assignee")))
        elif kind == "unassigned":
            assignees.discard(_login(detail.get("assignee")))
        elif kind == "closed":
            closed = "not_planned" if detail.get("state_reason") == "not_planned" else "completed"
        else:
            closed = None
        state = closed or ("in_progress" if assignees or open_prs else "open")
        if state != states[-1].state:
            states.append(StateChange(native_id, len(states) + 1, at, state, CATEGORY_OF_STATE[state]))
    return tuple(states)


def review_times(created_at: datetime, author: Any, events: list[Any]) -> tuple[datetime, datetime | None]:
    """When a pull request became ready for review, and its first review by someone else, from its
    timeline (docs/definitions.md, "Things": Change).

    Ready: its creation, unless it was opened as a draft: then its first ``ready_for_review``. It
    was opened as a draft when the first of its ``ready_for_review`` / ``convert_to_draft`` events
    is a ``ready_for_review`` (a merged pull request is no draft, so a draft-opened one has one).

    First review: the earliest ``reviewed`` event (``submitted_at``) that is submitted (not
    ``pending``) or review comment (``line-commented``, each comment's ``created_at``) of a
    submitted review, by anyone but the author (bots included). A review read over GraphQL carries
    when it was started (``_started_at``: ``PullRequestReview.createdAt``, when its first comment
    was drafted), which stands for its comments' times. Logins compare case-insensitively and
    without REST's ``[bot]`` suffix (GraphQL names bots without it). A deleted author (``ghost``,
    or none) cannot be told from the reviewers: then every review counts.
    """
    entries = [e for e in events if isinstance(e, dict)]
    return _ready_at(created_at, entries), _first_review_at(_person(author), entries)


def _ready_at(created_at: datetime, events: list[dict[str, Any]]) -> datetime:
    drafts = [
        (at, i, kind)
        for i, e in enumerate(events)
        if (kind := e.get("event")) in ("ready_for_review", "convert_to_draft")
        and (at := _time_or_none(e.get("created_at"))) is not None
    ]
    first = min(drafts, default=None)
    return max(first[0], created_at) if first and first[2] == "ready_for_review" else created_at


def _first_review_at(author: str | None, events: list[dict[str, Any]]) -> datetime | None:
    submitted: set[Any] = set()  # the ids of submitted reviews, whose comments count
    times: list[datetime] = []
    for e in events:
        if e.get("event") != "reviewed" or str(e.get("state") or "").lower() == "pending":
            continue  # a pending review is not submitted: only its author sees it
        at = _time_or_none(e.get("submitted_at"))
        if at is None:
            continue  # unsubmitted, whatever its state says
        if e.get("id") is not None:
            submitted.add(e["id"])
        if _reviewer(e.get("user"), author):
            started = _time_or_none(e.get("_started_at"))
            times.append(min(at, started) if started else at)
    for e in events:
        comments = e.get("comments") if e.get("event") == "line-commented" else None
        for c in comments if isinstance(comments, list) else []:
            if not isinstance(c, dict):
                continue
            review = c.get("pull_request_review_id")
            if review is not None and review not in submitted:
                continue  # a comment of a review not (yet) submitted
            at = _time_or_none(c.get("created_at"))
            if at is not None and _reviewer(c.get("user"), author):
                times.append(at)
    return min(times, default=None)


def _person(user: Any) -> str | None:
    """A login to compare people by; None for a deleted account (``ghost``, or no user at all)."""
    login = user.get("login") if isinstance(user, dict) else None
    if not isinstance(login, str) or not login or login.lower() == "ghost":
        return None
    return login.lower().removesuffix("[bot]")


def _reviewer(user: Any, author: str | None) -> bool:
    """Whether ``user`` is someone other than the pull request's author (unknown author: anyone)."""
    return author is None or _person(user) != author


def _finished(statuses: list[dict[str, Any]]) -> bool:
    """Whether statuses end a deployment. An unfinished one is read over REST once more in ``auto``:
    the ETag of that answer makes its re-reads in later passes free 304s, as in the REST plan."""
    try:
        return deployment_outcome(statuses) is not None
    except RECORD_ERRORS:
        return True  # the normaliser rejects it


def _is_new(new: Callable[[dict[str, Any]], bool], raw: dict[str, Any]) -> bool:
    """Whether a list record needs reading; a malformed one counts as new (the full read rejects it)."""
    try:
        return new(raw)
    except RECORD_ERRORS:
        return True


def is_pull_request(raw: dict[str, Any]) -> bool:
    """An issues-API record that is a pull request: its ``pull_request`` object has URLs.

    Issues from GitHub's early years carry ``"pull_request": {"html_url": null, …}`` and are not.
    """
    pr = raw.get("pull_request")
    return isinstance(pr, dict) and any(isinstance(pr.get(k), str) and pr[k] for k in ("url", "html_url"))


def _closes(pr: dict[str, Any], repo: str, number: str) -> bool:
    """Whether a pull request closes issue ``repo#number``: GitHub's own ``willCloseTarget`` where
    the record came over GraphQL, else a closing keyword for it in the pull request's title or body."""
    if isinstance(pr.get("will_close_target"), bool):
        return bool(pr["will_close_target"])
    text = "\n".join(str(pr.get(k) or "") for k in ("title", "body"))
    return any(
        r.lower() == repo.lower() and str(n) == number for r, n in closing_references(text, _repo_of_issue(pr) or repo)
    )


def _repo_of_issue(issue: dict[str, Any]) -> str | None:
    """``owner/repo`` of an issue or pull request record (timeline sources carry ``repository``)."""
    full = (issue.get("repository") or {}).get("full_name") if isinstance(issue.get("repository"), dict) else None
    if isinstance(full, str) and full:
        return full
    url = issue.get("repository_url")
    if isinstance(url, str) and "/repos/" in url:
        return url.rsplit("/repos/", 1)[1].strip("/") or None
    return None


def deployment_outcome(statuses: list[dict[str, Any]]) -> tuple[str, datetime] | None:
    """A deployment's result: its latest finished status, or None while it has none.

    ``success`` → success; ``failure``/``error`` → failure, finished at that status's time; the
    latest one decides (a re-reported deployment ends as its last report says). ``queued``,
    ``in_progress``, ``pending`` are not finished, and ``inactive`` (GitHub marks an older success
    inactive when a newer one succeeds) is not a result.
    """
    ordered = sorted(
        (
            (github_time(s.get("created_at")), s.get("id") or 0, s.get("state"))
            for s in statuses
            if isinstance(s, dict) and s.get("state") in ("success", "failure", "error")
        ),
        key=lambda t: (t[0], t[1]),
    )
    if not ordered:
        return None
    at, _, state = ordered[-1]
    return ("success" if state == "success" else "failure"), at


def _list_position(raw: dict[str, Any]) -> tuple[int, datetime]:
    """(number, updated_at) of an issue or pull request list entry."""
    number = raw.get("number")
    if number is None:
        raise Rejected("missing_field")
    if not isinstance(number, int) or isinstance(number, bool):
        raise Rejected("wrong_type")
    if not 0 < number <= MAX_ID:
        raise Rejected("out_of_range")  # GitHub numbers issues from 1
    return number, _required_time(raw, "updated_at")


def _required_time(raw: dict[str, Any], name: str) -> datetime:
    value = raw.get(name)
    if value is None:
        raise Rejected("missing_field")
    if not isinstance(value, str):
        raise Rejected("wrong_type")
    return github_time(value)


def _optional_time(raw: dict[str, Any], name: str) -> datetime | None:
    return None if raw.get(name) is None else _required_time(raw, name)


def _check_body(raw: dict[str, Any]) -> None:
    body = raw.get("body")
    if isinstance(body, str) and len(body) > MAX_BODY:
        raise Rejected("too_large")


def _sha_of(value: Any) -> str:
    if not isinstance(value, str) or not _SHA.match(value):
        raise Rejected("missing_field")
    return value.lower()


def _record_id(repo: _Repo, raw: dict[str, Any]) -> str:
    return f"{repo.full_name}#{entry_label(raw, 'number')}"


def _readable(entries: list[Any]) -> list[Any]:
    """The entries of a list a record is read from (its timeline, statuses, jobs, commits); one
    nested too deeply to decode rejects the record, whose history would be incomplete without it."""
    if any(isinstance(entry, TooDeep) for entry in entries):
        raise Rejected("too_deep")
    return entries


def _id_problem(value: Any) -> str | None:
    """Why an API id is unusable for ordering (``wrong_type``, ``out_of_range``), or None."""
    if not isinstance(value, int) or isinstance(value, bool):
        return "wrong_type"
    return None if 0 < value <= MAX_ID else "out_of_range"


def _object(value: Any) -> dict[str, Any]:
    """An optional JSON object (``{}`` when absent); anything else is a malformed record."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Rejected("wrong_type")
    return value


def _deploys(run: dict[str, Any]) -> bool:
    """Whether a completed workflow run is a deployment: it succeeded or failed (a cancelled,
    skipped or neutral run is none)."""
    conclusion = run.get("conclusion")
    return conclusion == "success" or conclusion in FAILED_CONCLUSIONS


def _earlier(ordered: list[tuple[int, str]], order: int) -> Iterator[str]:
    """The shas of the successes created before ``order``, newest first (``ordered``: by creation)."""
    for i in range(bisect.bisect_left(ordered, (order,)) - 1, -1, -1):
        yield ordered[i][1]


def _order(native_id: str) -> int:
    """The API id in ``deployment:{id}`` / ``release:{id}`` / ``run:{id}``: creation order."""
    try:
        return int(native_id.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return 0


def _login(user: Any) -> str:
    return str(user.get("login", "")) if isinstance(user, dict) else ""


def _time_or_none(value: Any) -> datetime | None:
    try:
        return github_time(value)
    except ValueError:
        return None


def _problem(exc: SourceError) -> str:
    if not isinstance(exc, GitHubHTTPError):
        return str(exc)
    if exc.status == 404:
        return "not found (HTTP 404): check the name and the token's access"
    if exc.status == 403:
        return "forbidden (HTTP 403): the token lacks permission"
    return str(exc)
