"""The domain model every source produces and compute reads (docs/definitions.md).

Nothing here knows an API's JSON shape. Times are timezone-aware UTC datetimes; the store keeps
them as epoch seconds.

References between systems use *refs*, plain strings that are the same whichever source produced
them, so a GitHub pull request mentioning ``AB#123`` links to the Azure Boards item without the
GitHub source knowing the Boards source's name:

- work item refs: ``ado:<id>`` (Azure Boards id, unique per organisation),
  ``gh:<owner>/<repo>#<number>`` (GitHub issue)
- change refs: ``commit:<sha>``, ``ghpr:<owner>/<repo>#<number>``, ``adopr:<repositoryId>/<id>``
- build refs: ``build:<id>`` (an Azure Pipelines run; deployments of that run deliver it)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Category(StrEnum):
    """Azure DevOps' state categories; GitHub issue states are mapped onto them."""

    PROPOSED = "Proposed"
    IN_PROGRESS = "InProgress"
    RESOLVED = "Resolved"
    COMPLETED = "Completed"
    REMOVED = "Removed"


#: categories that count as "work in progress" for the WIP gauge
WIP_CATEGORIES = (Category.PROPOSED, Category.IN_PROGRESS, Category.RESOLVED)
#: categories that start the cycle-time clock (Azure DevOps Analytics' CycleTimeDays)
STARTED_CATEGORIES = (Category.IN_PROGRESS, Category.RESOLVED)


def category_of(name: str) -> Category:
    """Map a category name from an API to ours; unknown names raise ValueError.

    Azure DevOps also reports ``Proposed``-like states under older names on some servers.
    """
    aliases = {c.value.lower(): c for c in Category}
    aliases.update({"in progress": Category.IN_PROGRESS, "inprogress": Category.IN_PROGRESS})
    try:
        return aliases[name.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown state category {name!r}") from None


def ado_ref(work_item_id: int | str) -> str:
    return f"ado:{work_item_id}"


def gh_issue_ref(repo: str, number: int | str) -> str:
    return f"gh:{repo.lower()}#{number}"


def commit_ref(sha: str) -> str:
    return f"commit:{sha.lower()}"


def gh_pr_ref(repo: str, number: int | str) -> str:
    return f"ghpr:{repo.lower()}#{number}"


def ado_pr_ref(repository_id: str, pr_id: int | str) -> str:
    return f"adopr:{repository_id.lower()}/{pr_id}"


def build_ref(build_id: int | str) -> str:
    return f"build:{build_id}"


@dataclass(frozen=True, slots=True)
class StateChange:
    """One observed state of a work item from ``at`` on (a revision or timeline event).

    ``seq`` orders observations of one item (Azure revision number, GitHub event order); several
    observations in a row with the same state are one stay in that state.
    """

    work_item_id: str
    seq: int
    at: datetime
    state: str
    category: Category


@dataclass(frozen=True, slots=True)
class WorkItem:
    """A request: Azure Boards work item or GitHub issue. Title and people are never stored."""

    source: str
    native_id: str
    ref: str
    project: str
    team: str
    type: str
    created_at: datetime
    #: observations in ``seq`` order. In a Batch this may be only the new ones: the store merges
    #: by (item, seq), so an incremental source need not re-read what it already handed over.
    history: tuple[StateChange, ...] = ()


@dataclass(frozen=True, slots=True)
class Change:
    """A merged pull request or a direct commit to the default branch.

    ``commits`` are the shas the change brought (a PR's commits and merge commit); a deployment
    containing any of them delivered the change.
    """

    source: str
    native_id: str
    ref: str
    service: str
    kind: str  # "pull_request" | "commit"
    first_commit_at: datetime
    merged_at: datetime | None
    commits: tuple[str, ...] = ()
    #: when the pull request became ready for review: its creation, or its first
    #: ``ready_for_review`` if it was opened as a draft. None for direct commits, or when the
    #: source cannot tell (then the stage figures treat the PR as ready at its first commit)
    ready_at: datetime | None = None
    #: the first review or review comment by someone other than the author; None if nobody
    #: reviewed it (pickup then runs to the merge)
    first_review_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Deployment:
    """A run that delivered commits to an environment.

    ``contains`` are refs it delivered: ``commit:<sha>`` for every commit reachable from its
    commit and not from the previous successful deployment to the same environment (docs/definitions.md),
    plus ``build:<id>`` for the Azure Pipelines run it came from.
    """

    source: str
    native_id: str
    service: str
    environment: str
    production: bool
    status: str  # "success" | "failure"
    started_at: datetime | None
    finished_at: datetime
    sha: str | None = None
    contains: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Link:
    """A work item is delivered by a change, a commit or a build (``target`` is a ref)."""

    source: str
    work_item: str
    target: str


@dataclass(frozen=True, slots=True)
class Rejection:
    """An input record skipped as invalid; kept so the count survives restarts and re-reads."""

    source: str
    record_id: str
    reason: str


@dataclass(slots=True)
class Batch:
    """What one source hands the store in one transaction, with the watermark it reached."""

    work_items: list[WorkItem] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    deployments: list[Deployment] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    #: the batch carries the *whole* history of its work items (GitHub timelines are re-read in
    #: full): the store replaces what it had instead of merging, so a vanished event vanishes
    replace_history: bool = False

    def __len__(self) -> int:
        return len(self.work_items) + len(self.changes) + len(self.deployments)
