"""The seeded GitHub organisation behind the sandbox, and its ground truth.

``sandbox.github.routes`` serves this over HTTP; this module only knows the data. Everything is derived from
``seed`` so two sandboxes with the same options serve byte-identical answers.

World (``organization`` = ``contoso`` by default), history over the 360 days before ``now``:

- ``contoso/web`` delivers through the **Deployments API** (environments ``staging`` and
  ``production``), ``contoso/api`` through **Releases**, ``contoso/mobile-app`` through **Actions
  workflow runs** of ``deploy.yml`` (plus ``ci.yml`` runs on pull-request branches to be ignored).
  ``truth()["repos"]`` names each repository's mode; a perfect sync uses one GitHub source per
  repository with that ``deployments_from`` and the defaults for everything else.
- Issues and pull requests share one number space per repository. PRs reference issues with
  closing keywords only (``Fixes #12``, ``Closes contoso/api#7``, ``Resolves #3``) and Azure Boards
  items with ``AB#<id>`` (title, body, or one commit message).
- ``main`` is a first-parent chain: an initial commit, then one merge commit per merged PR
  (parents: previous main head, PR head), and per repository three direct pushes: one at an
  issue's close whose message closes it (``fixes: #N``; the ``closed`` event carries its
  ``commit_id``), one whose author clock runs 300 days ahead (a negative change lead time), one
  mentioning ``AB#<id>``. About a fifth of the later PR commits are rebased: authored before they
  were committed (``commit.author.date`` < ``commit.committer.date``).
- Real-world variations, on by default (drawn from a random stream of their own): ~15 % of issues
  have a native issue ``type`` (``Bug``/``Feature``/``Task``, whatever their labels say); the two
  oldest issues per repository carry ``"pull_request": {"html_url": null, …}`` and are issues;
  ~30 % of PRs that close nothing say ``Related to #N`` for an earlier issue (a
  ``cross-referenced`` event on it that does not start work); ~30 % of ``deploy.yml`` runs have an
  ``updated_at`` 20 to 320 days after their last job completed (``/actions/runs/{id}/jobs``);
  ~30 % of issues closed without a PR have a ``connected`` event (every other one a later
  ``disconnected``);
  in ``web`` one deployment that ended in ``error`` gains a ``success`` ten minutes later.
- One force-push case in ``web``: a ``staging`` and a ``production`` deployment of a sha that is
  no longer in the repository (``/commits/{sha}`` answers 422, ``compare`` 404).
- Every record and commit is dated within the last 360 days, so the default ``history: 365d``
  sees all of it. Issue ``updated_at`` = its last timeline event; PR ``updated_at`` = closed/merged
  time, else creation. ``add_activity`` adds, all at ``now``: an issue, a merged PR (closing an open
  issue of its repository when one has no open PR), and per repository one delivery (web: a
  staging and a production deployment of main's head; api: a release; mobile-app: a run).
- Size: about ``work_items / 3`` issues (web 40 %, api 35 %, mobile-app 25 %), PRs and deliveries
  in proportion; 100k work items build in a few seconds.

Ground truth (``truth()``), in domain terms (docs/definitions.md; ISO-8601 UTC strings ``…Z``), exactly the
keys ``repos`` (``{"contoso/web": "deployments", "contoso/api": "releases", "contoso/mobile-app":
"workflow_runs:deploy.yml"}``), ``work_items``, ``changes``, ``deployments``, ``links``, ``rejected``;
each entry is a dict of the model's fields without ``source`` (compare lists as sets):

``work_items``: every well-formed issue (not PRs): ``native_id`` ``contoso/web#12``, ``ref``
``gh:contoso/web#12``, ``project`` ``contoso/web``, ``team`` = suffix of the first ``team/…`` label
else ``unassigned``, ``type`` = the native ``type.name`` when set, else ``Bug``/``Feature`` for the
``bug``/``feature`` label, else ``Issue``, ``created_at``, ``history``. An issues-list entry is a
PR only when its ``pull_request`` has an ``html_url``.

``history`` is derived from the issue timeline (``GET …/issues/{n}/timeline``) like this:

1. Start at ``created_at`` with state ``open``: no assignee, no open linked PR, not closed.
2. Walk the timeline in the order served (chronological). ``assigned``/``unassigned`` add/remove
   ``assignee.login``; ``closed`` closes with its ``state_reason`` (null = ``completed``);
   ``reopened`` reopens; ``cross-referenced`` whose ``source.issue`` is a PR whose title or body
   has a closing keyword for this issue adds that PR as *linked* (``Related to #N`` does not);
   ``connected`` links one pull request until ``disconnected``. Other events (``labeled`` …)
   change nothing.
3. A linked PR stops being open at its ``source.issue.closed_at`` (merged or not): that instant is
   an extra step, taken after the timeline events of the same second.
4. After each step the state is: closed → ``completed`` or ``not_planned``; open with an assignee
   or an open linked PR → ``in_progress``; else ``open``.
5. A StateChange is emitted only when the state differs from the previous one; ``seq`` counts
   them from 1 (the creation state). Categories: ``open``→Proposed, ``in_progress``→InProgress,
   ``completed``→Completed, ``not_planned``→Removed.

``changes``: merged PRs: ``native_id`` ``contoso/web#40``, ``ref`` ``ghpr:contoso/web#40``,
``service`` ``contoso/web``, ``kind`` ``pull_request``, ``first_commit_at`` = earliest
``commit.author.date`` of ``/pulls/{n}/commits``, ``merged_at``, ``commits`` = those shas (oldest
first) + ``merge_commit_sha``. And direct pushes: every commit in the ``contains`` of a deployment
that is in no merged PR's ``commits``: ``native_id`` ``contoso/web@<sha>``, ``ref``
``commit:<sha>``, ``kind`` ``commit``, ``first_commit_at`` = its ``commit.author.date``,
``merged_at`` = its ``commit.committer.date``, ``commits`` ``[<sha>]``, ``ready_at`` and
``first_review_at`` null.

A merged PR's ``ready_at`` and ``first_review_at`` come from its timeline
(``GET …/issues/{n}/timeline``): ``ready_at`` is the ``created_at`` of the first of its
``ready_for_review`` / ``convert_to_draft`` events when that is a ``ready_for_review`` (opened as a
draft), else the PR's ``created_at``. ``first_review_at`` is the earliest of the ``submitted_at`` of
its ``reviewed`` events whose ``state`` is not ``pending`` and the ``created_at`` of the
``line-commented`` comments whose ``pull_request_review_id`` is such a review, counting only those
whose ``user.login`` is not the PR's ``user.login`` (when that is ``ghost``, a deleted account,
all count; bots count); null if none. Over GraphQL the same reviews are ``PullRequestReview``
timeline items, ``createdAt`` being their first comment's time, a ghost author is ``author: null``
and a bot's login has no ``[bot]``.

``links``: from merged PRs: closing references → ``{work_item: gh:…#N, target: ghpr:…#M}``;
``AB#id`` in title/body → ``{ado:id, ghpr:…}``; ``AB#id`` in a PR commit message →
``{ado:id, commit:<sha>}``. From direct pushes' messages: closing references (``fixes #N``, any
case, optional colon) → ``{gh:…#N, commit:<sha>}`` and ``AB#id`` → ``{ado:id, commit:<sha>}``.
Unique pairs.

``deployments``: ``native_id`` ``deployment:{id}`` / ``release:{id}`` / ``run:{id}``; ``service``
``contoso/<repo>``; ``production`` per the default ``production_environments: [production]``.

- Deployments API: a deployment's outcome is its *latest* finished status in time
  (``success`` → success; ``failure``/``error`` → failure; statuses are listed newest first and an
  older success later gains an ``inactive`` status, which is no result). No finished status yet →
  not a deployment.
  ``started_at`` = deployment ``created_at``, ``finished_at`` = that status's ``created_at``.
- Releases: published, non-draft, non-prerelease releases only; ``environment`` ``production``,
  ``status`` success, ``sha`` = the tag's commit (``/git/ref/tags/{tag}``; lightweight tags;
  ``target_commitish`` is the branch name), ``started_at`` = release ``created_at`` (GitHub sets it
  to the tagged commit's date), ``finished_at`` = ``published_at``.
- Workflow runs of ``deploy.yml`` with ``head_branch`` = the default branch and
  ``status: completed``: ``success`` → success, ``failure``/``timed_out`` → failure, others
  (``cancelled`` …) skipped; ``environment`` ``production``; ``started_at`` = ``run_started_at``,
  ``finished_at`` = the latest ``completed_at`` of ``/actions/runs/{id}/jobs`` (never
  ``updated_at``), ``sha`` = ``head_sha``.
- ``contains`` = ``commit:<sha>`` of ``compare/{P.sha}...{D.sha}`` commits, where P is the latest
  earlier (creation order) successful deployment of the same service and environment *whose sha
  still exists*; without such P, every commit reachable from D's sha (``/commits?sha=``); ``[]``
  when D's own sha no longer exists. Only successful production deployments are opened: the
  others (failures, staging) have ``contains`` ``[]``.

``rejected``: malformed records (constructor ``malformed=N``): issues in ``/issues`` and PRs in
``/pulls`` (their ``/issues`` entry is well-formed) with ``record_id`` ``contoso/web#N`` and a
reason: ``missing_field`` (no ``created_at``), ``bad_timestamp`` (unparseable ``created_at``),
``wrong_type`` (``created_at`` a number), ``end_before_start`` (``closed_at``/``merged_at``
before ``created_at``), ``unknown_state`` (issue ``state`` not open/closed), ``too_large`` (body
over 65,536 characters, GitHub's own limit).
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from collector.model import ado_ref, commit_ref, gh_issue_ref, gh_pr_ref

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
HISTORY = timedelta(days=360)

#: repository → how it deploys (the GitHub source's ``deployments_from``)
REPOS: tuple[tuple[str, str], ...] = (
    ("web", "deployments"),
    ("api", "releases"),
    ("mobile-app", "workflow_runs:deploy.yml"),
)
REPO_WEIGHTS = {"web": 0.4, "api": 0.35, "mobile-app": 0.25}
TEAM_OF_REPO = {"web": "web", "api": "api", "mobile-app": "mobile"}
TEAMS = ("web", "api", "mobile", "platform")
USERS = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi")
BOT = "github-actions[bot]"
#: a bot that reviews pull requests (a reviewer like any other)
REVIEW_BOT = "review-helper[bot]"
#: the login GitHub shows for a deleted account
GHOST = "ghost"
DEFAULT_BRANCH = "main"
PRIVATE_REPO = "private-infra"  # answers 403 to everything: for fault tests
LABEL_COLORS = {"bug": "d73a4a", "feature": "a2eeef", "priority/high": "b60205"}
CATEGORY = {"open": "Proposed", "in_progress": "InProgress", "completed": "Completed", "not_planned": "Removed"}
TYPE_LABELS = {"bug": "Bug", "feature": "Feature"}
NATIVE_TYPES = ("Bug", "Feature", "Task")
_CLOSING_REF = re.compile(r"(?<![\w-])(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?):?\s*#(\d+)(?![\w#])", re.IGNORECASE)
MAX_BODY = 65536
ISSUE_FAULTS = ("missing_field", "bad_timestamp", "wrong_type", "end_before_start", "unknown_state", "too_large")
PR_FAULTS = ("missing_field", "bad_timestamp", "wrong_type", "end_before_start", "too_large")

_SUBJECTS = (
    "login redirect",
    "payment retries",
    "profile page layout",
    "search ranking",
    "push notifications",
    "session timeout",
    "CSV export",
    "dark mode",
    "invoice totals",
    "image upload",
    "rate limiter",
    "onboarding flow",
    "password reset",
    "audit log",
    "cache invalidation",
    "locale fallback",
    "order history",
    "webhook retries",
    "feature flags",
    "offline sync",
)
_ISSUE_VERBS = ("Crash in", "Slow", "Wrong", "Improve", "Support", "Broken", "Add", "Flaky")
_PR_VERBS = ("Fix", "Add", "Improve", "Refactor", "Handle", "Speed up")
_COMMIT_MSGS = ("Update {s}", "Add tests for {s}", "Address review comments", "Tidy up {s}", "Handle edge case in {s}")
_CLOSING = ("Fixes", "Closes", "Resolves")


def iso(dt: datetime | None) -> str | None:
    """``2024-05-01T12:00:00Z`` (all times here are whole-second UTC; isoformat is the fast path)."""
    return None if dt is None else dt.isoformat()[:19] + "Z"


def _secs(td: timedelta) -> timedelta:
    return timedelta(seconds=int(td.total_seconds()))


@dataclass(slots=True, eq=False)
class IssueEvent:
    """One issue/PR timeline event. ``cross-referenced`` events carry ``source`` and no id."""

    kind: str
    at: datetime
    actor: str
    label: str | None = None
    assignee: str | None = None
    state_reason: str | None = None
    source: PullRequest | None = None  # cross-referenced: the PR; closed by a merge: the merging PR
    commit_id: str | None = None
    id: int = 0


@dataclass(slots=True, eq=False)
class Issue:
    repo: str
    created_at: datetime
    author: str
    title: str
    number: int = 0
    id: int = 0
    body: str = ""
    labels: list[str] = field(default_factory=list)
    assignees: list[str] = field(default_factory=list)
    state: str = "open"
    state_reason: str | None = None
    closed_at: datetime | None = None
    closed_by: str | None = None
    events: list[IssueEvent] = field(default_factory=list)
    malformed: str | None = None
    native_type: str | None = None  # the issue's native issue type (``type.name``), if set
    legacy_pr_stub: bool = False  # an early issue served with ``"pull_request": {"html_url": null, …}``
    is_pr = False

    @property
    def updated_at(self) -> datetime:
        return max(self.created_at, self.events[-1].at) if self.events else self.created_at


@dataclass(slots=True, eq=False)
class PullRequest:
    repo: str
    author: str
    created_at: datetime
    topic: str
    head_ref: str
    closes: list[Issue] = field(default_factory=list)
    closing_word: str = "Fixes"
    ab_title: int | None = None
    ab_body: int | None = None
    ab_commit: int | None = None
    related: list[Issue] = field(default_factory=list)  # mentioned ("Related to #N"), not closed
    merged_at: datetime | None = None
    closed_at: datetime | None = None
    merged_by: str | None = None
    number: int = 0
    id: int = 0
    issue_id: int = 0
    title: str = ""
    body: str = ""
    commits: list[str] = field(default_factory=list)
    merge_commit_sha: str | None = None
    base_index: int = 0
    base_sha: str = ""
    events: list[IssueEvent] = field(default_factory=list)
    malformed: str | None = None
    labels: list[str] = field(default_factory=list)
    #: reviews submitted after the seeding (``GitHubOrg.review``): each moves ``updated_at``
    late_reviews: list[Review] = field(default_factory=list)
    is_pr = True

    @property
    def state(self) -> str:
        return "closed" if self.closed_at else "open"

    @property
    def updated_at(self) -> datetime:
        base = self.closed_at or self.created_at
        return max([base, *(r.at for r in self.late_reviews)])

    @property
    def head_sha(self) -> str:
        return self.commits[-1] if self.commits else self.base_sha


@dataclass(slots=True, eq=False)
class Review:
    """A pull-request review (``state`` as REST spells it: ``APPROVED`` …; ``PENDING``: never
    submitted, so no ``submitted_at``). ``created_at`` is when it was started: its first review
    comment when one was drafted before the review was submitted, else its submission."""

    pr: PullRequest
    id: int
    author: str
    state: str
    submitted_at: datetime | None
    created_at: datetime
    #: its one review comment (``line-commented`` in the timeline), drafted at ``created_at``
    commented: bool = False

    @property
    def at(self) -> datetime:
        """Its place in the timeline: its submission (a pending one: its start)."""
        return self.submitted_at or self.created_at


@dataclass(frozen=True, slots=True)
class ReviewComment:
    """The review comment of a review (REST timeline: one ``line-commented`` event)."""

    review: Review

    @property
    def at(self) -> datetime:
        return self.review.created_at

    @property
    def id(self) -> int:
        return self.review.id + 50_000_000


@dataclass(slots=True)
class ReviewPlan:
    """A pull request's review story: who reviews, when it became ready, its reviews."""

    reviewer: str
    #: opened as a draft: when it was marked ready for review
    ready: datetime | None
    #: opened ready, then converted to a draft and back: (converted, ready again)
    redraft: tuple[datetime, datetime] | None
    #: its author's account was deleted: GitHub shows the ``ghost`` user (GraphQL: no author)
    ghost: bool
    reviews: list[Review]


@dataclass(slots=True, eq=False)
class GitCommit:
    sha: str
    message: str
    author: str
    at: datetime  # committer date: when it was committed onto its branch
    parents: list[str]
    main_index: int | None = None  # position on main's first-parent chain
    pos: int | None = None  # position in Repo.delivered (reachable from main), None if not on main
    pr: PullRequest | None = None  # the PR whose branch holds it
    author_at: datetime | None = None  # author date when it differs (rebased, or a skewed clock)

    @property
    def authored(self) -> datetime:
        return self.author_at or self.at


@dataclass(slots=True, eq=False)
class Status:
    state: str
    at: datetime
    id: int = 0


@dataclass(slots=True, eq=False)
class Deployment:
    repo: str
    sha: str
    environment: str
    created_at: datetime
    statuses: list[Status] = field(default_factory=list)  # chronological
    id: int = 0

    def outcome(self) -> Status | None:
        """The latest finished status: a deployment's result (``inactive`` ones do not count)."""
        for s in reversed(self.statuses):
            if s.state in ("success", "failure", "error"):
                return s
        return None


@dataclass(slots=True, eq=False)
class Release:
    repo: str
    tag: str
    sha: str
    created_at: datetime
    published_at: datetime | None
    author: str
    draft: bool = False
    prerelease: bool = False
    id: int = 0


@dataclass(slots=True, eq=False)
class Workflow:
    id: int
    name: str
    path: str
    created_at: datetime


@dataclass(slots=True, eq=False)
class Run:
    repo: str
    workflow: Workflow
    head_branch: str
    head_sha: str
    event: str
    status: str
    conclusion: str | None
    created_at: datetime
    updated_at: datetime
    actor: str
    title: str
    run_number: int = 0
    id: int = 0
    run_started_at: datetime | None = None
    completed_at: datetime | None = None  # its last job's completed_at (``updated_at`` may move later)
    #: jobs of a matrix between ``build`` and ``deploy`` (``many_jobs``), done by the time ``build`` is
    matrix: int = 0

    def jobs(self) -> list[tuple[int, str, datetime, datetime | None]]:
        """(id, name, started_at, completed_at) of its jobs: ``build``, its matrix, then ``deploy``."""
        start = self.run_started_at or self.created_at
        end = self.completed_at
        mid = start + (end - start) / 3 if end else start + MINUTE
        mid = mid.replace(microsecond=0)
        matrix = [
            (self.id * 1000 + 100 + k, f"test ({k + 1})", start, mid if end else None) for k in range(self.matrix)
        ]
        return [(self.id * 10 + 1, "build", start, mid), *matrix, (self.id * 10 + 2, "deploy", mid, end)]


@dataclass(eq=False)
class Repo:
    name: str
    full_name: str
    id: int
    mode: str
    created_at: datetime
    commits: dict[str, GitCommit] = field(default_factory=dict)
    main: list[str] = field(default_factory=list)
    main_times: list[datetime] = field(default_factory=list)
    delivered: list[str] = field(default_factory=list)
    cut: list[int] = field(default_factory=list)  # cut[i]: len(delivered) once main[i] is in
    items: dict[int, Issue | PullRequest] = field(default_factory=dict)
    deployments: list[Deployment] = field(default_factory=list)
    releases: list[Release] = field(default_factory=list)
    workflows: list[Workflow] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    gone: set[str] = field(default_factory=set)  # force-pushed away: referenced, unknown
    sha_counter: int = 0
    last_number: int = 0
    run_numbers: dict[int, int] = field(default_factory=dict)  # workflow id → last run number
    #: one of the services (``REPOS``) with work and deliveries; the others only fill the listing
    service: bool = True
    archived: bool = False
    fork: bool = False
    #: when the repository itself last changed (archived, …); a push moves ``pushed_at`` too
    changed_at: datetime | None = None

    @property
    def pushed_at(self) -> datetime | None:
        """The last push: main's head, None for a repository never pushed to."""
        return self.main_times[-1] if self.main_times else None

    @property
    def updated_at(self) -> datetime:
        return max(t for t in (self.created_at, self.pushed_at, self.changed_at) if t is not None)

    # --- commit graph -------------------------------------------------------------------
    def head_index_at(self, t: datetime) -> int:
        return max(0, bisect.bisect_right(self.main_times, t) - 1)

    def head_at(self, t: datetime) -> str:
        return self.main[self.head_index_at(t)]

    def resolve(self, ref: str) -> str | None:
        """A sha (full or ≥7-char prefix), ``main``/``heads/main``, or a tag name → sha."""
        ref = ref.removeprefix("refs/").removeprefix("heads/").removeprefix("tags/")
        if ref == DEFAULT_BRANCH:
            return self.main[-1]
        if ref in self.commits:
            return ref
        for rel in self.releases:
            if rel.tag == ref and not rel.draft:
                return rel.sha
        if 7 <= len(ref) < 40 and all(ch in "0123456789abcdef" for ch in ref.lower()):
            for sha in self.commits:  # short shas are rare in practice: a scan is fine
                if sha.startswith(ref.lower()):
                    return sha
        return None

    def locate(self, sha: str) -> tuple[int, list[str]]:
        """What ``sha`` reaches: ``delivered[:cut]`` plus ``extra`` (an unmerged branch's commits)."""
        c = self.commits[sha]
        if c.main_index is not None:
            return self.cut[c.main_index], []
        pr = c.pr
        assert pr is not None
        return self.cut[pr.base_index], pr.commits[: pr.commits.index(sha) + 1]

    def ahead(self, head: str, base: str) -> list[str]:
        """Commits reachable from ``head`` and not from ``base`` (``git rev-list base..head``)."""
        (ch, eh), (cb, eb) = self.locate(head), self.locate(base)
        eb_set = set(eb)
        out = [s for s in self.delivered[cb:ch] if s not in eb_set] if ch > cb else []
        for s in eh:
            p = self.commits[s].pos
            if p is not None and p < ch:
                continue  # already judged as part of delivered[:ch]
            if s in eb_set or (p is not None and p < cb):
                continue
            out.append(s)
        return out

    def reachable(self, sha: str) -> list[str]:
        cut, extra = self.locate(sha)
        seen = set(self.delivered[:cut])
        return self.delivered[:cut] + [s for s in extra if s not in seen]

    def new_sha(self, seed: int, org: str) -> str:
        self.sha_counter += 1
        return hashlib.sha1(f"{seed}/{org}/{self.name}/{self.sha_counter}".encode()).hexdigest()

    def add_main(self, sha: str, at: datetime, new: Iterable[str]) -> None:
        """Append a first-parent commit to main; ``new`` are the commits it makes reachable."""
        for s in new:
            self.commits[s].pos = len(self.delivered)
            self.delivered.append(s)
        c = self.commits[sha]
        c.main_index = len(self.main)
        c.pos = len(self.delivered)
        self.delivered.append(sha)
        self.main.append(sha)
        self.main_times.append(at)
        self.cut.append(len(self.delivered))

    def next_number(self) -> int:
        self.last_number += 1
        return self.last_number


@dataclass
class Counters:
    issue: int = 1_300_000_000
    pull: int = 1_800_000_000
    event: int = 9_000_000_000
    deployment: int = 1_100_000_000
    status: int = 2_500_000_000
    release: int = 150_000_000
    run: int = 7_000_000_000
    review: int = 3_000_000_000  # reviews added after the seeding (the seeded ones: 90_000_000 + 8 * PR id)

    def take(self, name: str) -> int:
        value = getattr(self, name) + 1
        setattr(self, name, value)
        return value


class SeededGitHubOrg:
    """The organisation: repositories with their items, history and deliveries."""

    def __init__(
        self,
        *,
        seed: int,
        work_items: int,
        now: datetime,
        organization: str,
        azure_items: list[tuple[int, datetime, datetime | None]],
        malformed: int = 0,
        extra_repos: int = 0,
    ) -> None:
        self.seed = seed
        self.org = organization
        self.now = now.astimezone(UTC).replace(microsecond=0)
        self.start = self.now - HISTORY
        self.azure_items = sorted(azure_items, key=lambda a: (a[1], a[0]))
        self._azure_created = [a[1] for a in self.azure_items]
        self.ids = Counters()
        self.version = 0
        self.repos: dict[str, Repo] = {}
        for i, (name, mode) in enumerate(REPOS):
            self.repos[name] = Repo(
                name, f"{organization}/{name}", 700_000_000 + i * 1111, mode, self.start - timedelta(days=30 + 7 * i)
            )
        self._truth: dict[str, Any] | None = None
        #: GraphQL node id → the error ``node``/``nodes`` answer for it (``NOT_FOUND``, ``FORBIDDEN``),
        #: its node null: GitHub does so for an object GraphQL cannot reach (``unresolvable``)
        self.node_errors: dict[str, str] = {}
        #: the real-world variations draw from their own stream, so the rest of the world is the
        #: same with or without them
        self.vrng = random.Random(f"github/variations/{seed}/{work_items}")
        self._build(random.Random(f"github/{seed}/{work_items}"), max(1, work_items), malformed)
        self._add_extra_repos(random.Random(f"github/extra/{seed}/{extra_repos}"), extra_repos)

    # --- generation ---------------------------------------------------------------------
    def _frac(self, t: datetime) -> float:
        return min(1.0, max(0.0, (t - self.start) / HISTORY))

    def _rand_time(self, rng: random.Random, a: datetime, b: datetime) -> datetime:
        return a + _secs((b - a) * rng.random())

    def _build(self, rng: random.Random, work_items: int, malformed: int) -> None:
        n_issues = max(9, round(work_items / 3))
        issues: list[Issue] = []
        prs: list[PullRequest] = []
        for name in self.repos:
            n = max(3, round(n_issues * REPO_WEIGHTS[name]))
            times = sorted(self._rand_time(rng, self.start + DAY, self.now - 2 * HOUR) for _ in range(n))
            for t in times:
                issue, made = self._plan_issue(rng, name, t)
                issues.append(issue)
                prs.extend(made)
        prs.extend(self._plan_ab_prs(rng, work_items))
        for name in self.repos:
            for _ in range(max(2, round(n_issues * REPO_WEIGHTS[name]) // 5)):
                prs.append(self._plan_chore_pr(rng, name))
        prs = [pr for pr in prs if pr.created_at < self.now]
        for pr in prs:  # what has not happened by now stays open
            if pr.closed_at is not None and pr.closed_at >= self.now:
                pr.closed_at = pr.merged_at = pr.merged_by = None
        for issue in issues:
            self._settle_issue(issue)
        self._number(issues, prs)
        self._add_issue_variations(issues, prs)
        for name, repo in self.repos.items():
            self._build_history(rng, repo, [p for p in prs if p.repo == name])
        for pr in prs:
            self._compose_pr_text(pr)
        self._build_deliveries(rng)
        self._add_malformed(rng, malformed)
        self._assign_event_ids(issues, prs)

    def _plan_issue(self, rng: random.Random, repo: str, created: datetime) -> tuple[Issue, list[PullRequest]]:
        subject = rng.choice(_SUBJECTS)
        issue = Issue(repo, created, rng.choice(USERS), f"{rng.choice(_ISSUE_VERBS)} {subject}")
        issue.body = f"Steps to reproduce and expected behaviour for the {subject}."
        ev = issue.events
        u = rng.random()
        type_label = "bug" if u < 0.4 else "feature" if u < 0.75 else None
        if type_label:
            ev.append(IssueEvent("labeled", created, issue.author, label=type_label))
        if rng.random() < 0.85:
            team = TEAM_OF_REPO[repo] if rng.random() < 0.92 else rng.choice(TEAMS)
            late = rng.random() < 0.12
            at = created + _secs(HOUR + 2 * DAY * rng.random()) if late else created
            ev.append(IssueEvent("labeled", at, rng.choice(USERS), label=f"team/{team}"))
        if rng.random() < 0.1:
            ev.append(IssueEvent("labeled", created, issue.author, label="priority/high"))
        frac = self._frac(created)
        made: list[PullRequest] = []
        if rng.random() < 0.18:  # never worked on: triaged away, or still waiting
            if rng.random() < 0.55:
                at = created + _secs(DAY + 25 * DAY * rng.random())
                ev.append(IssueEvent("closed", at, rng.choice(USERS), state_reason="not_planned"))
            return issue, made
        # the improvement trend: cycle time falls from ~10 to ~3 days over the year
        cycle = max(2 * HOUR, _secs(DAY * (10 - 7 * frac) * rng.lognormvariate(0, 0.45)))
        if rng.random() < 0.06:  # the long tail: stalled work keeps some items in progress
            cycle *= 6
        start = created + MINUTE + _secs(DAY * rng.expovariate(1 / 1.5))
        close_at = start + cycle
        assignee = rng.choice(USERS)
        assigned = rng.random() < 0.75
        if assigned:
            ev.append(IssueEvent("assigned", start, assignee, assignee=assignee))
            if rng.random() < 0.05:
                swap = start + _secs(cycle * 0.25)
                other = rng.choice([u for u in USERS if u != assignee])
                ev.append(IssueEvent("unassigned", swap, assignee, assignee=assignee))
                ev.append(IssueEvent("assigned", swap + HOUR, other, assignee=other))
                assignee = other
        if assigned and rng.random() < 0.08:  # abandoned
            at = start + _secs(cycle * 0.5)
            ev.append(IssueEvent("closed", at, assignee, state_reason="not_planned"))
            return issue, made
        if rng.random() < 0.8:
            pr_repo = repo if rng.random() < 0.9 else rng.choice([r for r in self.repos if r != repo])
            pr_start = start + (_secs(cycle * 0.3) if assigned else timedelta(0))
            if rng.random() < 0.1:  # a first attempt, closed without merging
                first = self._new_pr(rng, pr_repo, pr_start, issue, subject)
                first.closed_at = pr_start + _secs((close_at - pr_start) * 0.25) + MINUTE
                made.append(first)
                pr_start = pr_start + _secs((close_at - pr_start) * 0.35) + 2 * MINUTE
            pr = self._new_pr(rng, pr_repo, pr_start, issue, subject)
            pr.merged_at = pr.closed_at = close_at
            pr.merged_by = rng.choice(USERS)
            if rng.random() < 0.1 and self.azure_items:
                pr.ab_commit = self._azure_item_before(rng, pr_start - 2 * DAY)
            made.append(pr)
            ev.append(IssueEvent("closed", close_at, pr.merged_by, state_reason="completed", source=pr))
        else:
            ev.append(IssueEvent("closed", close_at, assignee, state_reason="completed"))
        if rng.random() < 0.08:
            reopen = close_at + _secs(DAY + 5 * DAY * rng.random())
            ev.append(IssueEvent("reopened", reopen, issue.author))
            reason = "completed" if rng.random() < 0.8 else "not_planned"
            ev.append(
                IssueEvent("closed", reopen + _secs(DAY * (0.5 + 4 * rng.random())), assignee, state_reason=reason)
            )
        return issue, made

    def _add_issue_variations(self, issues: list[Issue], prs: list[PullRequest]) -> None:
        """Native issue types, legacy ``pull_request`` stubs, and PRs that only mention an issue."""
        v = self.vrng
        connected = 0
        for issue in issues:
            if v.random() < 0.15:
                issue.native_type = v.choice(NATIVE_TYPES)
            closes = [e for e in issue.events if e.kind == "closed"]
            if (
                closes
                and closes[-1].source is None
                and not any(e.kind == "cross-referenced" for e in issue.events)
                and v.random() < 0.3
            ):  # a pull request linked in the sidebar, some unlinked again
                linked = issue.created_at + _secs((closes[0].at - issue.created_at) * v.random())
                issue.events.append(IssueEvent("connected", linked, issue.author))
                connected += 1
                if connected % 2 == 0:
                    unlinked = linked + _secs((closes[0].at - linked) * v.random())
                    issue.events.append(IssueEvent("disconnected", unlinked, issue.author))
                issue.events.sort(key=lambda e: e.at)
        for name in self.repos:
            mine = sorted((i for i in issues if i.repo == name), key=lambda i: i.number)
            for issue in mine[:2]:  # the oldest issues predate the pull request API
                issue.legacy_pr_stub = True
        by_repo: dict[str, list[Issue]] = {}
        for issue in sorted(issues, key=lambda i: (i.created_at, i.number)):
            by_repo.setdefault(issue.repo, []).append(issue)
        created = {name: [i.created_at for i in mine] for name, mine in by_repo.items()}
        for pr in prs:
            if pr.closes or v.random() >= 0.3:
                continue
            n = bisect.bisect_left(created.get(pr.repo, []), pr.created_at)  # issues created before it
            if not n:
                continue
            issue = by_repo[pr.repo][v.randrange(n)]
            pr.related.append(issue)
            issue.events.append(IssueEvent("cross-referenced", pr.created_at, pr.author, source=pr))
            issue.events.sort(key=lambda e: e.at)

    def _new_pr(
        self, rng: random.Random, repo: str, created: datetime, issue: Issue | None, subject: str
    ) -> PullRequest:
        slug = subject.replace(" ", "-").lower()
        pr = PullRequest(
            repo,
            rng.choice(USERS),
            created,
            f"{rng.choice(_PR_VERBS)} {subject}",
            f"feature/{slug}-{rng.randrange(1000, 9999)}",
        )
        pr.closing_word = rng.choice(_CLOSING)
        if issue is not None:
            pr.closes.append(issue)
            issue.events.append(IssueEvent("cross-referenced", created, pr.author, source=pr))
        return pr

    def _azure_item_before(self, rng: random.Random, t: datetime) -> int | None:
        """A random Azure Boards item created before ``t`` (to mention in a commit message)."""
        n = bisect.bisect_left(self._azure_created, t)
        return self.azure_items[rng.randrange(n)][0] if n else None

    def _plan_ab_prs(self, rng: random.Random, work_items: int) -> list[PullRequest]:
        """PRs delivering Azure Boards items: merged a little before the item's done time."""
        eligible = [
            a
            for a in self.azure_items
            if a[2] is not None and self.start + 2 * DAY < a[2] < self.now - HOUR and a[1] < a[2]
        ]
        cap = max(3, work_items // 10)
        if len(eligible) > cap:
            eligible = sorted(rng.sample(eligible, cap), key=lambda a: a[0])
        out = []
        for item_id, created, done in eligible:
            assert done is not None
            merged = done - _secs(HOUR + 1.5 * DAY * rng.random())
            merged = max(merged, created + 2 * HOUR, self.start + DAY)
            if merged >= done:
                merged = done - MINUTE
            opened = max(merged - _secs(2 * HOUR + 3 * DAY * rng.random()), created + 30 * MINUTE)
            if opened >= merged:
                opened = merged - 30 * MINUTE
            pr = self._new_pr(rng, rng.choice(list(self.repos)), opened, None, rng.choice(_SUBJECTS))
            where = rng.random()
            if where < 0.5:
                pr.ab_title = item_id
            elif where < 0.8:
                pr.ab_body = item_id
            else:
                pr.ab_commit = item_id
            pr.merged_at = pr.closed_at = merged
            pr.merged_by = rng.choice(USERS)
            out.append(pr)
        return out

    def _plan_chore_pr(self, rng: random.Random, repo: str) -> PullRequest:
        created = self._rand_time(rng, self.start + DAY, self.now - HOUR)
        pr = self._new_pr(rng, repo, created, None, "dependencies")
        pr.topic = "Bump dependencies"
        u = rng.random()
        end = created + _secs(HOUR + 2 * DAY * rng.random())
        if u < 0.9:
            pr.merged_at = pr.closed_at = end
            pr.merged_by = rng.choice(USERS)
        elif u < 0.95:
            pr.closed_at = end
        return pr

    def _settle_issue(self, issue: Issue) -> None:
        """Drop what lies in the future, then derive the issue's current fields from its events."""
        for ev in issue.events:
            if ev.kind == "closed" and ev.source is not None:
                ev.at = ev.source.merged_at or self.now  # a merge that has not happened is cut below
        issue.events = sorted((e for e in issue.events if e.at < self.now), key=lambda e: e.at)
        self._apply_events(issue)

    @staticmethod
    def _apply_events(issue: Issue) -> None:
        labels: list[str] = []
        assignees: list[str] = []
        issue.state, issue.state_reason, issue.closed_at, issue.closed_by = "open", None, None, None
        for ev in issue.events:
            if ev.kind == "labeled" and ev.label not in labels:
                labels.append(ev.label or "")
            elif ev.kind == "unlabeled" and ev.label in labels:
                labels.remove(ev.label)
            elif ev.kind == "assigned" and ev.assignee not in assignees:
                assignees.append(ev.assignee or "")
            elif ev.kind == "unassigned" and ev.assignee in assignees:
                assignees.remove(ev.assignee)
            elif ev.kind == "closed":
                issue.state, issue.state_reason, issue.closed_at, issue.closed_by = (
                    "closed",
                    ev.state_reason or "completed",
                    ev.at,
                    ev.actor,
                )
            elif ev.kind == "reopened":
                issue.state, issue.state_reason, issue.closed_at, issue.closed_by = "open", "reopened", None, None
        issue.labels, issue.assignees = labels, assignees

    def _number(self, issues: list[Issue], prs: list[PullRequest]) -> None:
        items: list[Issue | PullRequest] = [*issues, *prs]
        items.sort(key=lambda x: (x.created_at, x.repo, x.is_pr))
        for item in items:
            repo = self.repos[item.repo]
            item.number = repo.next_number()
            repo.items[item.number] = item
            item.id = self.ids.take("issue")
            if isinstance(item, PullRequest):
                item.issue_id = item.id
                item.id = self.ids.take("pull")

    def _compose_pr_text(self, pr: PullRequest) -> None:
        pr.title = f"AB#{pr.ab_title} {pr.topic}" if pr.ab_title else pr.topic
        lines = []
        for issue in pr.closes:
            where = f"#{issue.number}" if issue.repo == pr.repo else f"{self.org}/{issue.repo}#{issue.number}"
            lines.append(f"{pr.closing_word} {where}")
        if pr.ab_body:
            lines.append(f"Implements AB#{pr.ab_body}")
        for issue in pr.related:
            lines.append(f"Related to #{issue.number}")
        lines.append("Tested locally.")
        pr.body = "\n\n".join(lines)

    def _build_history(self, rng: random.Random, repo: Repo, prs: list[PullRequest]) -> None:
        init = repo.new_sha(self.seed, self.org)
        repo.commits[init] = GitCommit(init, "Initial commit", USERS[0], self.start, [])
        repo.add_main(init, self.start, [])
        for pr in sorted(prs, key=lambda p: p.created_at):
            self._make_pr_commits(rng, repo, pr)
        steps: list[tuple[datetime, int, Any]] = [(p.merged_at, p.number, p) for p in prs if p.merged_at]
        steps += [(at, 10**9 + k, push) for k, (at, push) in enumerate(self._plan_direct_pushes(repo))]
        for _, _, step in sorted(steps, key=lambda t: (t[0], t[1])):
            if isinstance(step, PullRequest):
                self._merge(repo, step)
            else:
                step.parents = [repo.main[-1]]
                repo.commits[step.sha] = step
                repo.add_main(step.sha, step.at, [])
        for pr in prs:  # unmerged branches start from main as it was at their first commit
            if not pr.merged_at:
                first = repo.commits[pr.commits[0]]
                pr.base_index = repo.head_index_at(first.at)
                pr.base_sha = repo.main[pr.base_index]
                first.parents = [pr.base_sha]

    def _plan_direct_pushes(self, repo: Repo) -> list[tuple[datetime, GitCommit]]:
        """Commits pushed straight to main: one closing an issue by its message (at the issue's
        close), one whose author clock runs 300 days ahead, one mentioning an Azure Boards item."""
        v = self.vrng
        out: list[tuple[datetime, GitCommit]] = []

        def push(at: datetime, message: str, author_at: datetime | None = None) -> None:
            sha = repo.new_sha(self.seed, self.org)
            out.append((at, GitCommit(sha, message, v.choice(USERS), at, [], author_at=author_at)))

        closable = [
            i
            for i in repo.items.values()
            if isinstance(i, Issue)
            and i.state == "closed"
            and i.state_reason == "completed"
            and not i.malformed
            and not any(e.kind in ("cross-referenced", "reopened") for e in i.events)
        ]
        if closable:
            issue = v.choice(sorted(closable, key=lambda i: i.number))
            close = next(e for e in issue.events if e.kind == "closed")
            push(close.at, f"Hotfix: {issue.title.lower()}\n\nfixes: #{issue.number}", close.at - 25 * MINUTE)
            close.commit_id = out[-1][1].sha
        at = self._rand_time(v, self.start + 30 * DAY, self.start + 200 * DAY)
        push(at, "Bump version", at + 300 * DAY)
        at = self._rand_time(v, self.start + 20 * DAY, self.now - 5 * DAY)
        item = self._azure_item_before(v, at)
        push(at, f"Update changelog AB#{item}" if item else "Update changelog", at - 2 * HOUR)
        return out

    def _make_pr_commits(self, rng: random.Random, repo: Repo, pr: PullRequest) -> None:
        k = rng.choices((1, 2, 3, 4), weights=(35, 30, 20, 15))[0]
        first = pr.created_at - _secs(20 * MINUTE + 36 * HOUR * rng.random())
        first = max(first, self.start + MINUTE)
        end = pr.closed_at or min(self.now, pr.created_at + 2 * DAY)
        times = [first, *sorted(self._rand_time(rng, pr.created_at, end - MINUTE) for _ in range(k - 1))]
        ab_at = rng.randrange(k) if pr.ab_commit else -1
        parent: list[str] = []
        for i, t in enumerate(times):
            sha = repo.new_sha(self.seed, self.org)
            msg = rng.choice(_COMMIT_MSGS).format(s=pr.topic.split(" ", 1)[-1].lower())
            if i == ab_at:
                msg += f" AB#{pr.ab_commit}"
            commit = GitCommit(sha, msg, pr.author, t, parent, pr=pr)
            if i and self.vrng.random() < 0.2:  # rebased: authored before the branch's first commit
                commit.author_at = t - _secs(HOUR + 72 * HOUR * self.vrng.random())
            repo.commits[sha] = commit
            pr.commits.append(sha)
            parent = [sha]

    def _merge(self, repo: Repo, pr: PullRequest) -> None:
        assert pr.merged_at is not None
        first = repo.commits[pr.commits[0]]
        pr.base_index = repo.head_index_at(first.at)
        pr.base_sha = repo.main[pr.base_index]
        first.parents = [pr.base_sha]
        sha = repo.new_sha(self.seed, self.org)
        msg = f"Merge pull request #{pr.number} from {self.org}/{pr.head_ref}"
        repo.commits[sha] = GitCommit(
            sha, msg, pr.merged_by or pr.author, pr.merged_at, [repo.main[-1], pr.commits[-1]]
        )
        pr.merge_commit_sha = sha
        repo.add_main(sha, pr.merged_at, pr.commits)

    # --- deliveries ---------------------------------------------------------------------
    def _slots(self, rng: random.Random, count: int) -> list[datetime]:
        first = self.start + DAY + _secs(HOUR * rng.random())
        rest = sorted(self._rand_time(rng, first + HOUR, self.now - 3 * HOUR) for _ in range(count - 1))
        return [first, *rest]

    def _fail_p(self, t: datetime) -> float:
        return 0.2 - 0.12 * self._frac(t)

    def _build_deliveries(self, rng: random.Random) -> None:
        for repo in self.repos.values():
            merged = sum(1 for i in repo.items.values() if isinstance(i, PullRequest) and i.merged_at)
            if repo.mode == "deployments":
                self._build_deployments(rng, repo, merged)
            elif repo.mode == "releases":
                self._build_releases(rng, repo, merged)
            else:
                self._build_runs(rng, repo, merged)

    def _deploy(self, repo: Repo, env: str, sha: str, at: datetime, result: str | None, took: timedelta) -> Deployment:
        d = Deployment(repo.name, sha, env, at, [Status("queued", at + timedelta(seconds=5))])
        d.statuses.append(Status("in_progress", at + timedelta(seconds=40)))
        if result:
            end = at + took
            if result == "success":
                prev = next(
                    (
                        p
                        for p in reversed(repo.deployments)
                        if p.environment == env and (o := p.outcome()) and o.state == "success"
                    ),
                    None,
                )
                if prev is not None:  # GitHub marks the previous success inactive (auto_inactive)
                    prev.statuses.append(Status("inactive", end + timedelta(seconds=1)))
            d.statuses.append(Status(result, end))
        d.id = self.ids.take("deployment")
        repo.deployments.append(d)
        return d

    def _build_deployments(self, rng: random.Random, repo: Repo, merged: int) -> None:
        """Staging gets main's head, production promotes staging's last success; failures are retried.

        Events are processed in time order (a heap), so deployment ids follow creation time.
        """
        queue: list[tuple[datetime, int, str, str | None]] = []
        for t in self._slots(rng, max(6, int(merged * 0.7))):
            queue.append((t, len(queue), "staging", None))
        for t in self._slots(rng, max(4, int(merged * 0.35))):
            queue.append((t + 2 * HOUR, len(queue), "production", None))
        if len(queue) >= 8:  # a hotfix deployed from a branch that was then force-pushed away
            mid = sorted(queue)[len(queue) // 2][0] + 30 * MINUTE
            queue.append((mid, len(queue), "staging", "gone"))
        heapq.heapify(queue)
        last_ok: dict[str, str] = {}
        busy_until: dict[str, datetime] = {}
        while queue:
            at, _, env, fixed = heapq.heappop(queue)
            at = max(at, busy_until.get(env, at) + MINUTE)
            if at >= self.now - HOUR:
                continue
            if fixed == "gone":
                fixed = repo.new_sha(self.seed, self.org)
                repo.gone.add(fixed)
                heapq.heappush(queue, (at + 30 * MINUTE, 10**9 + len(repo.deployments), "production", fixed))
            if fixed is not None:
                sha = fixed
            elif env == "staging":
                sha = repo.head_at(at)
            else:
                sha = last_ok.get("staging") or repo.head_at(at)
            if fixed is None and sha == last_ok.get(env):
                continue
            took = _secs(3 * MINUTE + 15 * MINUTE * rng.random())
            busy_until[env] = at + took
            if sha not in repo.gone and rng.random() < self._fail_p(at):
                self._deploy(repo, env, sha, at, rng.choice(("failure", "failure", "error")), took)
                if rng.random() < 0.85:  # recovery: redeploy (production: the same sha)
                    retry = at + _secs(HOUR + 4 * HOUR * rng.random())
                    heapq.heappush(
                        queue, (retry, 10**9 + len(repo.deployments), env, sha if env == "production" else None)
                    )
            else:
                self._deploy(repo, env, sha, at, "success", took)
                last_ok[env] = sha
        # a failure the deploy tool reported again, as a success, ten minutes later
        errors = [
            d
            for d in repo.deployments
            if (o := d.outcome()) and o.state == "error" and o.at + 10 * MINUTE < self.now - HOUR
        ]
        if errors:
            redone = self.vrng.choice(errors)
            redone.statuses.append(Status("success", redone.statuses[-1].at + 10 * MINUTE))
        # one still running: not a deployment yet
        self._deploy(repo, "staging", repo.main[-1], self.now - 20 * MINUTE, None, MINUTE)

    def _build_releases(self, rng: random.Random, repo: Repo, merged: int) -> None:
        minor, patch, last = 0, 0, None
        slots = [t for t in self._slots(rng, max(4, int(merged * 0.35))) if t < self.now - HOUR]
        rc_at = {len(slots) // 3, (2 * len(slots)) // 3}
        for i, at in enumerate(slots):
            sha = repo.head_at(at)
            if sha == last:
                continue
            if i in rc_at:  # a prerelease: not a production deployment
                self._release(repo, f"v1.{minor + 1}.0-rc.1", repo.head_at(at - HOUR), at - HOUR, prerelease=True)
            if rng.random() < 0.25 and i:
                patch += 1
            else:
                minor, patch = minor + 1, 0
            self._release(repo, f"v1.{minor}.{patch}", sha, at)
            last = sha
        self._release(repo, "v2.0.0", repo.main[-1], self.now - 2 * HOUR, draft=True)
        # ids follow publication, drafts last (GitHub lists releases newest first)
        repo.releases.sort(key=lambda r: (r.draft, r.published_at or self.now))
        for rel in repo.releases:
            rel.id = self.ids.take("release")

    def _release(
        self, repo: Repo, tag: str, sha: str, at: datetime, *, draft: bool = False, prerelease: bool = False
    ) -> Release:
        rel = Release(
            repo.name,
            tag,
            sha,
            repo.commits[sha].at,
            None if draft else at,
            USERS[len(repo.releases) % len(USERS)],
            draft=draft,
            prerelease=prerelease,
        )
        rel.id = self.ids.take("release")
        repo.releases.append(rel)
        return rel

    def _build_runs(self, rng: random.Random, repo: Repo, merged: int) -> None:
        ci = Workflow(161_000_000 + repo.id % 1000, "CI", ".github/workflows/ci.yml", repo.created_at)
        deploy = Workflow(161_000_500 + repo.id % 1000, "Deploy", ".github/workflows/deploy.yml", repo.created_at + DAY)
        repo.workflows = [ci, deploy]
        runs: list[Run] = []
        for pr in repo.items.values():
            if isinstance(pr, PullRequest):
                at = pr.created_at + 2 * MINUTE
                if at < self.now:
                    runs.append(
                        Run(
                            repo.name,
                            ci,
                            pr.head_ref,
                            pr.head_sha,
                            "pull_request",
                            "completed",
                            "success",
                            at,
                            at + 6 * MINUTE,
                            pr.author,
                            pr.topic,
                        )
                    )
        last_ok = None
        for i, at in enumerate(self._slots(rng, max(5, int(merged * 0.5)))):
            if at >= self.now - HOUR:
                continue
            sha = repo.head_at(at)
            if i == 1 or rng.random() < 0.15:  # a deploy run on another branch: ignored by the source
                runs.append(
                    Run(
                        repo.name,
                        deploy,
                        f"release/1.{rng.randrange(1, 30)}",
                        sha,
                        "workflow_dispatch",
                        "completed",
                        "success",
                        at - 30 * MINUTE,
                        at - 20 * MINUTE,
                        rng.choice(USERS),
                        "Deploy",
                    )
                )
            if sha == last_ok:
                continue
            took = _secs(4 * MINUTE + 12 * MINUTE * rng.random())
            u = rng.random()
            conclusion = "cancelled" if u < 0.05 else "failure" if u < 0.05 + self._fail_p(at) else "success"
            event = "push" if rng.random() < 0.85 else "workflow_dispatch"
            msg = repo.commits[sha].message
            runs.append(
                Run(
                    repo.name,
                    deploy,
                    DEFAULT_BRANCH,
                    sha,
                    event,
                    "completed",
                    conclusion,
                    at,
                    at + took,
                    rng.choice(USERS),
                    msg,
                )
            )
            if conclusion == "success":
                last_ok = sha
            elif conclusion == "failure":
                retry = at + _secs(HOUR + 3 * HOUR * rng.random())
                if retry < self.now - HOUR:
                    rsha = repo.head_at(retry)
                    runs.append(
                        Run(
                            repo.name,
                            deploy,
                            DEFAULT_BRANCH,
                            rsha,
                            "workflow_dispatch",
                            "completed",
                            "success",
                            retry,
                            retry + took,
                            rng.choice(USERS),
                            "Deploy",
                        )
                    )
                    last_ok = rsha
        at = self.now - 10 * MINUTE
        runs.append(
            Run(repo.name, deploy, DEFAULT_BRANCH, repo.main[-1], "push", "in_progress", None, at, at, BOT, "Deploy")
        )
        runs.sort(key=lambda r: r.created_at)
        for run in runs:
            self._add_run(repo, run)
        for run in runs:  # re-runs of a job, edits: updated_at moves long after the run finished
            if run.completed_at and run.workflow is deploy and self.vrng.random() < 0.3:
                late = run.completed_at + _secs(DAY * (20 + 300 * self.vrng.random()))
                run.updated_at = max(run.completed_at, min(late, self.now - MINUTE))

    def _add_run(self, repo: Repo, run: Run) -> None:
        run.id = self.ids.take("run")
        if run.run_started_at is None:
            run.run_started_at = min(run.created_at + timedelta(seconds=4), run.updated_at)
        if run.status == "completed" and run.completed_at is None:
            run.completed_at = run.updated_at
        run.run_number = repo.run_numbers[run.workflow.id] = repo.run_numbers.get(run.workflow.id, 0) + 1
        repo.runs.append(run)

    # --- malformed records ----------------------------------------------------------------
    def _add_malformed(self, rng: random.Random, count: int) -> None:
        names = list(self.repos)
        for k in range(count):
            repo = self.repos[names[k % len(names)]]
            at = self._rand_time(rng, self.start + 2 * DAY, self.now - 2 * HOUR)
            number = repo.next_number()
            if k % 2 == 0:
                issue = Issue(repo.name, at, rng.choice(USERS), f"Broken record {k}")
                issue.malformed = ISSUE_FAULTS[(k // 2) % len(ISSUE_FAULTS)]
                issue.events.append(IssueEvent("labeled", at, issue.author, label="bug"))
                self._apply_events(issue)
                issue.number, issue.id = number, self.ids.take("issue")
                repo.items[number] = issue
            else:
                pr = PullRequest(repo.name, rng.choice(USERS), at, f"Broken record {k}", f"broken/{k}")
                pr.malformed = PR_FAULTS[(k // 2) % len(PR_FAULTS)]
                pr.merged_at = pr.closed_at = at + HOUR
                pr.merged_by = pr.author
                pr.base_sha = repo.head_at(at)
                pr.number, pr.issue_id, pr.id = number, self.ids.take("issue"), self.ids.take("pull")
                pr.title, pr.body = pr.topic, "No references."
                repo.items[number] = pr

    def _assign_event_ids(self, issues: Iterable[Issue], prs: Iterable[PullRequest]) -> None:
        """Event and status ids grow with time across the organisation, as on GitHub."""
        events: list[IssueEvent] = []
        for pr in prs:
            if pr.closed_at:
                if pr.merged_at:
                    pr.events.append(
                        IssueEvent("merged", pr.merged_at, pr.merged_by or pr.author, commit_id=pr.merge_commit_sha)
                    )
                pr.events.append(
                    IssueEvent("closed", pr.closed_at, pr.merged_by or pr.author, commit_id=pr.merge_commit_sha)
                )
            events.extend(pr.events)
        for issue in issues:
            events.extend(e for e in issue.events if e.kind != "cross-referenced")
        for ev in sorted(events, key=lambda e: e.at):
            ev.id = self.ids.take("event")
        statuses = [s for r in self.repos.values() for d in r.deployments for s in d.statuses]
        for s in sorted(statuses, key=lambda s: s.at):
            s.id = self.ids.take("status")

    def _add_extra_repos(self, rng: random.Random, count: int) -> None:
        """``count`` repositories beside the services, as a large organisation has them: of every
        twenty, nine empty (never pushed: ``size`` 0, ``pushed_at`` null), five archived, five
        forks and one small live repository with an initial commit. They have no issues, pull
        requests or deliveries, so the ground truth is the same with or without them."""
        for k in range(count):
            name = f"svc-{k:05d}"
            created = self._rand_time(rng, self.start - 300 * DAY, self.now - 2 * DAY)
            repo = Repo(name, f"{self.org}/{name}", 800_000_000 + k, "deployments", created, service=False)
            kind = k % 20
            repo.archived = 9 <= kind < 14
            repo.fork = 14 <= kind < 19
            if kind >= 9:
                self._push(repo, self._rand_time(rng, created, self.now - DAY), "Initial commit")
            if repo.archived:
                repo.changed_at = self._rand_time(rng, repo.pushed_at or created, self.now - DAY)
            self.repos[name] = repo

    def _push(self, repo: Repo, at: datetime, message: str) -> str:
        sha = repo.new_sha(self.seed, self.org)
        repo.commits[sha] = GitCommit(sha, message, USERS[0], at, [repo.main[-1]] if repo.main else [])
        repo.add_main(sha, at, [])
        return sha

    def push(self, name: str, now: datetime) -> str:
        """A direct push of one commit to a repository's main branch at ``now`` (its first, if empty)."""
        repo = self.repos[name]
        at = max(now.astimezone(UTC).replace(microsecond=0), *(repo.main_times[-1:] or [repo.created_at]))
        sha = self._push(repo, at, "Update README")
        self.version += 1
        self._truth = None
        return sha

    def delete(self, name: str) -> None:
        """Delete a repository: it leaves the listing and every route of it answers 404."""
        del self.repos[name]
        self.version += 1
        self._truth = None

    def archive(self, name: str, now: datetime) -> None:
        """Archive a repository: ``archived`` and ``updated_at`` change, ``pushed_at`` does not."""
        repo = self.repos[name]
        repo.archived = True
        repo.changed_at = now.astimezone(UTC).replace(microsecond=0)
        self.version += 1

    # --- changes that push nothing (each moves what GitHub moves, nothing else) ------------
    def _moment(self, now: datetime) -> datetime:
        at = now.astimezone(UTC).replace(microsecond=0)
        self.now = max(self.now, at)
        self.version += 1
        self._truth = None
        return at

    def _issue(self, name: str, number: int) -> Issue:
        item = self.repos[name].items[number]
        assert isinstance(item, Issue), f"{name}#{number} is no issue"
        return item

    def assign(self, name: str, number: int, who: str, now: datetime) -> None:
        """Assign an issue: an ``assigned`` event at ``now``, its ``updated_at`` moves."""
        issue = self._issue(name, number)
        issue.events.append(IssueEvent("assigned", self._moment(now), who, assignee=who, id=self.ids.take("event")))
        self._apply_events(issue)

    def label(self, name: str, number: int, label: str, now: datetime) -> None:
        """Label an issue: a ``labeled`` event at ``now``, its ``updated_at`` moves."""
        issue = self._issue(name, number)
        issue.events.append(
            IssueEvent("labeled", self._moment(now), issue.author, label=label, id=self.ids.take("event"))
        )
        self._apply_events(issue)

    def deploy(self, name: str, environment: str, sha: str, now: datetime, result: str | None) -> int:
        """A deployment of an existing commit created at ``now`` (``result`` None: left in progress),
        its statuses at ``now``; GitHub marks the previous success to that environment inactive."""
        repo = self.repos[name]
        d = self._deploy(repo, environment, sha, self._moment(now), result, timedelta(0))
        for p in repo.deployments:
            for st in p.statuses:
                if not st.id:
                    st.at = min(st.at, self.now)
                    st.id = self.ids.take("status")
        return d.id

    def add_status(self, name: str, deployment: int, state: str, now: datetime) -> None:
        """A new status of an existing deployment at ``now`` (a success inactivates the previous one)."""
        repo = self.repos[name]
        d = next(x for x in repo.deployments if x.id == deployment)
        at = self._moment(now)
        if state == "success":
            for p in reversed(repo.deployments):
                if p is not d and p.environment == d.environment and (o := p.outcome()) and o.state == "success":
                    p.statuses.append(Status("inactive", at, self.ids.take("status")))
                    break
        d.statuses.append(Status(state, at, self.ids.take("status")))

    def release(self, name: str, tag: str, sha: str, now: datetime) -> int:
        """A release of an existing commit published at ``now`` (the newest of the list)."""
        repo = self.repos[name]
        rel = self._release(repo, tag, sha, self._moment(now))
        drafts = [r for r in repo.releases if r.draft]  # the pending draft stays the newest, as seeded
        repo.releases = [r for r in repo.releases if not r.draft] + drafts
        return rel.id

    def review(self, name: str, number: int, who: str, state: str, now: datetime) -> int:
        """A review of a pull request submitted at ``now``: its ``updated_at`` moves."""
        pr = self.repos[name].items[number]
        assert isinstance(pr, PullRequest), f"{name}#{number} is no pull request"
        at = self._moment(now)
        review = Review(pr, self.ids.take("review"), who, state, at, at)
        pr.late_reviews.append(review)
        return review.id

    def many_jobs(self, name: str, run_id: int, matrix: int) -> None:
        """Give a run a matrix of ``matrix`` jobs between ``build`` and ``deploy`` (its end, the
        last job's, stays ``deploy``'s): more than 100 page its ``/jobs`` and its check runs."""
        run = next(r for r in self.repos[name].runs if r.id == run_id)
        run.matrix = matrix
        self.version += 1

    def unresolvable(self, node_id: str, error: str = "NOT_FOUND") -> None:
        """GraphQL answers ``node_id`` with ``error`` (``NOT_FOUND``, ``FORBIDDEN``) and a null node;
        REST serves the object as before."""
        self.node_errors[node_id] = error
        self.version += 1

    # --- activity -----------------------------------------------------------------------
    def add_activity(self, rng: random.Random, now: datetime) -> dict[str, Any]:
        """A new issue, a merged PR (closing an open issue when there is one) and a delivery per repo."""
        now = now.astimezone(UTC).replace(microsecond=0)
        if now <= self.now:
            now = self.now + timedelta(seconds=1)
        self.now = now
        added: dict[str, Any] = {"issues": [], "pulls": [], "deployments": []}
        name = rng.choice([n for n, r in self.repos.items() if r.service])
        repo = self.repos[name]
        subject = rng.choice(_SUBJECTS)
        issue = Issue(name, now, rng.choice(USERS), f"{rng.choice(_ISSUE_VERBS)} {subject}")
        issue.body = f"Reported at {iso(now)}."
        issue.events.append(IssueEvent("labeled", now, issue.author, label=rng.choice(("bug", "feature"))))
        issue.events.append(IssueEvent("labeled", now, issue.author, label=f"team/{TEAM_OF_REPO[name]}"))
        if rng.random() < 0.5:
            who = rng.choice(USERS)
            issue.events.append(IssueEvent("assigned", now, who, assignee=who))
        self._apply_events(issue)
        self._add_item(repo, issue)
        for ev in issue.events:
            ev.id = self.ids.take("event")
        added["issues"].append(f"{repo.full_name}#{issue.number}")

        target = self._open_issue(rng, name)
        pr = self._new_pr(rng, name, now - HOUR, target, rng.choice(_SUBJECTS) if target is None else subject)
        if target is not None:
            target.events.sort(key=lambda e: e.at)
        if rng.random() < 0.5 and self.azure_items:
            pr.ab_body = self._azure_item_before(rng, now - HOUR)
        pr.merged_at = pr.closed_at = now
        pr.merged_by = rng.choice(USERS)
        self._add_item(repo, pr)
        pr.issue_id, pr.id = pr.id, self.ids.take("pull")
        self._make_pr_commits(rng, repo, pr)
        self._merge(repo, pr)
        self._compose_pr_text(pr)
        for kind in ("merged", "closed"):
            pr.events.append(
                IssueEvent(kind, now, pr.merged_by, commit_id=pr.merge_commit_sha, id=self.ids.take("event"))
            )
        if target is not None:
            target.events.append(
                IssueEvent("closed", now, pr.merged_by, state_reason="completed", source=pr, id=self.ids.take("event"))
            )
            self._apply_events(target)
        added["pulls"].append(f"{repo.full_name}#{pr.number}")

        for r in self.repos.values():
            if r.service:
                added["deployments"].extend(self._deliver_now(r, now))
        self.version += 1
        self._truth = None
        return added

    def _add_item(self, repo: Repo, item: Issue | PullRequest) -> None:
        item.number = repo.next_number()
        item.id = self.ids.take("issue")
        repo.items[item.number] = item

    def _open_issue(self, rng: random.Random, name: str) -> Issue | None:
        candidates = [
            i
            for i in self.repos[name].items.values()
            if isinstance(i, Issue)
            and not i.malformed
            and i.state == "open"
            and not any(e.kind == "cross-referenced" and e.source and e.source.state == "open" for e in i.events)
        ]
        return rng.choice(candidates) if candidates else None

    def _deliver_now(self, repo: Repo, now: datetime) -> list[str]:
        head = repo.main[-1]
        if repo.mode == "deployments":
            out = []
            for env in ("staging", "production"):
                d = self._deploy(repo, env, head, now, "success", timedelta(0))
                for p in repo.deployments:  # the new one's statuses, and the success it made inactive
                    for s in p.statuses:
                        if not s.id:
                            s.at = min(s.at, now)
                            s.id = self.ids.take("status")
                out.append(f"deployment:{d.id}")
            return out
        if repo.mode == "releases":
            tags = [r.tag for r in repo.releases if not r.draft and not r.prerelease]
            major, minor = tags[-1].lstrip("v").split(".")[:2] if tags else ("1", "0")
            rel = self._release(repo, f"v{major}.{int(minor) + 1}.0", head, now)
            # keep the pending draft last, as the newest
            drafts = [r for r in repo.releases if r.draft]
            repo.releases = [r for r in repo.releases if not r.draft] + drafts
            return [f"release:{rel.id}"]
        deploy = repo.workflows[1]
        run = Run(repo.name, deploy, DEFAULT_BRANCH, head, "push", "completed", "success", now, now, BOT, "Deploy")
        self._add_run(repo, run)
        return [f"run:{run.id}"]

    # --- reviews ------------------------------------------------------------------------
    def review_plan(self, pr: PullRequest) -> ReviewPlan:
        """Reviewer, reviews and readiness of a pull request, with the awkward real variations.

        Drawn from a stream per pull request, so adding reviews left the rest of the world as it was
        and activity added later cannot shift them. The first draws are the plain story (a draft
        made ready later, a change request, an approval); the later ones add: a deleted (ghost)
        author, a review by the author themself before anyone else's, merged PRs nobody but their
        author reviewed, a review comment drafted before its review was submitted, a review still
        PENDING (with its comment) earlier than every submitted one, a bot's review, and a PR opened
        ready that went back to draft and was made ready again (it stays ready since creation)."""
        rng = random.Random(f"github/reviews/{self.seed}/{pr.repo}/{pr.number}")
        reviewer = rng.choice([u for u in USERS if u != pr.author])
        end = pr.merged_at or pr.closed_at or self.now
        span = max(0.0, (end - pr.created_at).total_seconds())
        ready = pr.created_at + _secs(timedelta(seconds=span * 0.1)) if rng.random() < 0.2 else None
        start = ready or pr.created_at
        first = start + _secs(timedelta(seconds=span * (0.15 + 0.3 * rng.random())))
        planned: list[tuple[int, str, datetime]] = []
        base = 90_000_000 + pr.id * 8
        if span > 60 and rng.random() < 0.35:
            planned.append((base + 1, "CHANGES_REQUESTED", first))
            first = first + _secs(timedelta(seconds=(end - first).total_seconds() * 0.5))
        if span > 60 and (pr.merged_at or rng.random() < 0.5):
            planned.append((base + 2, "APPROVED" if pr.merged_at or rng.random() < 0.5 else "COMMENTED", first))
        planned = [r for r in planned if r[2] <= end]
        # the variations, each from its own draws (fixed count, so none shifts another)
        ghost, self_review, unreviewed, early, pending, bot, redraft = (rng.random() for _ in range(7))
        u = [rng.random() for _ in range(4)]
        reviews = [Review(pr, rid, reviewer, state, at, at) for rid, state, at in planned]
        if reviews and early < 0.35:  # its comment was drafted before the review was submitted
            r = reviews[0]
            r.created_at = start + _secs((r.at - start) * u[0])
            r.commented = True
        if pr.merged_at and unreviewed < 0.08:
            reviews = []  # merged with nobody else's review
        lead = reviews[0].created_at if reviews else end
        if span > 60 and (self_review < 0.15 or (not reviews and self_review < 0.6)):
            at = start + _secs((lead - start) * u[1] * 0.5)
            reviews.append(Review(pr, base + 3, pr.author, "COMMENTED", at, at))
        if span > 60 and pending < 0.12:  # a third person's review never submitted, before the others
            other = next(x for x in USERS if x not in (pr.author, reviewer))
            at = start + _secs((lead - start) * u[2] * 0.5)
            reviews.append(Review(pr, base + 4, other, "PENDING", None, at, commented=True))
        if span > 60 and bot < 0.1:
            at = start + _secs((end - start) * u[3])
            reviews.append(Review(pr, base + 5, REVIEW_BOT, "COMMENTED", at, at))
        again = None
        if ready is None and span > 600 and redraft < 0.08:
            again = (
                pr.created_at + _secs(timedelta(seconds=span * 0.02)),
                start + _secs(timedelta(seconds=span * 0.05)),
            )
        reviews += pr.late_reviews
        reviews.sort(key=lambda r: (r.at, r.id))
        return ReviewPlan(reviewer, ready, again, ghost < 0.06, reviews)

    def author_shown(self, pr: PullRequest) -> str:
        """Who GitHub says opened a pull request: ``ghost`` once its author's account is deleted."""
        return GHOST if self.review_plan(pr).ghost else pr.author

    def reviews_of(self, pr: PullRequest) -> list[Review]:
        """Its reviews, oldest first, the pending one too (``GET /pulls/{n}/reviews``, GraphQL
        ``reviews``; GitHub shows a pending review to its author: the sandbox's token is everyone)."""
        return list(self.review_plan(pr).reviews)

    def pr_timeline(self, pr: PullRequest) -> list[IssueEvent | Review | ReviewComment]:
        """A pull request's timeline: its events plus the review request, a draft's ready-for-review
        (or a ready PR's round trip through draft), its reviews (``reviewed``) and review comments
        (``line-commented``), in time order."""
        plan = self.review_plan(pr)
        base = 95_000_000 + pr.id * 4
        extra: list[IssueEvent | Review | ReviewComment] = []
        if plan.ready is not None:
            extra.append(IssueEvent("ready_for_review", plan.ready, pr.author, id=base + 2))
        if plan.redraft is not None:
            extra.append(IssueEvent("convert_to_draft", plan.redraft[0], pr.author, id=base + 3))
            extra.append(IssueEvent("ready_for_review", plan.redraft[1], pr.author, id=base + 4))
        extra.append(
            IssueEvent("review_requested", plan.ready or pr.created_at, pr.author, assignee=plan.reviewer, id=base + 1)
        )
        for r in plan.reviews:
            extra.append(r)
            if r.commented:
                extra.append(ReviewComment(r))
        return sorted([*extra, *pr.events], key=lambda e: e.at)

    # --- ground truth -------------------------------------------------------------------
    def truth(self) -> dict[str, Any]:
        if self._truth is None:
            self._truth = self._compute_truth()
        return self._truth

    def _compute_truth(self) -> dict[str, Any]:
        work_items, changes, deployments, rejected = [], [], [], []
        links: set[tuple[str, str]] = set()
        for repo in self.repos.values():
            if not repo.service:
                continue
            in_pulls: set[str] = set()
            for number in sorted(repo.items):
                item = repo.items[number]
                native = f"{repo.full_name}#{number}"
                if item.malformed:
                    rejected.append({"record_id": native, "reason": item.malformed})
                elif isinstance(item, Issue):
                    work_items.append(self._truth_issue(repo, item))
                elif item.merged_at:
                    changes.append(self._truth_change(repo, item))
                    links.update(self._truth_links(repo, item))
                    in_pulls.update([*item.commits, item.merge_commit_sha or ""])
            shipped = self._truth_deployments(repo)
            deployments.extend(shipped)
            pushed = sorted({ref.removeprefix("commit:") for d in shipped for ref in d["contains"]} - in_pulls)
            for sha in pushed:
                changes.append(self._truth_direct_push(repo, repo.commits[sha]))
                links.update(self._truth_commit_links(repo, repo.commits[sha]))
        return {
            "repos": {r.full_name: r.mode for r in self.repos.values() if r.service},
            "work_items": work_items,
            "changes": changes,
            "deployments": deployments,
            "links": [{"work_item": w, "target": t} for w, t in sorted(links)],
            "rejected": rejected,
        }

    def _truth_issue(self, repo: Repo, issue: Issue) -> dict[str, Any]:
        team = next((lb.split("/", 1)[1] for lb in issue.labels if lb.startswith("team/")), "")
        kind = issue.native_type or next((TYPE_LABELS[lb] for lb in issue.labels if lb in TYPE_LABELS), "Issue")
        history = [
            {"seq": i + 1, "at": iso(at), "state": state, "category": CATEGORY[state]}
            for i, (at, state) in enumerate(derive_states(issue))
        ]
        return {
            "native_id": f"{repo.full_name}#{issue.number}",
            "ref": gh_issue_ref(repo.full_name, issue.number),
            "project": repo.full_name,
            "team": team,
            "type": kind,
            "created_at": iso(issue.created_at),
            "history": history,
        }

    def _truth_change(self, repo: Repo, pr: PullRequest) -> dict[str, Any]:
        first = min(repo.commits[s].authored for s in pr.commits)
        plan = self.review_plan(pr)
        # a deleted author cannot be told from their reviewers: every submitted review counts
        others = [r for r in plan.reviews if r.state != "PENDING" and (plan.ghost or r.author != pr.author)]
        return {
            "native_id": f"{repo.full_name}#{pr.number}",
            "ref": gh_pr_ref(repo.full_name, pr.number),
            "service": repo.full_name,
            "kind": "pull_request",
            "first_commit_at": iso(first),
            "merged_at": iso(pr.merged_at),
            "commits": [*pr.commits, pr.merge_commit_sha],
            "ready_at": iso(plan.ready or pr.created_at),
            "first_review_at": iso(min((r.created_at for r in others), default=None)),
        }

    def _truth_direct_push(self, repo: Repo, c: GitCommit) -> dict[str, Any]:
        return {
            "native_id": f"{repo.full_name}@{c.sha}",
            "ref": commit_ref(c.sha),
            "service": repo.full_name,
            "kind": "commit",
            "first_commit_at": iso(c.authored),
            "merged_at": iso(c.at),
            "commits": [c.sha],
            "ready_at": None,
            "first_review_at": None,
        }

    def _truth_links(self, repo: Repo, pr: PullRequest) -> set[tuple[str, str]]:
        target = gh_pr_ref(repo.full_name, pr.number)
        out = {(gh_issue_ref(f"{self.org}/{i.repo}", i.number), target) for i in pr.closes}
        for ab in (pr.ab_title, pr.ab_body):
            if ab:
                out.add((ado_ref(ab), target))
        for sha in pr.commits:
            for ab in re.findall(r"AB#(\d+)", repo.commits[sha].message):
                out.add((ado_ref(ab), commit_ref(sha)))
        return out

    def _truth_commit_links(self, repo: Repo, c: GitCommit) -> set[tuple[str, str]]:
        out = {(ado_ref(ab), commit_ref(c.sha)) for ab in re.findall(r"AB#(\d+)", c.message)}
        out |= {(gh_issue_ref(repo.full_name, n), commit_ref(c.sha)) for n in _CLOSING_REF.findall(c.message)}
        return out

    def _truth_deployments(self, repo: Repo) -> list[dict[str, Any]]:
        rows: list[tuple[str, str, str, datetime | None, datetime, str]] = []  # native, env, status, start, end, sha
        if repo.mode == "deployments":
            for d in sorted(repo.deployments, key=lambda d: d.id):
                o = d.outcome()
                if o is not None:
                    rows.append(
                        (
                            f"deployment:{d.id}",
                            d.environment,
                            "success" if o.state == "success" else "failure",
                            d.created_at,
                            o.at,
                            d.sha,
                        )
                    )
        elif repo.mode == "releases":
            for r in sorted(repo.releases, key=lambda r: r.id):
                if not r.draft and not r.prerelease and r.published_at:
                    rows.append((f"release:{r.id}", "production", "success", r.created_at, r.published_at, r.sha))
        else:
            for run in sorted(repo.runs, key=lambda r: r.id):
                if (
                    run.workflow.path.endswith("/deploy.yml")
                    and run.head_branch == DEFAULT_BRANCH
                    and run.status == "completed"
                    and run.conclusion in ("success", "failure", "timed_out")
                ):
                    status = "success" if run.conclusion == "success" else "failure"
                    assert run.completed_at is not None
                    rows.append(
                        (f"run:{run.id}", "production", status, run.run_started_at, run.completed_at, run.head_sha)
                    )
        out = []
        ok: dict[str, list[str]] = {}
        for native, env, status, start, end, sha in rows:
            opened = status == "success" and env == "production"  # contents are read where figures use them
            out.append(
                {
                    "native_id": native,
                    "service": repo.full_name,
                    "environment": env,
                    "production": env == "production",
                    "status": status,
                    "started_at": iso(start),
                    "finished_at": iso(end),
                    "sha": sha,
                    "contains": self._contains(repo, sha, ok.get(env, [])) if opened else [],
                }
            )
            if status == "success":
                ok.setdefault(env, []).append(sha)
        return out

    @staticmethod
    def _contains(repo: Repo, sha: str, earlier_ok: list[str]) -> list[str]:
        if sha not in repo.commits:
            return []
        base = next((s for s in reversed(earlier_ok) if s in repo.commits), None)
        shas = repo.ahead(sha, base) if base else repo.reachable(sha)
        return sorted(commit_ref(s) for s in shas)


def derive_states(issue: Issue) -> list[tuple[datetime, str]]:
    """The issue's state changes from its timeline: the algorithm in the module docstring."""
    steps: list[tuple[datetime, int, int, IssueEvent | PullRequest]] = []
    for i, ev in enumerate(issue.events):
        if ev.kind == "cross-referenced" and ev.source is not None and issue not in ev.source.closes:
            continue  # a PR that only mentions the issue ("Related to #N") is no work on it
        steps.append((ev.at, 0, i, ev))
        if ev.kind == "cross-referenced" and ev.source is not None and ev.source.closed_at is not None:
            steps.append((ev.source.closed_at, 1, i, ev.source))
    steps.sort(key=lambda s: (s[0], s[1], s[2]))
    closed: str | None = None
    assignees: set[str] = set()
    open_prs: set[int] = set()
    history = [(issue.created_at, "open")]
    for at, _, _, step in steps:
        if isinstance(step, PullRequest):
            open_prs.discard(id(step))
        elif step.kind == "assigned":
            assignees.add(step.assignee or "")
        elif step.kind == "unassigned":
            assignees.discard(step.assignee or "")
        elif step.kind == "closed":
            closed = step.state_reason or "completed"
        elif step.kind == "reopened":
            closed = None
        elif step.kind == "cross-referenced" and step.source is not None:
            open_prs.add(id(step.source))
        elif step.kind == "connected":
            open_prs.add(0)  # the REST timeline does not say which pull request: one, until disconnected
        elif step.kind == "disconnected":
            open_prs.discard(0)
        else:
            continue
        state = closed or ("in_progress" if assignees or open_prs else "open")
        if state != history[-1][1]:
            history.append((at, state))
    return history
