"""Azure Repos: completed pull requests, their commits, first review and linked work items.

One stream per repository, ``prs:<repositoryId>``, whose watermark is the latest ``closedDate`` up
to which every completed pull request is stored. A pass lists the repository's pull requests
completed since the watermark minus ``overlap`` (``searchCriteria.status=completed``,
``searchCriteria.queryTimeRangeType=closed``, ``searchCriteria.minTime``; the first sync starts at
the history horizon), ``$top``/``$skip`` pages (this list has no continuation token) read to the
end because no order is documented. Pull requests already stored unchanged cost nothing more, so an
idle pass is one request per repository (plus the repository list, read once an hour). Each new
one is opened in ``closedDate`` order with three reads, run ahead on the organisation's worker
pool: its commits (``pullRequests/{id}/commits``, continuation token), its threads and its work
items. Batches are committed with the watermark they reach, so a crash resumes after the last
batch written and a pull request is never skipped. The repository list is kept in the stream
``repositories`` (``[id, name]`` pairs, written when it changes): with shards, the shard owning the
listing reads it and the others take it from the store (docs/sharding.md).

What a pull request becomes (docs/definitions.md):

- ``first_commit_at``: the earliest *author* date of its commits;
- ``merged_at``: ``closedDate``; ``commits``: its commits and ``lastMergeCommit`` (the commit the
  target branch got, what an Azure Pipelines build of that branch has as ``sourceVersion``), so a
  production deployment of that build delivers the pull request and the work items linked to it;
- ``ready_at``: ``creationDate``, or, for a pull request created as a draft, when it was published
  (the first draft system thread, ``CodeReviewThreadType: IsDraftUpdated``, saying
  ``CodeReviewIsDraft: False``; observed on the service, not in the reference);
- ``first_review_at``: the first comment by someone other than its creator (a system comment is
  nobody's), or the first vote by someone else (``VoteUpdate`` system threads, dated by their
  ``publishedDate``: reviewers' votes carry no date), whichever is earlier; None if nobody reviewed.

Linked work items (``pullRequests/{id}/workitems``) become links ``ado:<id>`` → ``adopr:<repo>/<id>``.
"""

from __future__ import annotations

import json
import logging
import re
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal
from urllib.parse import quote

from pydantic import Field, field_validator

from collector.config_types import Duration
from collector.errors import Rejected
from collector.model import Batch, Change, Link, ado_pr_ref, ado_ref
from collector.sources.azure_common import (
    AzureDevOps,
    AzureSourceConfig,
    Interrupted,
    NotFound,
    ReadPool,
    azure_time,
    count_problem,
    format_time,
    is_count,
    list_value,
    safe_time,
)
from collector.sources.base import (
    MAX_PAGES,
    RECORD_ERRORS,
    PaginationError,
    RecordGuard,
    Source,
    SourceContext,
    SourceStore,
    SyncReport,
    entry_label,
)
from collector.sources.registry import register

log = logging.getLogger(__name__)

#: pull requests per page of the completed list (``$top``; the service caps what it returns)
PRS_TOP = 100
#: commits per ``pullRequests/{id}/commits`` page
COMMITS_TOP = 500
#: pull requests committed per transaction
COMMIT_EVERY = 20
#: pull requests opened ahead of the one being stored, per request in flight
READ_AHEAD = 4
#: how long the project's repository list is trusted before it is read again
REPOSITORIES_TTL = timedelta(hours=1)
#: sharded (docs/sharding.md): the project's repository list is a scope of its own; the shard owning
#: it reads the list and stores it (as ``REPOSITORIES_STREAM``), the others read the stored list
LISTING_SCOPE = "*"
REPOSITORIES_STREAM = "repositories"
#: how long a shard waits for the listing's shard to store the list the first time
LISTING_WAIT = 120.0
#: longest name we keep (a repository name is at most 64 characters in Azure Repos)
MAX_NAME = 255
_SHA = re.compile(r"[0-9a-fA-F]{40}")
_GUID = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}")


class AzureReposConfig(AzureSourceConfig):
    kind: Literal["azure_repos"]
    repositories: list[str] = Field(
        default=["*"],
        min_length=1,
        description='Repository names of the project, or ["*"] for every repository of the project.',
    )
    overlap: Duration = Field(
        default=timedelta(hours=1), description="Re-read window behind the watermark (closedDate)."
    )

    @field_validator("repositories")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not name.strip():
                raise ValueError("a repository name is empty")
            if name != "*" and "*" in name:
                raise ValueError(f"{name!r}: only a lone * (every repository) is a pattern")
        if "*" in value and len(value) > 1:
            raise ValueError('"*" already means every repository; list names or "*", not both')
        return value


@dataclass(frozen=True, slots=True)
class Repository:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class PullRequest:
    """A completed pull request from the list, before its commits, threads and work items are read."""

    repository: Repository
    number: int
    created_at: datetime
    closed_at: datetime
    author: str | None  # createdBy.id
    merge_commit: str | None

    @property
    def native_id(self) -> str:
        return f"{self.repository.id}/{self.number}"

    @property
    def ref(self) -> str:
        return ado_pr_ref(self.repository.id, self.number)


#: the raw answers about one pull request: commits, threads, work item refs
Details = tuple[list[Any], list[Any], list[Any]]


@register
class AzureReposSource(Source):
    kind: ClassVar[str] = "azure_repos"
    config_model = AzureReposConfig
    config: AzureReposConfig
    many_scopes = True

    def __init__(self, config: AzureReposConfig, ctx: SourceContext) -> None:
        super().__init__(config, ctx)
        self.api = AzureDevOps(
            self.name,
            config.organization_url,
            config.project,
            config.token,
            ctx,
            max_concurrency=config.max_concurrency,
        )
        self._pool = ReadPool(1, self.name)
        self._repositories: list[Repository] | None = None
        self._repositories_read_at: datetime | None = None
        #: native id → closedDate of what the store holds (read once per pass)
        self._known: dict[str, datetime | None] = {}
        self._logged: set[tuple[str, str]] = set()
        self.guard = RecordGuard(self.name)

    # -- the pass ------------------------------------------------------------------------------------
    def sync(self, store: SourceStore) -> SyncReport:
        report = SyncReport()
        self._known = {c.native_id: c.merged_at for c in store.changes(self.name)}
        self._pool = ReadPool(self.config.max_concurrency, self.name, self.ctx.should_stop)
        claimed = None
        try:
            repositories = self._selected(store, report)
            # sharded: this shard's repositories, each while its scope is claimed (docs/sharding.md)
            claimed = self.claimed(
                ((self.scope_of(self.config, r.name), r) for r in repositories), problems=report.problems
            )
            for repository in claimed:
                if self.ctx.should_stop():
                    break
                try:
                    self._sync_repository(store, report, repository)
                except (Interrupted, PaginationError):
                    raise
                except NotFound as exc:
                    # deleted since the list was read: read the list again next pass
                    self._repositories_read_at = None
                    report.problems.append(f"repository {repository.name}: {exc}")
        except Interrupted:
            if not self.ctx.should_stop():
                raise
            log.info("source=%s stopped mid-batch; the next pass reads it again", self.name)
        finally:
            if claimed is not None:
                claimed.close()
            self._pool.close()
            self._pool = ReadPool(1, self.name)
        return report

    @classmethod
    def scope_of(cls, config: Any, value: str) -> str:
        """One scope per repository: its name (the ``service`` label), case-insensitive as Azure's are."""
        return value.lower()

    # -- repositories -------------------------------------------------------------------------------------
    def _selected(self, store: SourceStore, report: SyncReport) -> list[Repository]:
        """The configured repositories, from the project's list (one request, cached an hour).

        Sharded, one shard reads the list (the one owning ``LISTING_SCOPE``) and stores it; the
        others take the stored list each pass, so N shards ask for it as often as one replica."""
        now = self.ctx.now()
        if not self.ctx.owns(LISTING_SCOPE):
            listed = self._listed_by_other(store)
        elif (
            self._repositories is None
            or self._repositories_read_at is None
            or now - self._repositories_read_at > REPOSITORIES_TTL
        ):
            with self.ctx.claim(LISTING_SCOPE) as mine:
                if mine:
                    listed = self._repositories = self._list_repositories()
                    self._repositories_read_at = now
                    stored = json.dumps([[r.id, r.name] for r in listed])
                    if store.watermark(self.name, REPOSITORIES_STREAM) != stored:
                        store.set_watermark(self.name, REPOSITORIES_STREAM, stored)
                else:  # a twin replica lists it now, or just did
                    listed = self._listed_by_other(store)
        else:
            listed = self._repositories
        wanted = self.config.repositories
        if wanted == ["*"]:
            return list(listed)
        by_name = {r.name.casefold(): r for r in listed}
        out = []
        for name in wanted:
            found = by_name.get(name.casefold())
            if found is None:
                report.problems.append(f"repository {name!r} not found in project {self.config.project!r}")
                self._repositories_read_at = None  # perhaps created since: ask again next pass
            else:
                out.append(found)
        return out

    def _listed_by_other(self, store: SourceStore) -> list[Repository]:
        """Sharded: the project's repositories as the listing's shard stored them, waiting for its
        first list (up to ``LISTING_WAIT``); none yet: none this pass."""
        waited = 0.0
        while True:
            stored = store.watermark(self.name, REPOSITORIES_STREAM)
            if stored is not None:
                return [Repository(str(repo_id), str(name)) for repo_id, name in json.loads(stored)]
            if waited >= LISTING_WAIT or self.ctx.should_stop():
                log.warning("source=%s repositories not listed by their shard yet; they wait", self.name)
                return []
            self.ctx.sleep(0.25)
            waited += 0.25

    def _list_repositories(self) -> list[Repository]:
        try:
            body, _ = self.api.get(self.api.project_path("git/repositories"), "git_repositories")
        except NotFound as exc:
            raise self.api.not_found(exc) from None
        out = []
        for raw in list_value(body, "git_repositories"):
            if not isinstance(raw, dict):
                continue
            repo_id, name = raw.get("id"), raw.get("name")
            if not isinstance(repo_id, str) or not _GUID.fullmatch(repo_id) or not isinstance(name, str) or not name:
                self._log_once(entry_label(raw), "repository without a usable id or name; skipped")
                continue
            if raw.get("isDisabled") is True:
                continue  # a disabled repository answers nothing but errors
            out.append(Repository(repo_id.lower(), name[:MAX_NAME]))
        return sorted(out, key=lambda r: (r.name.casefold(), r.id))

    # -- one repository -------------------------------------------------------------------------------------
    def _sync_repository(self, store: SourceStore, report: SyncReport, repository: Repository) -> None:
        stream = f"prs:{repository.id}"
        mark = store.watermark(self.name, stream)
        watermark = safe_time(mark) if mark else None
        since = watermark - self.config.overlap if watermark else self.ctx.history_start()
        batch = Batch()
        fresh: dict[str, PullRequest] = {}
        newest = watermark  # the latest closedDate listed: the watermark once every new one is stored
        for raw in self._completed(repository, since):
            label = f"pr:{repository.name}:{entry_label(raw, 'pullRequestId')}"
            try:
                pr = self._pull_request(repository, raw)
            except RECORD_ERRORS as exc:
                self.guard.reject(batch, label, exc, record=raw)
                continue
            newest = pr.closed_at if newest is None else max(newest, pr.closed_at)
            if _same_time(self._known.get(pr.native_id), pr.closed_at):
                continue  # stored unchanged: no request spent on it
            fresh[pr.native_id] = pr  # a pull request listed twice (pages shifted) is opened once
        self.ctx.progress(len(fresh))
        ordered = sorted(fresh.values(), key=lambda pr: (pr.closed_at, pr.number))
        pending, reached = 0, watermark
        for pr, details in self._read_ahead(ordered):
            if self.ctx.should_stop():
                # what is stored so far, up to the last one opened: the rest is read next pass
                self._commit(store, report, batch, stream, reached)
                return
            try:
                change, links = self._change(pr, details.result())
            except RECORD_ERRORS as exc:
                self.guard.reject(batch, f"pr:{repository.name}:{pr.number}", exc)
            else:
                batch.changes.append(change)
                batch.links.extend(links)
                self._known[pr.native_id] = pr.closed_at
            # opened in closedDate order: every new one up to here is in this batch or before it
            reached = pr.closed_at if reached is None else max(reached, pr.closed_at)
            pending += 1
            if pending >= COMMIT_EVERY:
                self._commit(store, report, batch, stream, reached)
                batch, pending = Batch(), 0
        if len(batch) or batch.rejections or newest != watermark:
            self._commit(store, report, batch, stream, newest)

    def _commit(
        self, store: SourceStore, report: SyncReport, batch: Batch, stream: str, reached: datetime | None
    ) -> None:
        store.commit(self.name, batch, stream=stream, watermark=format_time(reached) if reached else None)
        report.batches += 1
        report.items += len(batch)

    def _completed(self, repository: Repository, since: datetime) -> Iterator[Any]:
        """Every pull request completed since ``since``: ``$top``/``$skip`` pages until a short one."""
        path = self.api.project_path(f"git/repositories/{quote(repository.id, safe='')}/pullrequests")
        params: dict[str, Any] = {
            "searchCriteria.status": "completed",
            "searchCriteria.queryTimeRangeType": "closed",
            "searchCriteria.minTime": format_time(since),
            "$top": PRS_TOP,
        }
        skip = 0
        for _ in range(MAX_PAGES):
            if skip:
                params["$skip"] = skip
            body, _ = self.api.get(path, "pull_requests", params)
            page = list_value(body, "pull_requests")
            yield from page
            if len(page) < PRS_TOP:
                return
            skip += len(page)
        raise PaginationError(f"{self.name}: pull requests of {repository.name}: more than {MAX_PAGES} pages")

    def _pull_request(self, repository: Repository, raw: Any) -> PullRequest:
        if not isinstance(raw, dict):
            raise Rejected("wrong_type", "pull request is not an object")
        number = raw.get("pullRequestId")
        if not is_count(number):
            raise Rejected(
                count_problem(number) or "wrong_type" if number is not None else "missing_field", "pullRequestId"
            )
        status = raw.get("status")
        if isinstance(status, str) and status.lower() != "completed":
            raise Rejected("unknown_state", f"status {status[:40]!r} in a list of completed pull requests")
        created = _time(raw, "creationDate")
        closed = _time(raw, "closedDate")
        if closed < created:
            raise Rejected("end_before_start", "closedDate before creationDate")
        author = _identity_id(raw.get("createdBy"))
        merge = raw.get("lastMergeCommit")
        merge_commit = None
        if merge is not None:
            if not isinstance(merge, dict):
                raise Rejected("wrong_type", "lastMergeCommit")
            merge_commit = _sha(merge.get("commitId"))
        return PullRequest(repository, number, created, closed, author, merge_commit)

    # -- what a pull request holds -------------------------------------------------------------------------
    def _read_ahead(self, prs: list[PullRequest]) -> Iterator[tuple[PullRequest, Future[Details]]]:
        window = READ_AHEAD * self.config.max_concurrency
        begun: deque[tuple[PullRequest, Future[Details]]] = deque()
        for pr in prs:
            begun.append((pr, self._pool.submit(self._read_details, pr.repository.id, pr.number)))
            if len(begun) >= window:
                yield begun.popleft()
        while begun:
            yield begun.popleft()

    def _read_details(self, repository_id: str, number: int) -> Details:
        """Its commits, threads and work item refs (on a pool thread: requests only, no state)."""
        base = self.api.project_path(f"git/repositories/{quote(repository_id, safe='')}/pullRequests/{number}")
        commits = [
            c for page in self.api.pages(f"{base}/commits", "pull_request_commits", {"$top": COMMITS_TOP}) for c in page
        ]
        body, _ = self.api.get(f"{base}/threads", "pull_request_threads")
        threads = list_value(body, "pull_request_threads")
        body, _ = self.api.get(f"{base}/workitems", "pull_request_workitems")
        work_items = list_value(body, "pull_request_workitems")
        return commits, threads, work_items

    def _change(self, pr: PullRequest, details: Details) -> tuple[Change, list[Link]]:
        commits, threads, work_items = details
        shas: dict[str, None] = {}
        authored: list[datetime] = []
        for commit in commits:
            if not isinstance(commit, dict):
                continue
            sha = _sha(commit.get("commitId"))
            if sha is None:
                continue
            shas[sha] = None
            author = commit.get("author")
            when = safe_time(author.get("date")) if isinstance(author, dict) else None
            if when is not None:
                authored.append(when)
        if pr.merge_commit is not None:
            shas[pr.merge_commit] = None
        if not shas:
            raise Rejected("missing_field", "no commit and no lastMergeCommit")
        if authored:
            first_commit = min(authored)
        else:
            # commits without author dates (never seen, but the fields are optional): its opening
            self._log_once(pr.native_id, "no commit with an author date; first commit taken as its creation")
            first_commit = pr.created_at
        ready, first_review = _review_times(pr, threads)
        change = Change(
            self.name,
            pr.native_id,
            pr.ref,
            pr.repository.name,
            "pull_request",
            first_commit,
            pr.closed_at,
            tuple(shas),
            ready,
            first_review,
        )
        links = sorted(
            {Link(self.name, ado_ref(item), pr.ref) for item in _work_item_ids(work_items)},
            key=lambda link: link.work_item,
        )
        return change, links

    def _log_once(self, record_id: str, message: str) -> None:
        if (record_id, message) not in self._logged:
            self._logged.add((record_id, message))
            log.warning("source=%s record %s %s", self.name, record_id, message)


def _review_times(pr: PullRequest, threads: list[Any]) -> tuple[datetime, datetime | None]:
    """When the pull request became ready for review, and its first review by someone else."""
    drafts: list[tuple[datetime, bool]] = []
    reviews: list[datetime] = []
    for thread in threads:
        if not isinstance(thread, dict) or thread.get("isDeleted") is True:
            continue
        raw_properties = thread.get("properties")
        properties: dict[str, Any] = raw_properties if isinstance(raw_properties, dict) else {}
        kind = _property(properties, "CodeReviewThreadType")
        published = safe_time(thread.get("publishedDate"))
        if kind == "VoteUpdate":
            voter = _property(properties, "CodeReviewVotedByTfId")
            key = _property(properties, "CodeReviewVotedByIdentity")
            identities = thread.get("identities")
            if key is not None and isinstance(identities, dict):
                voter = _identity_id(identities.get(key)) or voter
            if published is not None and voter is not None and not _same(voter, pr.author):
                reviews.append(published)
            continue
        if kind == "IsDraftUpdated":
            is_draft = _property(properties, "CodeReviewIsDraft")
            if published is not None and is_draft is not None:
                drafts.append((published, is_draft.lower() == "true"))
            continue
        comments = thread.get("comments")
        for comment in comments if isinstance(comments, list) else []:
            if not isinstance(comment, dict) or comment.get("isDeleted") is True:
                continue
            if str(comment.get("commentType", "text")).lower() == "system":
                continue  # the service speaking, not a reviewer
            author = _identity_id(comment.get("author"))
            when = safe_time(comment.get("publishedDate"))
            if when is not None and author is not None and not _same(author, pr.author):
                reviews.append(when)
    ready = pr.created_at
    if drafts:
        at, draft = min(drafts)
        if not draft:  # its first draft change was publishing it: it was created as a draft
            ready = max(at, pr.created_at)
    return ready, min(reviews) if reviews else None


def _same_time(stored: datetime | None, listed: datetime) -> bool:
    """The store keeps epoch seconds as a float: a 7-digit ``closedDate`` comes back within a
    microsecond, not always to it."""
    return stored is not None and abs((stored - listed).total_seconds()) < 0.001


def _property(properties: dict[str, Any], name: str) -> str | None:
    """A thread property's value (``{"$type": …, "$value": …}``) as text."""
    value = properties.get(name)
    if isinstance(value, dict):
        value = value.get("$value")
    if isinstance(value, str | int) and not isinstance(value, bool):
        return str(value)[:200]
    return None


def _identity_id(identity: Any) -> str | None:
    if isinstance(identity, dict) and isinstance(identity.get("id"), str) and identity["id"]:
        return str(identity["id"])[:100]
    return None


def _same(one: str, other: str | None) -> bool:
    """Identity ids are GUIDs, written with or without dashes (``…VotedByTfId``)."""
    return other is not None and one.replace("-", "").casefold() == other.replace("-", "").casefold()


def _sha(value: Any) -> str | None:
    return value.lower() if isinstance(value, str) and _SHA.fullmatch(value) else None


def _time(raw: dict[str, Any], name: str) -> datetime:
    value = raw.get(name)
    if value is None or value == "":
        raise Rejected("missing_field", name)
    parsed = azure_time(value)  # Rejected("bad_timestamp") when unreadable
    if parsed is None:
        raise Rejected("missing_field", name)
    return parsed


def _work_item_ids(refs: list[Any]) -> list[int]:
    """``ResourceRef`` ids (strings in the reference, numbers on some servers) that are work item ids."""
    out = []
    for ref in refs:
        value = ref.get("id") if isinstance(ref, dict) else None
        if isinstance(value, str) and value.isdigit() and len(value) < 16:
            value = int(value)
        if is_count(value) and value > 0:
            out.append(value)
    return out
