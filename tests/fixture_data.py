"""A small, hand-checkable dataset written to a real store (used by the exporter and CLI tests)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

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
    build_ref,
    commit_ref,
    gh_pr_ref,
)
from collector.store import Store

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
P, IP, R, C = Category.PROPOSED, Category.IN_PROGRESS, Category.RESOLVED, Category.COMPLETED


def days_ago(n: float) -> datetime:
    return NOW - timedelta(days=n)


def _item(
    n: int, created: float, *states: tuple[float, str, Category], team: str = "Web", type_: str = "User Story"
) -> WorkItem:
    wid = str(n)
    return WorkItem(
        "boards",
        wid,
        ado_ref(n),
        "Fabrikam",
        team,
        type_,
        days_ago(created),
        tuple(StateChange(wid, i, days_ago(d), s, c) for i, (d, s, c) in enumerate(states, start=1)),
    )


def load(store: Store) -> None:
    """Three completed items (cycle times 2d, 4d, 10d ending 1-20 days ago), one in progress, one new;
    two production deployments (one failed then recovered), one staging deployment."""
    items = [
        _item(1, 30, (30, "New", P), (3, "Active", IP), (1, "Closed", C)),  # cycle 2d, lead 29d
        _item(2, 40, (40, "New", P), (9, "Active", IP), (6, "Resolved", R), (5, "Closed", C)),  # cycle 4d
        _item(3, 60, (60, "New", P), (30, "Active", IP), (20, "Closed", C), type_="Bug"),  # cycle 10d
        _item(4, 10, (10, "New", P), (2, "Active", IP)),
        _item(5, 5, (5, "New", P), team="Payments"),
    ]
    store.commit(
        "boards",
        Batch(work_items=items, rejections=[Rejection("boards", "77", "missing_field")]),
        stream="revisions",
        watermark="tok",
    )
    sha_a, sha_b = "a" * 40, "b" * 40
    pr = Change(
        "github",
        "contoso/web#5",
        gh_pr_ref("contoso/web", 5),
        "contoso/web",
        "pull_request",
        days_ago(8),
        days_ago(6),
        (sha_a,),
        ready_at=days_ago(7.5),  # coding 12 h, pickup 1 day, review 12 h, deploy 3 days
        first_review_at=days_ago(6.5),
    )
    deployments = [
        Deployment(
            "pipelines",
            "env:1:1",
            "web-ci",
            "production",
            True,
            "failure",
            days_ago(4.1),
            days_ago(4),
            sha_b,
            (commit_ref(sha_a), build_ref(10)),
        ),
        Deployment(
            "pipelines",
            "env:1:2",
            "web-ci",
            "production",
            True,
            "success",
            days_ago(3.1),
            days_ago(3),
            sha_b,
            (commit_ref(sha_a), build_ref(11)),
        ),
        Deployment(
            "pipelines",
            "env:2:1",
            "web-ci",
            "staging",
            False,
            "success",
            days_ago(5.1),
            days_ago(5),
            sha_b,
            (commit_ref(sha_a),),
        ),
    ]
    store.commit("pipelines", Batch(deployments=deployments, links=[Link("pipelines", ado_ref(2), build_ref(11))]))
    store.commit("github", Batch(changes=[pr], links=[Link("github", ado_ref(1), pr.ref)]))


def year_item(
    wid: str, created: datetime, done: datetime, started: datetime | None = None, project: str = "Fabrikam"
) -> WorkItem:
    started = started or created + (done - created) / 2
    return WorkItem(
        "boards",
        wid,
        ado_ref(int(wid)),
        project,
        "Web",
        "User Story",
        created,
        (
            StateChange(wid, 1, created, "New", Category.PROPOSED),
            StateChange(wid, 2, started, "Active", Category.IN_PROGRESS),
            StateChange(wid, 3, done, "Closed", Category.COMPLETED),
        ),
    )


def a_year_of_releases(store: Store, now: datetime, projects: tuple[str, ...] = ("Fabrikam", "Tailspin")) -> None:
    """Two items a week for a year, each released by its own deployment two days after completion
    (every tenth deployment failed); a third of the items in the second project, if there is one."""
    items, changes, deployments, links = [], [], [], []
    for n in range(1, 105):
        done = now - timedelta(days=3.5 * n)
        created = done - timedelta(days=5 + (n * 7) % 40)
        wid = str(n)
        project = projects[0] if n % 3 or len(projects) == 1 else projects[1]
        items.append(year_item(wid, created, done, project=project))
        sha = f"{n:040x}"
        pr = Change(
            "github",
            f"contoso/web#{n}",
            gh_pr_ref("contoso/web", n),
            "contoso/web",
            "pull_request",
            done - timedelta(days=1),
            done,
            (sha,),
        )
        changes.append(pr)
        links.append(Link("github", ado_ref(n), pr.ref))
        status = "failure" if n % 10 == 0 else "success"
        deployments.append(
            Deployment(
                "github",
                f"d{n}",
                "contoso/web",
                "production",
                True,
                status,
                done + timedelta(days=2) - timedelta(hours=1),
                done + timedelta(days=2),
                sha,
                (),
            )
        )
    store.commit("boards", Batch(work_items=items))
    store.commit("github", Batch(changes=changes, deployments=deployments, links=links))
