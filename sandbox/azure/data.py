"""The seeded Azure DevOps organisation behind the sandbox: boards, repos, pipelines, releases.

Generation is separate from serving (the HTTP routes, ``sandbox.azure.routes``) so the data can be
reasoned about (and its ground truth computed) without HTTP. Everything is deterministic in ``seed``;
times are integer epoch milliseconds internally (Azure DevOps reports millisecond precision).

Shape of the organisation (``contoso``):

- projects ``Fabrikam`` (areas ``Fabrikam``, ``Fabrikam\\Web``, ``Fabrikam\\Payments``) and
  ``Tailspin`` (``Tailspin``, ``Tailspin\\Mobile``), Agile process: ``User Story``, ``Bug``,
  ``Feature`` with New/Active/Resolved/Closed/Removed; Fabrikam's User Story also has the custom
  state ``In Review`` (category InProgress), so a client must read categories, not hard-code them.
- work items created over the year before ``now``, with revision histories: non-state edits,
  reopenings (Closed→Active→Closed), skips (New→Closed), removals, a few deletions (a last
  revision with ``System.IsDeleted`` true), artifact links (commit, pull request, build) each
  added by its own revision. Cycle time falls from ~2 months a year ago to ~10 days now.
- repos ``web``, ``payments`` (Fabrikam), ``mobile``, ``legacy-api`` (Tailspin), linear ``main``
  histories; YAML pipelines ``web-ci``, ``payments-ci``, ``mobile-ci`` deploy to environments
  ``dev``/``staging``/``production`` of their project (failed production deployments are followed
  by a recovery, some are canceled); ``legacy-api-build`` only builds, and the classic release
  definition ``Tailspin-classic`` deploys its builds to ``QA`` and ``Prod``.
- ``malformed=N`` inserts N corrupt revisions (one defect each) between valid revisions.
"""

from __future__ import annotations

import bisect
import math
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

MS_MIN = 60_000
MS_HOUR = 60 * MS_MIN
MS_DAY = 24 * MS_HOUR
MS_YEAR = 365 * MS_DAY
#: generated history starts this many days before ``now`` (initial commits a day earlier)
HISTORY_DAYS = 355
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: far-future ``System.RevisedDate`` of a current revision, as the service reports it
END_OF_TIME = "9999-01-01T00:00:00Z"

#: (state, color, category) per work item type, Agile process
_AGILE_STATES = [
    ("New", "b2b2b2", "Proposed"),
    ("Active", "007acc", "InProgress"),
    ("Resolved", "ff9d00", "Resolved"),
    ("Closed", "339933", "Completed"),
    ("Removed", "ffffff", "Removed"),
]
CUSTOM_STATE = ("In Review", "5688e0", "InProgress")
WORK_ITEM_TYPES = ("User Story", "Bug", "Feature")
TYPE_REFERENCE_NAMES = {
    "User Story": "Microsoft.VSTS.WorkItemTypes.UserStory",
    "Bug": "Microsoft.VSTS.WorkItemTypes.Bug",
    "Feature": "Microsoft.VSTS.WorkItemTypes.Feature",
}
REASONS = {
    "New": "New",
    "Active": "Implementation started",
    "In Review": "Ready for review",
    "Resolved": "Code complete and unit tests pass",
    "Closed": "Acceptance tests pass",
    "Removed": "Removed from the backlog",
}
#: malformed revision kinds, in rotation, and what each breaks (see ``Revision.defect``)
DEFECTS = ("missing_field", "wrong_type", "unknown_state", "end_before_start", "bad_timestamp", "too_large")

PEOPLE = [
    ("Jamal Hartnett", "jamal"),
    ("Normal Paulk", "normal"),
    ("Chuck Reinhart", "chuck"),
    ("Christie Church", "christie"),
    ("Johnnie McLeod", "johnnie"),
    ("Helena Petersen", "helena"),
    ("Ravi Iyer", "ravi"),
    ("Mei Chen", "mei"),
    ("Tomas Novak", "tomas"),
    ("Amara Okafor", "amara"),
    ("Lars Berg", "lars"),
    ("Sofia Alves", "sofia"),
]
_TAGS = ("", "customer", "tech-debt", "customer; urgent", "security")
_TITLE_VERBS = ["Add", "Fix", "Improve", "Refactor", "Support", "Remove", "Speed up", "Harden", "Document"]
_TITLE_THINGS = [
    "checkout flow",
    "login page",
    "invoice export",
    "push notifications",
    "search filters",
    "payment retries",
    "order history",
    "profile settings",
    "API pagination",
    "audit log",
    "offline mode",
    "currency rounding",
    "session timeout",
    "card tokenisation",
    "dark mode",
]


def iso(ms: int) -> str:
    """Azure DevOps style UTC time: milliseconds with trailing zeros trimmed, ``Z`` suffix.

    Some times carry .NET's seven fraction digits (``.1230000Z``), as real answers do."""
    dt = _EPOCH + timedelta(milliseconds=ms)
    base = dt.strftime("%Y-%m-%dT%H:%M:%S")
    frac = ms % 1000
    if frac and ms % 7 == 0:
        return f"{base}.{frac:03d}0000Z"
    if frac:
        return f"{base}.{frac:03d}".rstrip("0") + "Z"
    return base + "Z"


def to_datetime(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def truth_time(ms: int) -> str:
    """Ground-truth timestamps: ``datetime.isoformat()`` of the aware UTC time."""
    return to_datetime(ms).isoformat()


def to_ms(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt.astimezone(UTC) - _EPOCH
    return delta.days * MS_DAY + delta.seconds * 1000 + delta.microseconds // 1000


def _guid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


@dataclass(slots=True)
class Person:
    name: str
    email: str
    id: str

    @property
    def display(self) -> str:
        """Identity fields as the work item APIs render them without ``includeIdentityRef``."""
        return f"{self.name} <{self.email}>"


@dataclass(slots=True, eq=False, repr=False)
class Project:
    name: str
    id: str
    areas: list[str]
    area_weights: list[float]
    #: type -> [(state, color, category)]
    states: dict[str, list[tuple[str, str, str]]]
    kanban_guid: str
    categories: dict[tuple[str, str], str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for type_, states in self.states.items():
            for name, _color, category in states:
                self.categories[(type_, name)] = category

    def category(self, type_: str, state: str) -> str | None:
        return self.categories.get((type_, state))


@dataclass(slots=True, eq=False, repr=False)
class Relation:
    """An ArtifactLink on a work item; ``target`` is the domain ref it stands for."""

    url: str
    name: str  # "Fixed in Commit" | "Pull Request" | "Integrated in build"
    added_at: int
    target: str
    rid: int


@dataclass(slots=True, eq=False, repr=False)
class Revision:
    """One revision of a work item: a full snapshot of the fields we model.

    ``defect`` marks a malformed revision (one of ``DEFECTS``): the API renders it corrupted and
    the ground truth leaves it out of the history and lists it under ``rejected``.
    """

    item: WorkItem
    rev: int
    at: int
    state: str
    reason: str
    by: int
    assigned: int
    priority: int
    iteration: str
    tags: str
    title: str
    activated: int | None
    resolved: int | None
    closed: int | None
    state_changed: int
    links: int
    added: tuple[Relation, ...] = ()
    deleted: bool = False
    defect: str | None = None
    watermark: int = 0


@dataclass(slots=True, eq=False, repr=False)
class WorkItem:
    id: int
    project: Project
    type: str
    area: str
    created: int
    created_by: int
    revs: list[Revision] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)

    @property
    def latest(self) -> Revision:
        return self.revs[-1]

    @property
    def deleted(self) -> bool:
        return self.revs[-1].deleted

    @property
    def team(self) -> str:
        """``team_from: area_path``: the full area path (the root area is the project itself)."""
        return self.area


@dataclass(slots=True, eq=False, repr=False)
class Commit:
    sha: str
    at: int
    author: int
    message: str
    repo: Repo
    index: int = 0
    items: list[int] = field(default_factory=list)


@dataclass(slots=True, eq=False, repr=False)
class Repo:
    id: str
    name: str
    project: Project
    commits: list[Commit] = field(default_factory=list)
    next_pr: int = 1


@dataclass(slots=True, eq=False, repr=False)
class Pipeline:
    id: int
    name: str
    project: Project
    repo: Repo
    #: YAML environments this pipeline deploys to, in stage order (empty: build only)
    stages: tuple[str, ...]
    builds: list[Build] = field(default_factory=list)


@dataclass(slots=True, eq=False, repr=False)
class Build:
    id: int
    number: str
    pipeline: Pipeline
    commit: int  # index into the repo's commits: the built sourceVersion
    prev_commit: int  # commit index built by the pipeline's previous run (-1: none)
    queued: int
    started: int
    finished: int | None
    result: str | None  # None while in progress
    requested_for: int
    plan_id: str
    reason: str = "individualCI"

    @property
    def status(self) -> str:
        return "completed" if self.finished is not None else "inProgress"

    @property
    def sha(self) -> str:
        return self.pipeline.repo.commits[self.commit].sha


@dataclass(slots=True, eq=False, repr=False)
class Environment:
    id: int
    name: str
    project: Project
    created: int
    records: list[DeploymentRecord] = field(default_factory=list)


@dataclass(slots=True, eq=False, repr=False)
class DeploymentRecord:
    id: int
    environment: Environment
    build: Build
    stage: str
    job: str
    queued: int
    started: int
    finished: int
    result: str
    request_id: str
    stage_attempt: int = 1
    job_attempt: int = 1


@dataclass(slots=True, eq=False, repr=False)
class ReleaseDefinition:
    id: int
    name: str
    project: Project
    pipeline: Pipeline
    environments: tuple[tuple[int, str], ...]  # (definitionEnvironmentId, name)
    releases: list[Release] = field(default_factory=list)


@dataclass(slots=True, eq=False, repr=False)
class Release:
    id: int
    name: str
    definition: ReleaseDefinition
    build: Build
    created: int
    created_by: int
    environment_ids: dict[str, int] = field(default_factory=dict)  # env name -> releaseEnvironment id
    deployments: list[ReleaseDeployment] = field(default_factory=list)


@dataclass(slots=True, eq=False, repr=False)
class ReleaseDeployment:
    id: int
    release: Release
    environment: str
    definition_environment_id: int
    status: str  # succeeded | failed | notDeployed
    operation: str
    queued: int
    started: int
    completed: int
    requested_for: int


@dataclass(slots=True, eq=False, repr=False)
class PullRequestCommit:
    """A commit of a pull request's source branch (for a fast-forward merge, the commit on main)."""

    sha: str
    at: int  # author date
    author: int
    message: str


@dataclass(slots=True, eq=False, repr=False)
class PullRequestThread:
    """One thread of a pull request: a discussion (``text``) or a system thread (``vote``,
    ``draft`` = published from draft, ``reviewers``, ``merge``, ``status``)."""

    id: int
    kind: str
    at: int
    person: int  # who wrote, voted, published or added reviewers
    text: str = ""
    vote: int = 0
    #: later comments in the thread: (at, person, text)
    replies: list[tuple[int, int, str]] = field(default_factory=list)
    #: the first comment was deleted by its author (``isDeleted``): it reviews nothing
    deleted: bool = False


@dataclass(slots=True, eq=False, repr=False)
class PullRequest:
    """A completed Azure Repos pull request into ``main``."""

    id: int
    repo: Repo
    title: str
    created_by: int
    created: int
    closed: int
    commits: list[PullRequestCommit]  # oldest first
    merge: Commit  # what main got: the squash commit, or the head of a fast-forward
    squash: bool
    items: list[int] = field(default_factory=list)
    #: created as a draft: when it was published
    published: int | None = None
    threads: list[PullRequestThread] = field(default_factory=list)
    reviewers: list[tuple[int, int]] = field(default_factory=list)  # (person, vote)

    @property
    def ready(self) -> int:
        return self.published if self.published is not None else self.created

    def first_review(self) -> int | None:
        """The first comment or vote by someone other than its creator (system text is nobody's)."""
        times = []
        for thread in self.threads:
            if thread.kind == "vote" and thread.person != self.created_by:
                times.append(thread.at)
            elif thread.kind == "text":
                if not thread.deleted and thread.person != self.created_by:
                    times.append(thread.at)
                times += [at for at, person, _ in thread.replies if person != self.created_by]
        return min(times) if times else None


def _status_of_record(result: str) -> str | None:
    if result in ("succeeded", "succeededWithIssues"):
        return "success"
    if result == "failed":
        return "failure"
    return None  # canceled, skipped, abandoned: not deployments


def _status_of_release(status: str, operation: str = "") -> str | None:
    if status == "notDeployed":  # deployed nothing because a phase failed: a failed deployment
        return "failure" if operation.lower() == "phasefailed" else None
    return {"succeeded": "success", "partiallySucceeded": "success", "failed": "failure"}.get(status)


def deployment_id(record: DeploymentRecord) -> str:
    """One deployment per (run, stage, stage attempt) of an environment: its jobs' records are one."""
    return f"env:{record.environment.id}:{record.build.id}:{record.stage}:{record.stage_attempt}"


class SeededAzureOrg:
    """The generated organisation plus its indexes. Mutated only by ``add_activity``."""

    def __init__(
        self, *, seed: int, work_items: int, now: datetime, malformed: int = 0, organization: str = "contoso"
    ) -> None:
        self.seed = seed
        self.organization = organization
        self.now = to_ms(now)
        # history fits inside a year with days to spare, so a source reading ``history: 365d``
        # from a clock a little ahead of ``now`` still sees every revision and deployment
        self.start = self.now - HISTORY_DAYS * MS_DAY
        self.span = self.now - self.start
        rng = random.Random(f"azure:{seed}")
        self.people = [Person(n, f"{u}@contoso.com", _guid(rng)) for n, u in PEOPLE]
        fab_states = {t: list(_AGILE_STATES) for t in WORK_ITEM_TYPES}
        fab_states["User Story"].insert(2, CUSTOM_STATE)
        self.projects = [
            Project(
                "Fabrikam",
                _guid(rng),
                ["Fabrikam", "Fabrikam\\Web", "Fabrikam\\Payments"],
                [0.2, 0.45, 0.35],
                fab_states,
                _guid(rng).replace("-", "").upper(),
            ),
            Project(
                "Tailspin",
                _guid(rng),
                ["Tailspin", "Tailspin\\Mobile"],
                [0.3, 0.7],
                {t: list(_AGILE_STATES) for t in WORK_ITEM_TYPES},
                _guid(rng).replace("-", "").upper(),
            ),
        ]
        self.project_by_key = {k: p for p in self.projects for k in (p.name.lower(), p.id.lower())}
        fab, tail = self.projects
        self.repos = [
            Repo(_guid(rng), "web", fab),
            Repo(_guid(rng), "payments", fab),
            Repo(_guid(rng), "mobile", tail),
            Repo(_guid(rng), "legacy-api", tail),
        ]
        self.repo_of_area = {
            "Fabrikam": None,
            "Fabrikam\\Web": self.repos[0],
            "Fabrikam\\Payments": self.repos[1],
            "Tailspin": self.repos[3],
            "Tailspin\\Mobile": self.repos[2],
        }
        stages = ("dev", "staging", "production")
        self.pipelines = [
            Pipeline(11, "web-ci", fab, self.repos[0], stages),
            Pipeline(12, "payments-ci", fab, self.repos[1], stages),
            Pipeline(21, "mobile-ci", tail, self.repos[2], stages),
            Pipeline(22, "legacy-api-build", tail, self.repos[3], ()),
        ]
        self.pipeline_of_repo = {p.repo.id: p for p in self.pipelines}
        self.environments: list[Environment] = []
        for project in self.projects:
            for name in stages:
                env_id = len(self.environments) + 1
                self.environments.append(Environment(env_id, name, project, self.start - 30 * MS_DAY))
        self.release_definitions = [
            ReleaseDefinition(1, "Tailspin-classic", tail, self.pipelines[3], ((1, "QA"), (2, "Prod")))
        ]
        self.items: list[WorkItem] = []
        self.builds: list[Build] = []
        self.records: list[DeploymentRecord] = []
        self.releases: list[Release] = []
        self.release_deployments: list[ReleaseDeployment] = []
        self.pull_requests: list[PullRequest] = []
        #: the global revision log in watermark order (watermark = index + 1)
        self.log: list[Revision] = []
        self.log_times: list[int] = []
        #: positions in ``log`` per (project name lower, type lower), for paging without sorting
        self.log_index: dict[tuple[str, str], list[int]] = {}
        self._artifact_index: dict[str, list[int]] | None = None
        self._relation_ids = 0
        #: items created after the change they asked for was released (imported from elsewhere)
        self.migrated: set[int] = set()
        self._build_keys: dict[int, list[int]] = {}
        self._generate(rng, work_items, malformed)

    # ---------------------------------------------------------------------------------------
    # generation

    def _generate(self, rng: random.Random, count: int, malformed: int) -> None:
        plans = [self._plan_item(rng, i + 1, created) for i, created in enumerate(self._creation_times(rng, count))]
        self._plan_commits(rng, plans)
        for pipeline in self.pipelines:
            self._plan_builds(rng, pipeline)
        self._number_builds()
        # deployments draw from their own stream, so their variations never reshuffle the items
        deploys = random.Random(f"azure-deployments:{self.seed}")
        self._plan_deployments(deploys)
        self._plan_releases(deploys)
        corrupt = self._malformed_targets(rng, plans, malformed)
        for plan in plans:
            self._assemble(rng, plan, corrupt.get(plan["item"].id, []))
        self._add_migrated_item(random.Random(f"azure-migrated:{self.seed}"))
        # pull requests draw from their own stream: everything generated before stays as it was
        self._plan_pull_requests(random.Random(f"azure-pull-requests:{self.seed}"), plans)
        self._build_log()

    def _creation_times(self, rng: random.Random, count: int) -> list[int]:
        span = self.now - self.start - 2 * MS_HOUR
        return sorted(self.start + int(rng.random() * span) for _ in range(count))

    def _plan_item(self, rng: random.Random, item_id: int, created: int) -> dict[str, Any]:
        project = self.projects[0] if rng.random() < 0.7 else self.projects[1]
        area = _weighted(rng, project.areas, project.area_weights)
        type_ = _weighted(rng, WORK_ITEM_TYPES, (0.6, 0.3, 0.1))
        item = WorkItem(item_id, project, type_, area, created, _below(rng, len(self.people)))
        # the improvement trend: waiting and cycle times shrink over the year
        f = min(max((created - self.start) / self.span, 0.0), 1.0)
        wait = max(int(rng.lognormvariate(math.log((8 - 6 * f) * MS_DAY), 0.8)), 10 * MS_MIN)
        cycle = max(int(rng.lognormvariate(math.log(70 * (8 / 70) ** f * MS_DAY), 0.6)), 2 * MS_HOUR)
        t1 = created + wait
        events: list[tuple[int, str, str]] = [(created, "New", "New")]
        kind = rng.random()
        if kind < 0.04:
            if rng.random() < 0.5:
                events.append((t1, "Removed", REASONS["Removed"]))
            else:
                events += [(t1, "Active", REASONS["Active"]), (t1 + cycle // 3, "Removed", REASONS["Removed"])]
        elif kind < 0.09:
            events.append((t1 + cycle // 5, "Closed", REASONS["Closed"]))
        else:
            events.append((t1, "Active", REASONS["Active"]))
            if project.category(type_, "In Review") and rng.random() < 0.5:
                events.append((t1 + int(cycle * 0.6), "In Review", REASONS["In Review"]))
            if rng.random() < 0.6:
                events.append((t1 + int(cycle * 0.8), "Resolved", REASONS["Resolved"]))
            events.append((t1 + cycle, "Closed", REASONS["Closed"]))
            if kind < 0.17:  # reopened after closing, then closed again
                back = t1 + cycle + int(rng.uniform(1, 10) * MS_DAY)
                events += [
                    (back, "Active", "Reactivated"),
                    (back + max(int(cycle * rng.uniform(0.1, 0.4)), MS_HOUR), "Closed", REASONS["Closed"]),
                ]
        horizon = self.now - MS_MIN
        events = [e for e in events if e[0] < horizon]
        active = [t for t, s, _ in events if s == "Active"]
        end = events[-1][0] if events[-1][1] in ("Closed", "Removed") else horizon
        plan: dict[str, Any] = {"item": item, "events": events, "end": end, "commit_times": [], "pr": None}
        if active and events[-1][1] != "Removed" and rng.random() < (0.3 if type_ == "Feature" else 0.85):
            done = ("Resolved", "Closed", "In Review")
            stop = next((t for t, s, _ in events if t > active[0] and s in done), horizon)
            span = max(stop - active[0], 2 * MS_MIN)
            plan["commit_times"] = sorted(
                active[0] + MS_MIN + int(rng.random() * (span - MS_MIN)) for _ in range(_pick(rng, (1, 1, 2, 2, 3)))
            )
            if len(active) > 1:  # a fix for the reopening
                later = next((t for t, s, _ in events if t > active[1] and s == "Closed"), horizon)
                plan["commit_times"].append(active[1] + int(rng.random() * max(later - active[1], MS_MIN)))
        return plan

    def _plan_commits(self, rng: random.Random, plans: list[dict[str, Any]]) -> None:
        raw: dict[str, list[tuple[int, int]]] = {r.id: [] for r in self.repos}
        for plan in plans:
            item: WorkItem = plan["item"]
            repo = self.repo_of_area[item.area] or (self.repos[0] if item.id % 2 else self.repos[1])
            plan["repo"] = repo
            for t in plan["commit_times"]:
                raw[repo.id].append((t, item.id))
        for repo in self.repos:
            filler = max(len(raw[repo.id]) * 2 // 5, 20)
            span = self.now - self.start - MS_HOUR
            raw[repo.id] += [(self.start + int(rng.random() * span), 0) for _ in range(filler)]
            raw[repo.id].sort()
            repo.commits.append(Commit(_sha(rng), self.start - MS_DAY, 0, "Initial commit", repo))
            last = repo.commits[0].at
            for t, item_id in raw[repo.id]:
                t = max(t, last + 1000)
                last = t
                thing = _pick(rng, _TITLE_THINGS)
                message = f"{_pick(rng, _TITLE_VERBS)} {thing}" + (f" #{item_id}" if item_id else "")
                commit = Commit(_sha(rng), t, _below(rng, len(self.people)), message, repo)
                if item_id:
                    commit.items.append(item_id)
                repo.commits.append(commit)
            for i, commit in enumerate(repo.commits):
                commit.index = i
        by_item: dict[int, list[Commit]] = {}
        for repo in self.repos:
            for commit in repo.commits:
                for item_id in commit.items:
                    by_item.setdefault(item_id, []).append(commit)
        for plan in plans:
            plan["commits"] = by_item.get(plan["item"].id, [])
            if plan["commits"] and rng.random() < 0.3:
                repo = plan["repo"]
                plan["pr"] = (repo, repo.next_pr, plan["commits"][-1].at + int(rng.uniform(1, 6) * MS_HOUR))
                repo.next_pr += 1

    def _plan_builds(self, rng: random.Random, pipeline: Pipeline) -> None:
        commits = pipeline.repo.commits
        t = commits[0].at + 5 * MS_MIN
        built = -1
        pointer = 0
        while t < self.now - 10 * MS_MIN:
            while pointer + 1 < len(commits) and commits[pointer + 1].at <= t:
                pointer += 1
            if pointer > built:
                pipeline.builds.append(
                    Build(
                        0,
                        "",
                        pipeline,
                        pointer,
                        built,
                        t,
                        t + rng.randint(5, 60) * 1000,
                        None,
                        None,
                        _below(rng, len(self.people)),
                        _guid(rng),
                    )
                )
                built = pointer
            f = min(max((t - self.start) / self.span, 0.0), 1.0)
            t += int((8 - 5 * f) * MS_HOUR * rng.uniform(0.6, 1.4))

    def _number_builds(self) -> None:
        every = sorted((b for p in self.pipelines for b in p.builds), key=lambda b: (b.queued, b.pipeline.id))
        per_day: dict[tuple[int, str], int] = {}
        for i, build in enumerate(every):
            build.id = 100 + i
            day = to_datetime(build.queued).strftime("%Y%m%d")
            n = per_day[(build.pipeline.id, day)] = per_day.get((build.pipeline.id, day), 0) + 1
            build.number = f"{day}.{n}"
        self.builds = every

    def _plan_deployments(self, rng: random.Random) -> None:
        """Run each YAML build through its stages; one environment takes one deployment at a time.

        Real shapes: a production stage often has two jobs (one record each, one deployment), and a
        failed production stage is sometimes retried (stage attempt 2 of the same run)."""
        pending: list[tuple[int, Environment, Build, str, int, str, int, int, str]] = []
        for pipeline in self.pipelines:
            envs = {e.name: e for e in self.environments if e.project is pipeline.project}
            free_at = {name: 0 for name in pipeline.stages}
            recovering = False
            for n, build in enumerate(pipeline.builds):
                t = build.started + rng.randint(4, 12) * MS_MIN
                if rng.random() < 0.06 and n > 0:  # the build stage itself failed
                    self._finish_build(build, t, "failed")
                    continue
                result = "succeeded"
                f = min(max((build.queued - self.start) / self.span, 0.0), 1.0)
                for stage in pipeline.stages:
                    if stage == "production":
                        if not (recovering or n == 0 or rng.random() < 0.25 + 0.6 * f):
                            break
                        t += int(rng.uniform(0.5, 1 + 30 * (1 - f)) * MS_HOUR)  # waiting for approval
                    elif stage == "staging" and n > 0 and rng.random() < 0.1:
                        break
                    else:
                        t += rng.randint(1, 20) * MS_MIN
                    jobs = ("Deploy", "SmokeTest") if stage == "production" and rng.random() < 0.4 else ("Deploy",)
                    attempt, outcome = 1, ""
                    while True:
                        queued = max(t, free_at[stage])
                        started = queued + rng.randint(5, 90) * 1000
                        finishes = [started + rng.randint(2, 12) * MS_MIN for _ in jobs]
                        finished = max(finishes)
                        if finished >= self.now - MS_MIN:
                            outcome = ""
                            break
                        draw = rng.random()
                        late = queued > self.now - 3 * MS_DAY  # no failure left unrecovered at the end
                        if n == 0 or (stage == "production" and (recovering or attempt > 1 or late)):
                            outcome = "succeeded"
                        elif stage == "production":
                            outcome = "failed" if draw < 0.1 else "canceled" if draw < 0.13 else "succeeded"
                        else:
                            outcome = "failed" if draw < 0.03 else "canceled" if draw < 0.04 else "succeeded"
                        failing = rng.randrange(len(jobs))  # a failure is one job's; the others succeed
                        for j, (job, done) in enumerate(zip(jobs, finishes, strict=True)):
                            result_of_job = outcome if outcome == "canceled" or j == failing else "succeeded"
                            pending.append(
                                (
                                    queued,
                                    envs[stage],
                                    build,
                                    f"deploy_{stage}",
                                    attempt,
                                    job,
                                    started + j * 1000,
                                    done,
                                    result_of_job,
                                )
                            )
                        free_at[stage] = finished
                        t = finished
                        if outcome == "failed" and stage == "production" and rng.random() < 0.5:
                            attempt += 1  # the failed stage is retried in the same run
                            t += rng.randint(10, 90) * MS_MIN
                            continue
                        break
                    if not outcome:
                        result = ""
                        break
                    if stage == "production":
                        recovering = outcome == "failed"
                    if outcome != "succeeded":
                        result = "canceled" if outcome == "canceled" else "failed"
                        break
                if result:
                    self._finish_build(build, t + rng.randint(10, 60) * 1000, result)
        pending.sort(key=lambda p: (p[0], p[1].id, p[6]))
        for i, (queued, env, build, stage, attempt, job, started, finished, outcome) in enumerate(pending):
            record = DeploymentRecord(
                1000 + i, env, build, stage, job, queued, started, finished, outcome, _guid(rng), attempt
            )
            env.records.append(record)
            self.records.append(record)

    def _add_migrated_item(self, rng: random.Random) -> None:
        """A work item migrated from another tracker: created here (imported) two days after the
        commit it asked for reached production, then linked to that commit. Released before it was
        created, it cannot be ordered: every figure leaves it out and counts it as rejected."""
        pipeline = self.pipelines[0]
        shipped = [
            r
            for r in self.records
            if r.build.pipeline is pipeline and r.environment.name == "production" and _status_of_record(r.result)
        ]
        if len(shipped) < 3:
            return
        commit = pipeline.repo.commits[shipped[len(shipped) // 3].build.commit]
        released = min(r.finished for r in shipped if r.build.commit >= commit.index)
        created = released + 2 * MS_DAY
        if created + 2 * MS_DAY >= self.now:
            return
        item = WorkItem(len(self.items) + 1, pipeline.project, "User Story", "Fabrikam\\Web", created, 0)
        events = [
            (created, "New", "New"),
            (created + MS_HOUR, "Active", REASONS["Active"]),
            (created + MS_DAY, "Closed", REASONS["Closed"]),
        ]
        plan = {
            "item": item,
            "events": events,
            "end": created + MS_DAY,
            "commit_times": [],
            "pr": None,
            "commits": [],
            "repo": pipeline.repo,
        }
        self._assemble(rng, plan, [])
        url = f"vstfs:///Git/Commit/{item.project.id}%2F{pipeline.repo.id}%2F{commit.sha}"
        relation = self._relation(url, "Fixed in Commit", f"commit:{commit.sha}")
        self._new_revision(item, created + 2 * MS_DAY, relation=relation)
        commit.items.append(item.id)
        self.migrated.add(item.id)

    def _plan_pull_requests(self, rng: random.Random, plans: list[dict[str, Any]]) -> None:
        """Completed pull requests into ``main`` of every repository.

        - the pull requests work items already link (their ``Pull Request`` ArtifactLinks): merged
          fast-forward, so their commits are the item's commits on ``main`` and the last one is the
          merge commit;
        - squash merges of the commits on ``main`` no work item names: most of the commits that a
          build deployed to production (so the build's ``sourceVersion`` is the pull request's
          merge commit) and some others. Some of those link a work item that has no other link
          (an ArtifactLink added to the item as well, as the service does): that item is released
          only through the pull request.
        """
        linked_items = {
            plan["item"].id: plan
            for plan in plans
            if plan["pr"] is not None and plan["commits"] and plan["item"].relations
        }
        for item_id, plan in linked_items.items():
            repo, number, _at = plan["pr"]
            item = self.items[item_id - 1]
            target = f"adopr:{repo.id.lower()}/{number}"
            commits = sorted((c for c in plan["commits"] if c.repo is repo), key=lambda c: c.index)
            if not commits or not any(r.target == target for r in item.relations):
                continue  # its link lay past the horizon: the pull request was never opened
            head, first = commits[-1], commits[0].at
            closed = head.at
            if closed - first > MS_HOUR:
                created = first + int(rng.uniform(0.1, 0.9) * (closed - first))
            else:  # opened before its only commit was written (a rebase keeps author dates)
                created = closed - int(rng.uniform(0.2, 24) * MS_HOUR)
            pr_commits = [PullRequestCommit(c.sha, c.at, c.author, c.message) for c in commits]
            self.pull_requests.append(
                self._pull_request(rng, repo, number, created, closed, pr_commits, head, False, [item.id])
            )
        shipped = {
            (r.build.pipeline.repo.id, r.build.commit)
            for r in self.records
            if r.environment.name == "production" and _status_of_record(r.result) == "success"
        }
        shipped |= {
            (d.release.build.pipeline.repo.id, d.release.build.commit)
            for d in self.release_deployments
            if d.environment == "Prod" and _status_of_release(d.status, d.operation) == "success"
        }
        unlinked = {
            project.name: [
                i
                for i in self.items
                if i.project is project
                and not i.relations
                and not i.deleted
                and i.latest.state != "Removed"
                and i.id not in self.migrated
            ]
            for project in self.projects
        }
        used: set[int] = set()
        for repo in self.repos:
            for commit in repo.commits[1:]:
                deployed = (repo.id, commit.index) in shipped
                if commit.items or rng.random() >= (0.85 if deployed else 0.4):
                    continue
                number = repo.next_pr
                repo.next_pr += 1
                closed = commit.at
                created = max(closed - int(rng.uniform(1, 96) * MS_HOUR), self.start - MS_DAY)
                author = _below(rng, len(self.people))
                count = _pick(rng, (1, 1, 2, 3, 4, 6, 12, 25))
                times = []
                for _ in range(count):
                    if rng.random() < 0.25:  # pushed while in review
                        times.append(created + int(rng.random() * (closed - created)))
                    else:
                        times.append(created - int(rng.random() * 2 * MS_DAY))
                pr_commits = [
                    PullRequestCommit(_sha(rng), at, author, f"{_pick(rng, _TITLE_VERBS)} {_pick(rng, _TITLE_THINGS)}")
                    for at in sorted(times)
                ]
                items: list[int] = []
                if deployed and rng.random() < 0.6:
                    candidates = [
                        i for i in unlinked[repo.project.name] if i.created < created - MS_DAY and i.id not in used
                    ]
                    if candidates:
                        item = candidates[_below(rng, len(candidates))]
                        used.add(item.id)
                        items.append(item.id)
                        url = f"vstfs:///Git/PullRequestId/{repo.project.id}%2F{repo.id}%2F{number}"
                        relation = self._relation(url, "Pull Request", f"adopr:{repo.id.lower()}/{number}")
                        self._new_revision(item, created + int(rng.uniform(1, 60) * MS_MIN), relation=relation)
                pr = self._pull_request(rng, repo, number, created, closed, pr_commits, commit, True, items, author)
                self.pull_requests.append(pr)
        self.pull_requests.sort(key=lambda pr: (pr.repo.name, pr.id))

    def _pull_request(
        self,
        rng: random.Random,
        repo: Repo,
        number: int,
        created: int,
        closed: int,
        commits: list[PullRequestCommit],
        merge: Commit,
        squash: bool,
        items: list[int],
        author: int | None = None,
    ) -> PullRequest:
        """A pull request's people and threads: drafts, reviewers who comment and vote, and ones
        nobody but its author touched."""
        people = len(self.people)
        author = _below(rng, people) if author is None else author
        title = commits[-1].message if commits else f"{_pick(rng, _TITLE_VERBS)} {_pick(rng, _TITLE_THINGS)}"
        pr = PullRequest(number, repo, title, author, created, closed, commits, merge, squash, items)
        span = max(closed - created, 2)
        if rng.random() < 0.15 and span > 10 * MS_MIN:  # opened as a draft, published later
            pr.published = created + int(rng.uniform(0.05, 0.5) * span)
        ready = pr.ready
        others = [p for p in range(people) if p != author]
        reviewers = rng.sample(others, _pick(rng, (0, 1, 1, 2, 3)))
        threads = pr.threads

        def thread(kind: str, at: int, person: int, text: str = "", vote: int = 0) -> PullRequestThread:
            made = PullRequestThread(len(threads) + 1, kind, min(max(at, created), closed), person, text, vote)
            threads.append(made)
            return made

        if reviewers:
            thread("reviewers", created + 1000, author)
        if pr.published is not None:
            thread("draft", pr.published, author)
        thread("merge", created + 2000, author)
        window = max(closed - ready, 2)
        if rng.random() < 0.2 or not reviewers:
            # nobody else looked: perhaps a note from its author, perhaps its author's own approval
            if rng.random() < 0.5:
                thread("text", ready + int(rng.random() * window), author, "Ready to go.")
            if rng.random() < 0.3:
                thread("vote", ready + int(rng.random() * window), author, vote=10)
        else:
            for reviewer in reviewers:
                at = ready + int(rng.uniform(0.05, 0.8) * window)
                if rng.random() < 0.6:
                    made = thread("text", at, reviewer, "Should we add a comment about what this value means?")
                    if rng.random() < 0.1:
                        made.deleted = True  # deleted by its writer: reviews nothing
                    if rng.random() < 0.5:
                        reply = min(at + int(rng.uniform(1, 120) * MS_MIN), closed)
                        made.replies.append((reply, author, "Done."))
                vote = _pick(rng, (10, 10, 5, -5))
                thread("vote", at + int(rng.uniform(0.0, 0.2) * window), reviewer, vote=vote)
                pr.reviewers.append((reviewer, vote))
        thread("status", closed, author)
        threads.sort(key=lambda t: (t.at, t.id))
        for i, made in enumerate(threads):
            made.id = 100 * number + i + 1
        return pr

    def _finish_build(self, build: Build, at: int, result: str) -> None:
        if at < self.now - MS_MIN:
            build.finished = at
            build.result = result

    def _plan_releases(self, rng: random.Random) -> None:
        pending: list[tuple[int, Release, int, str, int, int, str, str]] = []
        for definition in self.release_definitions:
            free_at = {name: 0 for _, name in definition.environments}
            recovering = False
            for build in definition.pipeline.builds:
                if build.finished is None or build.result == "failed":
                    continue
                created = build.finished + rng.randint(1, 5) * MS_MIN
                release = Release(0, "", definition, build, created, _below(rng, len(self.people)))
                # the first release goes everywhere: a first deployment then contains the whole
                # history, which is also what its build's changes are (see _plan_deployments)
                first = not definition.releases
                definition.releases.append(release)
                t = created
                for env_id, name in definition.environments:
                    prod = name == "Prod"
                    if prod:
                        f = min(max((build.queued - self.start) / self.span, 0.0), 1.0)
                        if not (recovering or first or rng.random() < 0.4 + 0.4 * f):
                            break
                        t += int(rng.uniform(1, 24) * MS_HOUR)
                    queued = max(t + rng.randint(1, 5) * MS_MIN, free_at[name])
                    started = queued + rng.randint(10, 120) * 1000
                    completed = started + rng.randint(3, 15) * MS_MIN
                    if completed >= self.now - MS_MIN:
                        break
                    draw = rng.random()
                    if (prod and recovering) or first:
                        status = "succeeded"
                    else:
                        failed = 0.1 if prod else 0.05
                        status = "failed" if draw < failed else "notDeployed" if draw < 0.13 else "succeeded"
                    operation = {"succeeded": "Approved", "failed": "PhaseFailed", "notDeployed": "Canceled"}[status]
                    if status == "failed" and rng.random() < 0.5:
                        status = "notDeployed"  # a phase failed: nothing deployed, a failed deployment
                    free_at[name] = completed
                    pending.append((queued, release, env_id, name, started, completed, status, operation))
                    t = completed
                    if prod:
                        recovering = operation == "PhaseFailed"
                    if status != "succeeded":
                        break
        self.releases = sorted((r for d in self.release_definitions for r in d.releases), key=lambda r: r.created)
        env_ids = 500
        for i, release in enumerate(self.releases):
            release.id = 40 + i
            release.name = f"Release-{i + 1}"
            for _env_id, name in release.definition.environments:
                env_ids += 1
                release.environment_ids[name] = env_ids
        pending.sort(key=lambda p: p[0])
        for i, (queued, release, env_id, name, started, completed, status, operation) in enumerate(pending):
            deployment = ReleaseDeployment(
                300 + i,
                release,
                name,
                env_id,
                status,
                operation,
                queued,
                started,
                completed,
                _below(rng, len(self.people)),
            )
            release.deployments.append(deployment)
            self.release_deployments.append(deployment)

    def _malformed_targets(self, rng: random.Random, plans: list[dict[str, Any]], count: int) -> dict[int, list[str]]:
        if count <= 0:
            return {}
        eligible = [p["item"].id for p in plans if len(p["events"]) >= 2 and p["events"][1][0] - p["events"][0][0] > 10]
        if not eligible:
            return {}
        chosen = rng.sample(eligible, min(count, len(eligible)))
        targets: dict[int, list[str]] = {}
        for n in range(count):
            targets.setdefault(chosen[n % len(chosen)], []).append(DEFECTS[n % len(DEFECTS)])
        return targets

    def _assemble(self, rng: random.Random, plan: dict[str, Any], defects: list[str]) -> None:
        """Turn an item's planned events into numbered revisions with strictly increasing times."""
        item: WorkItem = plan["item"]
        project = item.project
        horizon = self.now - MS_MIN
        events: list[tuple[int, int, Any]] = [(t, 0, (s, r)) for t, s, r in plan["events"]]
        item_links = bool(plan["commits"]) or plan["pr"] is not None
        for commit in plan["commits"]:
            url = f"vstfs:///Git/Commit/{project.id}%2F{commit.repo.id}%2F{commit.sha}"
            events.append(
                (
                    min(commit.at + MS_MIN, horizon - 1),
                    2,
                    self._relation(url, "Fixed in Commit", f"commit:{commit.sha}"),
                )
            )
        if plan["pr"] is not None:
            repo, pr_id, at = plan["pr"]
            if at < horizon:
                url = f"vstfs:///Git/PullRequestId/{project.id}%2F{repo.id}%2F{pr_id}"
                events.append((at, 2, self._relation(url, "Pull Request", f"adopr:{repo.id.lower()}/{pr_id}")))
        if plan["commits"] and rng.random() < 0.25:
            build = self._first_build_with(plan["repo"], plan["commits"][0].index)
            if build is not None and build.finished is not None and build.finished < horizon:
                events.append(
                    (
                        build.finished + 1000,
                        2,
                        self._relation(f"vstfs:///Build/Build/{build.id}", "Integrated in build", f"build:{build.id}"),
                    )
                )
        for _ in range(_pick(rng, (0, 1, 1, 2, 2, 3))):
            at = item.created + 1 + int(rng.random() * max(plan["end"] - item.created - 1, 1))
            events.append((at, 1, _below(rng, 4)))
        if not item_links and events[-1][0] < horizon and rng.random() < 0.006:
            last = max(t for t, _, _ in events)
            at = last + int(rng.uniform(1, 20) * MS_DAY)
            if at < horizon:
                events.append((at, 3, None))
        events.sort(key=_by_time_kind)
        if defects:
            first, second = events[0][0], events[1][0]
            for n, defect in enumerate(defects):
                events.append((first + (second - first) * (n + 1) // (len(defects) + 1), 4, defect))
            events.sort(key=_by_time_kind)
        # the revision loop runs ~7 times per item: plain locals, no per-revision dicts
        state, reason, assigned, priority = "New", "New", -1, 2
        iteration, tags = self._iteration(project, item.created), ""
        title = f"{_pick(rng, _TITLE_VERBS)} {_pick(rng, _TITLE_THINGS)}"
        activated: int | None = None
        resolved: int | None = None
        closed: int | None = None
        state_changed, links, last = item.created, 0, item.created - 1
        people = len(self.people)
        revs = item.revs
        for at, kind, payload in events:
            at = at if at > last else last + 1
            last = at
            added: tuple[Relation, ...] = ()
            deleted = False
            defect = None
            by = int(rng.random() * people) if revs else item.created_by
            if kind == 0:
                state, reason = payload
                state_changed = at
                if state == "New":
                    activated = resolved = closed = None
                elif state in ("Active", "In Review"):
                    if reason == "Reactivated" or activated is None:
                        activated = at
                    resolved = closed = None
                    if assigned < 0:
                        assigned = by
                elif state == "Resolved":
                    resolved, closed = at, None
                else:
                    closed = at
            elif kind == 1:
                if payload == 0:
                    priority = 1 + _below(rng, 4)
                elif payload == 1:
                    assigned = _below(rng, people)
                elif payload == 2:
                    iteration = self._iteration(project, at + 14 * MS_DAY)
                else:
                    tags = _pick(rng, _TAGS)
            elif kind == 2:
                payload.added_at = at
                item.relations.append(payload)
                links += 1
                added = (payload,)
            elif kind == 3:
                deleted = True
            else:
                defect = payload
            revs.append(
                Revision(
                    item,
                    len(revs) + 1,
                    at,
                    state,
                    reason,
                    by,
                    assigned,
                    priority,
                    iteration,
                    tags,
                    title,
                    activated,
                    resolved,
                    closed,
                    state_changed,
                    links,
                    added,
                    deleted,
                    defect,
                )
            )
        self.items.append(item)

    def _relation(self, url: str, name: str, target: str) -> Relation:
        self._relation_ids += 1
        return Relation(url, name, 0, target, 60000 + self._relation_ids)

    @staticmethod
    def _apply_state(snapshot: dict[str, Any], state: str, reason: str, at: int) -> None:
        snapshot.update(state=state, reason=reason, state_changed=at)
        if state == "New":
            snapshot.update(activated=None, resolved=None, closed=None)
        elif state in ("Active", "In Review"):
            if reason == "Reactivated" or snapshot["activated"] is None:
                snapshot["activated"] = at
            snapshot.update(resolved=None, closed=None)
        elif state == "Resolved":
            snapshot["resolved"] = at
            snapshot["closed"] = None
        elif state in ("Closed", "Removed"):
            snapshot["closed"] = at

    def _iteration(self, project: Project, at: int) -> str:
        return f"{project.name}\\Sprint {max((at - self.start) // (14 * MS_DAY) + 1, 1)}"

    def _first_build_with(self, repo: Repo, commit_index: int) -> Build | None:
        pipeline = self.pipeline_of_repo[repo.id]
        keys = self._build_keys.get(pipeline.id)
        if keys is None:
            keys = self._build_keys[pipeline.id] = [b.commit for b in pipeline.builds]
        i = bisect.bisect_left(keys, commit_index)
        return pipeline.builds[i] if i < len(pipeline.builds) else None

    def _build_log(self) -> None:
        # items are in id order and revisions in rev order: a stable sort on time alone gives
        # (time, id, rev) order, the watermark order of the real service
        revisions = [r for item in self.items for r in item.revs]
        codes = {(p.name, t): i for i, (p, t) in enumerate((p, t) for p in self.projects for t in WORK_ITEM_TYPES)}
        times = np.fromiter((r.at for r in revisions), dtype=np.int64, count=len(revisions))
        kinds = np.fromiter(
            (codes[(r.item.project.name, r.item.type)] for r in revisions), dtype=np.int16, count=len(revisions)
        )
        order = np.argsort(times, kind="stable")
        self.log = [revisions[i] for i in order.tolist()]
        self.log_times = times[order].tolist()
        for position, revision in enumerate(self.log, start=1):
            revision.watermark = position
        kinds = kinds[order]
        index: dict[tuple[str, str], list[int]] = {}
        for (project, type_), code in codes.items():
            positions = np.flatnonzero(kinds == code)
            if len(positions):
                index[(project.lower(), type_.lower())] = positions.tolist()
        self.log_index = index

    def _append_log(self, revision: Revision) -> None:
        self.log.append(revision)
        self.log_times.append(revision.at)
        revision.watermark = len(self.log)
        position = len(self.log) - 1
        key = (revision.item.project.name.lower(), revision.item.type.lower())
        self.log_index.setdefault(key, []).append(position)

    def _index_relations(self, item: WorkItem, relations: list[Relation]) -> None:
        if self._artifact_index is not None:
            for relation in relations:
                self._artifact_index.setdefault(relation.url.lower(), []).append(item.id)

    @property
    def artifact_index(self) -> dict[str, list[int]]:
        """Artifact URI (lower case) -> ids of the work items linking it; built on first use."""
        if self._artifact_index is None:
            index: dict[str, list[int]] = {}
            for item in self.items:
                for relation in item.relations:
                    index.setdefault(relation.url.lower(), []).append(item.id)
            self._artifact_index = index
        return self._artifact_index

    # ---------------------------------------------------------------------------------------
    # lookups

    def project(self, key: str | None) -> Project | None:
        return self.project_by_key.get(key.lower()) if key else None

    def item(self, item_id: int) -> WorkItem | None:
        return self.items[item_id - 1] if 1 <= item_id <= len(self.items) else None

    def build(self, build_id: int) -> Build | None:
        i = build_id - 100
        return self.builds[i] if 0 <= i < len(self.builds) else None

    def commits_between(self, pipeline: Pipeline, after: int, upto: int) -> list[Commit]:
        """Commits reachable from ``upto`` and not from ``after`` (indexes into the repo's main)."""
        return pipeline.repo.commits[max(after, -1) + 1 : upto + 1]

    def build_work_items(self, commits: list[Commit]) -> list[int]:
        seen: dict[int, None] = {}
        for commit in commits:
            for item_id in commit.items:
                seen[item_id] = None
        return list(seen)

    def anchors(self) -> list[tuple[int, datetime, datetime | None]]:
        fabrikam = [i for i in self.items if i.project is self.projects[0]]
        out = []
        for item in fabrikam[::3]:
            done = completed_at(item)
            out.append((item.id, to_datetime(item.created), to_datetime(done) if done is not None else None))
        return out

    # ---------------------------------------------------------------------------------------
    # ground truth

    def truth(self, production_environments: tuple[str, ...] = ("production", "Prod")) -> dict[str, Any]:
        work_items = [self._item_truth(item) for item in self.items]
        deployments, changes, links = self._deployment_truth(production_environments)
        builds = [
            {
                "id": b.id,
                "number": b.number,
                "definition": b.pipeline.name,
                "project": b.pipeline.project.name,
                "sha": b.sha,
                "status": b.status,
                "result": b.result,
                "queued_at": truth_time(b.queued),
                "started_at": truth_time(b.started),
                "finished_at": truth_time(b.finished) if b.finished is not None else None,
                "commits": [c.sha for c in self.commits_between(b.pipeline, b.prev_commit, b.commit)],
                "work_items": [
                    f"ado:{i}" for i in self.build_work_items(self.commits_between(b.pipeline, b.prev_commit, b.commit))
                ],
            }
            for b in self.builds
        ]
        rejected = [
            {
                "source": "boards",
                "record_id": f"{r.item.id}:{r.rev}",
                "reason": r.defect,
                "project": r.item.project.name,
            }
            for r in self.log
            if r.defect is not None
        ]
        return {
            "work_items": work_items,
            "changes": changes,
            "deployments": deployments,
            "builds": builds,
            "links": links,
            "rejected": rejected,
            "pull_requests": [self._pull_request_truth(pr) for pr in self.pull_requests],
        }

    def _pull_request_truth(self, pr: PullRequest) -> dict[str, Any]:
        """A completed pull request as a source named ``repos`` would store it (a ``pull_request``
        Change), with the work items it links and what it is made of."""
        review = pr.first_review()
        shas = list(dict.fromkeys([c.sha for c in pr.commits] + [pr.merge.sha]))
        return {
            "source": "repos",
            "native_id": f"{pr.repo.id.lower()}/{pr.id}",
            "ref": f"adopr:{pr.repo.id.lower()}/{pr.id}",
            "project": pr.repo.project.name,
            "repository": pr.repo.name,
            "repository_id": pr.repo.id,
            "number": pr.id,
            "service": pr.repo.name,
            "kind": "pull_request",
            "first_commit_at": truth_time(min(c.at for c in pr.commits)),
            "created_at": truth_time(pr.created),
            "merged_at": truth_time(pr.closed),
            "commits": shas,
            "merge_commit": pr.merge.sha,
            "squash": pr.squash,
            "draft": pr.published is not None,
            "ready_at": truth_time(pr.ready),
            "first_review_at": truth_time(review) if review is not None else None,
            "work_items": [f"ado:{i}" for i in pr.items],
        }

    def _item_truth(self, item: WorkItem) -> dict[str, Any]:
        history = []
        for r in item.revs:
            if r.defect is not None:
                continue
            category = "Removed" if r.deleted else item.project.category(item.type, r.state)
            history.append({"seq": r.rev, "at": truth_time(r.at), "state": r.state, "category": category})
        return {
            "native_id": str(item.id),
            "ref": f"ado:{item.id}",
            "project": item.project.name,
            "team": item.team,
            "type": item.type,
            "created_at": truth_time(item.created),
            "deleted": item.deleted,
            # created after what it asked for was released (a migrated item): figures leave it out
            # and count it in cycletime_records_rejected_total
            "migrated": item.id in self.migrated,
            "history": history,
            "links": sorted({rel.target for rel in item.relations}),
        }

    def _deployment_truth(
        self, production: tuple[str, ...]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        deployments: list[dict[str, Any]] = []
        delivered: dict[tuple[str, str], Commit] = {}
        links: dict[tuple[int, int], str] = {}
        last_good: dict[tuple[str, str, str], int] = {}

        def add(
            native_id: str,
            service: str,
            project: Project,
            env: str,
            status: str,
            started: int,
            finished: int,
            build: Build,
            jobs: int = 1,
        ) -> None:
            key = (project.name, service, env)
            # contents are read only where a figure uses them: successful production deployments;
            # the others are counted, not opened (they contain their run only)
            opened = status == "success" and env in production
            commits = self.commits_between(build.pipeline, last_good.get(key, -1), build.commit) if opened else []
            if status == "success":
                last_good[key] = max(last_good.get(key, -1), build.commit)
            for commit in commits:
                delivered[(service, commit.sha)] = commit
            for item_id in self.build_work_items(commits):
                item = self.item(item_id)
                if item is not None and not item.deleted:
                    links[(item_id, build.id)] = project.name
            deployments.append(
                {
                    "source": "pipelines",
                    "native_id": native_id,
                    "service": service,
                    "environment": env,
                    "production": env in production,
                    "status": status,
                    "started_at": truth_time(started),
                    "finished_at": truth_time(finished),
                    "sha": build.sha,
                    "project": project.name,
                    "contains": sorted([f"commit:{c.sha}" for c in commits] + [f"build:{build.id}"]),
                    # environment deployment records (one per job) this deployment is made of
                    "jobs": jobs,
                }
            )

        # environment records are per job: the jobs of one stage attempt are one deployment,
        # failed if any job failed, from the earliest start to the latest finish
        attempts: dict[str, list[DeploymentRecord]] = {}
        for r in self.records:
            attempts.setdefault(deployment_id(r), []).append(r)
        events: list[tuple[int, int, Any]] = [(max(r.finished for r in jobs), 0, jobs) for jobs in attempts.values()]
        events += [(d.completed, 1, d) for d in self.release_deployments]
        events.sort(key=lambda e: (e[0], e[1], e[2][0].id if e[1] == 0 else e[2].id))
        for _finished, kind, record in events:
            if kind == 0:
                jobs = record
                statuses = {_status_of_record(r.result) for r in jobs}
                status = "failure" if "failure" in statuses else "success" if "success" in statuses else None
                if status:
                    done = [r for r in jobs if _status_of_record(r.result)]
                    first = jobs[0]
                    add(
                        deployment_id(first),
                        first.build.pipeline.name,
                        first.environment.project,
                        first.environment.name,
                        status,
                        min(r.started for r in done),
                        max(r.finished for r in done),
                        first.build,
                        jobs=len(jobs),
                    )
            else:
                status = _status_of_release(record.status, record.operation)
                if status:
                    definition = record.release.definition
                    add(
                        f"release:{record.id}",
                        definition.name,
                        definition.project,
                        record.environment,
                        status,
                        record.started,
                        record.completed,
                        record.release.build,
                    )
        changes = [
            {
                "source": "pipelines",
                "native_id": commit.sha,
                "ref": f"commit:{commit.sha}",
                "service": service,
                "kind": "commit",
                "first_commit_at": truth_time(commit.at),
                "merged_at": truth_time(commit.at),
                "commits": [commit.sha],
                "project": commit.repo.project.name,
            }
            for (service, _sha_), commit in sorted(delivered.items(), key=lambda kv: (kv[0][0], kv[1].at, kv[1].sha))
        ]
        link_truth = [
            {"source": "pipelines", "work_item": f"ado:{item_id}", "target": f"build:{build_id}", "project": project}
            for (item_id, build_id), project in sorted(links.items())
        ]
        return deployments, changes, link_truth

    # ---------------------------------------------------------------------------------------
    # new activity

    def add_activity(self, rng: random.Random, now: datetime) -> dict[str, Any]:
        """Work moves on at ``now``: revisions, a new item, commits, a run deployed to production."""
        t = to_ms(now)
        floor = max(self.now, self.log_times[-1] if self.log_times else 0) + 60 * MS_MIN
        t = max(t, floor)  # activity always lands after everything already generated
        self.now = t
        new_revisions: list[Revision] = []
        summary: dict[str, Any] = {
            "revisions": [],
            "new_items": [],
            "completed": [],
            "commits": [],
            "builds": [],
            "deployments": [],
            "release_deployments": [],
            "pull_requests": [],
        }
        open_items = [
            i
            for i in self.items
            if not i.deleted and i.latest.state not in ("Closed", "Removed") and i.latest.defect is None
        ]
        moves = rng.sample(open_items, min(3, len(open_items)))
        pipeline = rng.choice([p for p in self.pipelines if p.stages])
        offset = 40 * MS_MIN
        for item in moves:
            nxt = {
                "New": "Active",
                "Active": rng.choice(("Resolved", "Closed")),
                "In Review": "Closed",
                "Resolved": "Closed",
            }[item.latest.state]
            new_revisions.append(self._new_revision(item, t - offset, state=nxt))
            offset -= MS_MIN
            if nxt == "Closed":
                summary["completed"].append(item.id)
        project = rng.choice(self.projects)
        created = t - 45 * MS_MIN
        item = WorkItem(
            len(self.items) + 1,
            project,
            rng.choice(WORK_ITEM_TYPES),
            rng.choices(project.areas, project.area_weights)[0],
            created,
            _below(rng, len(self.people)),
        )
        item.revs.append(
            Revision(
                item,
                1,
                created,
                "New",
                "New",
                item.created_by,
                -1,
                2,
                self._iteration(project, created),
                "",
                f"{_pick(rng, _TITLE_VERBS)} {_pick(rng, _TITLE_THINGS)}",
                None,
                None,
                None,
                created,
                0,
            )
        )
        self.items.append(item)
        new_revisions.append(item.revs[0])
        summary["new_items"].append(item.id)
        # commits on the chosen pipeline's repo, one linked to an item of its project
        repo = pipeline.repo
        linkable = [i for i in moves if i.project is pipeline.project and not i.deleted]
        for n in range(rng.randint(1, 3)):
            at = t - 35 * MS_MIN + n * 1000
            target = linkable[0] if (n == 0 and linkable) else None
            message = f"{_pick(rng, _TITLE_VERBS)} {_pick(rng, _TITLE_THINGS)}" + (f" #{target.id}" if target else "")
            commit = Commit(_sha(rng), at, _below(rng, len(self.people)), message, repo, len(repo.commits))
            repo.commits.append(commit)
            summary["commits"].append(commit.sha)
            if target is not None:
                commit.items.append(target.id)
                url = f"vstfs:///Git/Commit/{target.project.id}%2F{repo.id}%2F{commit.sha}"
                relation = self._relation(url, "Fixed in Commit", f"commit:{commit.sha}")
                new_revisions.append(self._new_revision(target, at + MS_MIN, relation=relation))
        prev = pipeline.builds[-1].commit if pipeline.builds else -1
        queued = t - 30 * MS_MIN
        day = to_datetime(queued).strftime("%Y%m%d")
        number = f"{day}.{sum(1 for b in pipeline.builds if b.number.startswith(day + '.')) + 1}"
        build = Build(
            self.builds[-1].id + 1 if self.builds else 100,
            number,
            pipeline,
            len(repo.commits) - 1,
            prev,
            queued,
            queued + 20_000,
            None,
            None,
            _below(rng, len(self.people)),
            _guid(rng),
        )
        pipeline.builds.append(build)
        self.builds.append(build)
        envs = {e.name: e for e in self.environments if e.project is pipeline.project}
        stage_t = queued + 5 * MS_MIN
        for stage in pipeline.stages:
            record = DeploymentRecord(
                (self.records[-1].id + 1) if self.records else 1000,
                envs[stage],
                build,
                f"deploy_{stage}",
                "Deploy",
                stage_t,
                stage_t + 10_000,
                stage_t + 5 * MS_MIN,
                "succeeded",
                _guid(rng),
            )
            envs[stage].records.append(record)
            self.records.append(record)
            summary["deployments"].append(deployment_id(record))
            stage_t += 7 * MS_MIN
        build.finished = stage_t
        build.result = "succeeded"
        summary["builds"].append(build.id)
        # the build's commit was a pull request completed with a squash merge (Azure Repos reads it)
        merge = repo.commits[-1]
        author = _below(rng, len(self.people))
        created = merge.at - int(rng.uniform(1, 30) * MS_HOUR)
        pr_commits = [
            PullRequestCommit(_sha(rng), created - int(rng.random() * MS_DAY), author, merge.message)
            for _ in range(rng.randint(1, 3))
        ]
        pr_commits.sort(key=lambda c: c.at)
        pr = self._pull_request(rng, repo, repo.next_pr, created, merge.at, pr_commits, merge, True, [], author)
        repo.next_pr += 1
        self.pull_requests.append(pr)
        self.pull_requests.sort(key=lambda made: (made.repo.name, made.id))
        summary["pull_requests"].append(f"{repo.name}!{pr.id}")
        new_revisions.sort(key=lambda r: (r.at, r.item.id, r.rev))
        for revision in new_revisions:
            self._append_log(revision)
            summary["revisions"].append(f"{revision.item.id}:{revision.rev}")
            if revision.added:
                self._index_relations(revision.item, list(revision.added))
        return summary

    def _new_revision(
        self, item: WorkItem, at: int, state: str | None = None, relation: Relation | None = None
    ) -> Revision:
        prev = item.latest
        at = max(at, prev.at + 1)
        snapshot = dict(
            state=prev.state,
            reason=prev.reason,
            assigned=prev.assigned,
            priority=prev.priority,
            iteration=prev.iteration,
            tags=prev.tags,
            title=prev.title,
            activated=prev.activated,
            resolved=prev.resolved,
            closed=prev.closed,
            state_changed=prev.state_changed,
            links=prev.links,
        )
        if state is not None:
            self._apply_state(snapshot, state, REASONS[state], at)
        added: tuple[Relation, ...] = ()
        if relation is not None:
            relation.added_at = at
            item.relations.append(relation)
            snapshot["links"] += 1
            added = (relation,)
        revision = Revision(item, prev.rev + 1, at, by=prev.by, added=added, **snapshot)
        item.revs.append(revision)
        return revision


def completed_at(item: WorkItem) -> int | None:
    """The last transition into Completed, if the item is Completed now (docs/definitions.md)."""
    revs = [r for r in item.revs if r.defect is None]
    if not revs or item.deleted or item.project.category(item.type, revs[-1].state) != "Completed":
        return None
    done = None
    previous = None
    for r in revs:
        category = item.project.category(item.type, r.state)
        if category == "Completed" and previous != "Completed":
            done = r.at
        previous = category
    return done


def _below(rng: random.Random, n: int) -> int:
    """``randrange(n)`` without its overhead: generation draws millions of these."""
    return int(rng.random() * n)


def _pick(rng: random.Random, seq: Any) -> Any:
    return seq[int(rng.random() * len(seq))]


def _weighted(rng: random.Random, seq: Any, weights: Any) -> Any:
    draw = rng.random()
    for value, weight in zip(seq, weights, strict=True):
        draw -= weight
        if draw < 0:
            return value
    return seq[-1]


def _by_time_kind(event: tuple[int, int, Any]) -> tuple[int, int]:
    return event[0], event[1]


def _sha(rng: random.Random) -> str:
    return f"{rng.getrandbits(160):040x}"
