"""``owner/*`` at organisation scale: incremental discovery, the ``skip_*`` options, idle cost.

The sandbox organisation has its three services plus 2,000 more repositories (``extra_repos``): of
every twenty, nine empty, five archived, five forks and one small live repository. Requests are
counted by the sandbox per endpoint (``/_sandbox/stats``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from collector.config import GitHubConfig
from collector.sources.base import SourceContext, SyncReport
from collector.sources.github import FULL_LISTING_EVERY, GitHubSource
from collector.store import Store
from sandbox.app import Sandbox, SandboxOptions
from sandbox.github.data import Repo

NOW = datetime(2026, 1, 15, tzinfo=UTC)
TOKEN = "sandbox-token"
EXTRA = 2000


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def org() -> Iterator[Sandbox]:
    """The organisation (with a rate budget of its own: each test reads it in full at least once)."""
    with Sandbox(SandboxOptions(seed=7, work_items=240, now=NOW, github_repos=EXTRA)) as sb:
        yield sb


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path}/owner.db")
    yield s
    s.close()


def _source(sandbox: Sandbox, repositories: list[str], clock: Clock | None = None, **options: Any) -> GitHubSource:
    config = GitHubConfig(
        name="github", kind="github", base_url=sandbox.github_url, token=TOKEN, repositories=repositories, **options
    )
    return GitHubSource(config, SourceContext(now=clock or Clock(), sleep=lambda s: None))


def _kept(sandbox: Sandbox, *, forks: bool = False, empty: bool = False) -> set[str]:
    """What the default options keep, read from the sandbox's own data."""

    def keep(r: Repo) -> bool:
        return not r.archived and (forks or not r.fork) and (empty or bool(r.main))

    return {r.full_name for r in sandbox.github.data.repos.values() if keep(r)}


def _requests(sandbox: Sandbox, source: GitHubSource, store: Store) -> tuple[SyncReport, dict[str, Any]]:
    """One pass and what it asked the sandbox."""
    before = sandbox.server.stats.snapshot()
    report = source.sync(store)
    after = sandbox.server.stats.snapshot()
    by_endpoint = {k: v - before["by_endpoint"].get(k, 0) for k, v in after["by_endpoint"].items()}
    return report, {
        "total": after["total"] - before["total"],
        "not_modified": after["not_modified"] - before["not_modified"],
        "by_endpoint": {k: v for k, v in by_endpoint.items() if v},
        "points_by_endpoint": {
            k: v - before["points_by_endpoint"].get(k, 0) for k, v in after["points_by_endpoint"].items()
        },
    }


def _listing_pages(sandbox: Sandbox) -> int:
    return math.ceil(len(sandbox.github.data.repos) / 100)


def test_the_skip_options_default_to_true_and_are_validated() -> None:
    base = {"name": "github", "kind": "github", "token": TOKEN, "repositories": ["contoso/*"]}
    config = GitHubConfig(**base)
    assert (config.skip_archived, config.skip_forks, config.skip_empty) == (True, True, True)
    assert GitHubConfig(**base, skip_forks=False).skip_forks is False
    with pytest.raises(ValidationError, match="skip_empty"):
        GitHubConfig(**base, skip_empty="sometimes")


def test_discovery_keeps_what_the_options_keep(org: Sandbox, store: Store) -> None:
    kept = _kept(org)
    assert 100 < len(kept) < EXTRA // 10  # most of the organisation is empty, archived or forks
    report, asked = _requests(org, _source(org, ["contoso/*"]), store)
    assert not report.problems
    assert report.details["repositories"] == len(kept)
    # the first listing is read in full; no repository is asked for on its own (the listing says it all)
    assert asked["by_endpoint"]["github.repos"] == _listing_pages(org)
    assert "github.repo" not in asked["by_endpoint"]
    assert asked["by_endpoint"]["github.issues"] == len(kept)
    # the services' records are all there; the other repositories have none
    truth = org.github.truth()
    assert {w.native_id for w in store.work_items()} == {w["native_id"] for w in truth["work_items"]}

    # other options: a full listing again, keeping forks and empty repositories as well
    wider = _source(org, ["contoso/*"], skip_forks=False, skip_empty=False)
    report, asked = _requests(org, wider, store)
    assert asked["by_endpoint"]["github.repos"] == _listing_pages(org)
    assert report.details["repositories"] == len(_kept(org, forks=True, empty=True)) > len(kept)


def test_an_idle_pass_asks_one_probe_per_hundred_kept_repositories(org: Sandbox, store: Store) -> None:
    source = _source(org, ["contoso/*"])
    kept = len(_kept(org))
    source.sync(store)
    report, idle = _requests(org, source, store)
    print(f"idle pass over {kept} kept repositories: {idle}")
    assert not report.problems
    # the listing's page 1 (a 304), then one GraphQL change probe per 100 kept repositories: every
    # repository's marks equal those stored after its last complete read, so none of its lists is
    # asked for; only the one unfinished deployment (of contoso/web) is re-read, conditionally
    assert report.details["repositories_unchanged"] == kept
    assert idle["by_endpoint"]["github.graphql"] == math.ceil(kept / 100)
    assert idle["by_endpoint"]["github.repos"] == 1
    assert idle["by_endpoint"].get("github.deployment_statuses", 0) == 1
    assert idle["total"] == 1 + math.ceil(kept / 100) + 1 == idle["not_modified"] + math.ceil(kept / 100)
    # the probe's points are in the source's GraphQL budget, as the sandbox charged them
    assert source.graphql is not None
    spent = source.graphql.budget.spent
    report, again = _requests(org, source, store)
    assert source.graphql.budget.spent - spent == again["points_by_endpoint"]["github.graphql"] > 0
    assert report.details["repositories_unchanged"] == kept


def test_an_idle_rest_pass_asks_two_conditional_requests_per_kept_repository(org: Sandbox, store: Store) -> None:
    """The REST plan has no probe: no one REST list shows both issues and deliveries."""
    source = _source(org, ["contoso/*"], api="rest")
    kept = len(_kept(org))
    source.sync(store)
    source.sync(store)  # the services' issues are asked once more with the newer `since`
    report, idle = _requests(org, source, store)
    print(f"idle pass over {kept} kept repositories: {idle}")
    assert not report.problems
    # every request a 304: nothing of the rate budget spent
    assert idle["total"] == idle["not_modified"] > 0
    assert "github.graphql" not in idle["by_endpoint"] and report.details["repositories_unchanged"] == 0
    # the listing once (page 1), then per repository its issues and its deliveries; no repository
    # object, and no pull requests: no push since they were read, and the issues list (which lists
    # pull requests too) is unchanged
    pending = idle["by_endpoint"].get("github.deployment_statuses", 0)
    assert idle["by_endpoint"]["github.repos"] == 1
    assert idle["by_endpoint"]["github.issues"] == idle["by_endpoint"]["github.deployments"] == kept
    assert "github.pulls" not in idle["by_endpoint"] and "github.repo" not in idle["by_endpoint"]
    assert report.details["pulls_skipped"] == kept
    assert idle["total"] == 1 + 2 * kept + pending
    assert pending <= 1  # the one unfinished deployment of contoso/web, re-read conditionally


def test_a_pushed_repository_is_discovered_on_the_next_pass(org: Sandbox, store: Store) -> None:
    clock = Clock()
    source = _source(org, ["contoso/*"], clock)
    source.sync(store)
    kept = _kept(org)
    empty = sorted(r.name for r in org.github.data.repos.values() if not r.main)[0]
    live = sorted(name.split("/")[1] for name in kept if name.startswith("contoso/svc-"))[-1]
    source.sync(store)  # idle: every repository's pull requests proven unchanged from now on
    clock.now = NOW + timedelta(hours=2)
    org.github.push(empty, clock.now)  # its first push: no longer empty
    org.github.push(live, clock.now)
    merged = org.add_activity(1)["github"][0]["pulls"]  # a pull request merged in a service
    report, asked = _requests(org, source, store)
    assert not report.problems
    assert report.details["repositories"] == len(kept) + 1
    # all three are on page 1 now (most recently pushed first), and the walk ends there
    assert asked["by_endpoint"]["github.repos"] == 1
    # the pushed repositories' pull requests are read (the new one's issues list is read for the
    # first time); every other repository's are proven unchanged: by the change probe, or (a
    # service that only deployed) by the issues list's 304 and no push
    assert asked["by_endpoint"]["github.pulls"] == 3
    assert report.details["repositories_unchanged"] + report.details["pulls_skipped"] == len(kept) + 1 - 3
    assert report.details["repositories_unchanged"] >= len(kept) - 5
    assert asked["by_endpoint"]["github.issues"] == len(kept) + 1 - report.details["repositories_unchanged"]
    assert set(merged) <= {c.native_id for c in store.changes()}


def test_an_archived_repository_stops_being_polled(org: Sandbox, store: Store) -> None:
    clock = Clock()
    source = _source(org, ["contoso/*"], clock)
    source.sync(store)
    kept = _kept(org)
    extras = sorted(
        (r for r in org.github.data.repos.values() if r.full_name in kept and not r.service),
        key=lambda r: r.pushed_at or NOW,
    )
    recent, old = extras[-1], extras[0]  # on page 1 of the listing, and far behind it
    clock.now = NOW + timedelta(hours=1)
    org.github.archive(recent.name, clock.now)
    org.github.archive(old.name, clock.now)

    # page 1 changed: the recently pushed one is seen archived at once
    report, asked = _requests(org, source, store)
    assert asked["by_endpoint"]["github.repos"] == 1
    assert report.details["repositories"] == len(kept) - 1
    # archiving moves no push: the other is seen at the next full listing
    clock.now = NOW + FULL_LISTING_EVERY + timedelta(hours=1)
    report, asked = _requests(org, source, store)
    assert asked["by_endpoint"]["github.repos"] == _listing_pages(org)
    assert report.details["repositories"] == len(kept) - 2
    # neither is polled any more (nor probed); the others are proven unchanged
    assert report.details["repositories_unchanged"] == len(kept) - 2
    assert "github.issues" not in asked["by_endpoint"]


def test_a_deleted_repository_is_forgotten_without_a_problem(org: Sandbox, store: Store) -> None:
    source = _source(org, ["contoso/*"])
    source.sync(store)
    kept = _kept(org)
    gone = sorted(name for name in kept if name.startswith("contoso/svc-"))[0]
    org.github.delete(gone.split("/")[1])
    report, asked = _requests(org, source, store)
    assert not report.problems  # a deleted repository is no failure of the source
    assert report.details["repositories_gone"] == 1
    report, asked = _requests(org, source, store)
    assert report.details["repositories"] == report.details["repositories_unchanged"] == len(kept) - 1
    assert "github.issues" not in asked["by_endpoint"]


def test_figures_equal_those_of_the_explicit_list(org: Sandbox, tmp_path: Path) -> None:
    stores = []
    for label, repositories in (("owner", ["contoso/*"]), ("named", sorted(_kept(org)))):
        store = Store(f"sqlite:///{tmp_path}/{label}.db")
        source = _source(org, repositories)
        assert not source.sync(store).problems
        assert not source.sync(store).problems  # and an idle pass changes nothing
        stores.append({k: v for k, v in store.content_digest().items() if k != "watermarks"})
        store.close()
    assert stores[0]["work_items"] and stores[0]["deployments"]
    assert stores[0] == stores[1]
