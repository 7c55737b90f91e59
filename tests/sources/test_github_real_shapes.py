"""The real GitHub source against GitHub's real response shapes, into a real SQLite store.

``tests/fixtures/github`` holds one small repository, ``octo-org/hello-world``, written from
GitHub's REST reference (api.github.com 2022-11-28, the ``components/examples`` field sets) with
the awkward parts real data has: an early issue whose ``pull_request`` stub has no URLs, a native
issue ``type``, a pull request that only says "Related to #3" next to one that fixes it, a
``connected`` event, commits whose author and committer dates differ (``-07:00`` offsets, a
cherry-picked older commit listed second), direct pushes to ``main`` (one closing #5 from its
message, one from a laptop whose clock ran six months ahead), deployment statuses newest first
with ``inactive``, ``queued`` and none at all, an error re-reported as a success, a workflow run
whose ``updated_at`` moved eleven months after its jobs finished, and a release on an annotated
tag. The story, in time order:

- 2025-01-27 D1 pushed to main ("Add deploy script, AB#2001"); 2025-01-28 staging deployment 1000
  of D1 fails (counted, not opened).
- 2025-01-30 D5 pushed to main ("FIXES: #5"), closing #5.
- 2025-02-01 production deployment 1001 of D5: ``error`` at 08:10, then ``success`` at 09:00.
- 2025-02-03 PR #10 "Related to #3" opened as a draft, ready for review at 15:30, its author's
  own review, a reviewer's pending review, octocat's review comment 02-04 09:12 in the review they
  approved at 09:20; merged 02-05 (M10). 2025-02-10 PR #11 "Fixes #3" opened, sent back to draft
  and made ready again, first reviewed by a bot 02-12 14:05, changes requested, a dismissed review,
  approved, merged 02-14 (M11), closing #3.
- 2025-02-18 DS pushed to main, authored "2025-08-18" (clock ahead).
- 2025-02-20 production deployment 1002 of DS succeeds at 10:05 (1001 made inactive); workflow
  run 30433642 of DS: jobs done 09:07:42, ``updated_at`` 2026-01-10. 2025-02-21 release v1.1.0
  (annotated tag → DS); deployments 1003 (queued) and 1004 (no status) have not finished.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from github_replay import FIXTURES, Replay, replay

from collector.compute import compute
from collector.config import GitHubConfig
from collector.model import Category
from collector.sources.base import SourceContext
from collector.sources.github import GitHubSource
from collector.store import Store

NOW = datetime(2026, 1, 15, tzinfo=UTC)
REPO = "octo-org/hello-world"
R = f"/repos/{REPO}"
D1 = "1a2b3c4d5e6f708192a3b4c5d6e7f80912a3b4c5"
D5 = "2b3c4d5e6f708192a3b4c5d6e7f80912a3b4c5d6"
P10A = "3c4d5e6f708192a3b4c5d6e7f80912a3b4c5d6e7"
M10 = "4d5e6f708192a3b4c5d6e7f80912a3b4c5d6e7f8"
P11A = "5e6f708192a3b4c5d6e7f80912a3b4c5d6e7f809"
P11B = "6f708192a3b4c5d6e7f80912a3b4c5d6e7f80912"
M11 = "708192a3b4c5d6e7f80912a3b4c5d6e7f80912a3"
DS = "8192a3b4c5d6e7f80912a3b4c5d6e7f80912a3b4"
#: one source per ``deployments_from`` mode, all on the same repository
MODES = {"gh": "deployments", "gh_runs": "workflow_runs:deploy.yml", "gh_releases": "releases"}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def source(url: str, name: str) -> GitHubSource:
    config = GitHubConfig(
        name=name,
        kind="github",
        base_url=url,
        token="replay-token",
        repositories=[REPO],
        deployments_from=MODES[name],
        type_labels={"enhancement": "Feature"},
        api="rest",  # the fixtures are REST answers; the GraphQL plan is compared with it in test_github_plans.py
    )
    return GitHubSource(config, SourceContext(now=lambda: NOW, sleep=lambda s: None))


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, Replay]]:
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('real-shapes')}/store.db")
    with replay() as server:
        for name in MODES:
            report = source(server.url, name).sync(store)
            assert not report.problems, (name, report.problems)
        yield store, server
    store.close()


@pytest.fixture
def store(synced: tuple[Store, Replay]) -> Store:
    return synced[0]


def items(store: Store) -> dict[str, Any]:
    return {w.native_id.split("#")[1]: w for w in store.work_items("gh")}


def states(store: Store, number: str) -> list[tuple[str, str, Category]]:
    return [(s.at.strftime("%m-%d %H:%M"), s.state, s.category) for s in items(store)[number].history]


# -- work items ---------------------------------------------------------------------------------
def test_an_early_issue_with_a_url_less_pull_request_stub_is_an_issue(store: Store) -> None:
    assert set(items(store)) == {"1", "2", "3", "4", "5"}  # #10 and #11 are pull requests
    assert items(store)["1"].created_at == at("2011-03-04T17:21:50Z")
    assert states(store, "1") == [("03-04 17:21", "open", Category.PROPOSED)]


def test_the_native_issue_type_wins_over_type_labels(store: Store) -> None:
    by_number = items(store)
    assert by_number["2"].type == "Bug"  # native type Bug, label "enhancement"
    assert by_number["3"].type == "Feature"  # no native type ("type": null): the label decides
    assert by_number["1"].type == "Issue"
    assert by_number["2"].team == "web"


def test_only_a_pull_request_that_closes_the_issue_starts_work_on_it(store: Store) -> None:
    # #10 "Related to #3" (02-03, merged 02-05) does not; #11 "Fixes #3" (02-10) does
    assert states(store, "3") == [
        ("02-01 09:00", "open", Category.PROPOSED),
        ("02-10 09:00", "in_progress", Category.IN_PROGRESS),
        ("02-14 16:00", "completed", Category.COMPLETED),
    ]
    # a pull request linked in the sidebar ("connected") does; closed as not planned
    assert states(store, "4") == [
        ("02-02 09:00", "open", Category.PROPOSED),
        ("02-04 09:00", "in_progress", Category.IN_PROGRESS),
        ("02-20 09:00", "not_planned", Category.REMOVED),
    ]
    assert states(store, "2") == [
        ("01-22 09:00", "open", Category.PROPOSED),
        ("01-23 10:00", "in_progress", Category.IN_PROGRESS),
        ("01-24 10:00", "open", Category.PROPOSED),
        ("01-25 12:00", "in_progress", Category.IN_PROGRESS),
        ("01-28 15:00", "completed", Category.COMPLETED),
    ]
    assert states(store, "5") == [
        ("01-25 09:00", "open", Category.PROPOSED),
        ("01-30 18:00", "completed", Category.COMPLETED),
    ]


# -- changes and links --------------------------------------------------------------------------
def test_a_pull_request_starts_at_the_earliest_author_date_of_its_commits(store: Store) -> None:
    pulls = {c.native_id: c for c in store.changes("gh") if c.kind == "pull_request"}
    assert set(pulls) == {f"{REPO}#10", f"{REPO}#11"}
    eleven = pulls[f"{REPO}#11"]
    # listed second, authored 2025-02-09T08:30:00-07:00; committed 02-13, after the first listed one
    assert eleven.first_commit_at == at("2025-02-09T15:30:00Z")
    assert eleven.merged_at == at("2025-02-14T16:00:00Z")
    assert set(eleven.commits) == {P11A, P11B, M11}
    assert pulls[f"{REPO}#10"].first_commit_at == at("2025-02-03T16:30:00Z")


def test_ready_for_review_and_the_first_review_by_someone_else(store: Store) -> None:
    """From each merged pull request's REST timeline (``timeline-10.json``, ``timeline-11.json``)."""
    pulls = {c.native_id: c for c in store.changes("gh") if c.kind == "pull_request"}
    ten, eleven = pulls[f"{REPO}#10"], pulls[f"{REPO}#11"]
    # #10 was opened as a draft: ready at its ready_for_review. Its author's own review and review
    # comments, a bot's issue comment (no review) and a reviewer's PENDING review with a comment
    # drafted at 18:05 do not count; the first is octocat's comment at 09:12 in the review they
    # submitted (approved) at 09:20
    assert ten.ready_at == at("2025-02-03T15:30:00Z")
    assert ten.first_review_at == at("2025-02-04T09:12:00Z")
    # #11 was opened ready, went back to draft and was made ready again: ready since its creation.
    # A bot's review is a review by someone other than the author
    assert eleven.ready_at == at("2025-02-10T09:00:00Z")
    assert eleven.first_review_at == at("2025-02-12T14:05:00Z")
    pushes = [c for c in store.changes("gh") if c.kind == "commit"]
    assert pushes and all(c.ready_at is None and c.first_review_at is None for c in pushes)


def test_direct_pushes_are_changes_found_in_what_deployments_contain(store: Store) -> None:
    pushes = {c.commits[0]: c for c in store.changes("gh") if c.kind == "commit"}
    assert set(pushes) == {D1, D5, DS}
    assert pushes[D5].ref == f"commit:{D5}" and pushes[D5].native_id == f"{REPO}@{D5}"
    assert pushes[D5].first_commit_at == at("2025-01-30T17:30:00Z")  # author date, -07:00
    assert pushes[D5].merged_at == at("2025-01-30T18:00:00Z")  # committer date
    assert pushes[DS].first_commit_at == at("2025-08-18T10:00:00Z")  # the clock that ran ahead


def test_links_from_closing_keywords_and_azure_boards_mentions(store: Store) -> None:
    links = {(x.work_item, x.target) for x in store.links("gh")}
    assert links == {
        (f"gh:{REPO}#3", f"ghpr:{REPO}#11"),  # "Fixes #3" in the body
        ("ado:1234", f"ghpr:{REPO}#11"),  # "AB#1234" in the title
        (f"gh:{REPO}#5", f"commit:{D5}"),  # "FIXES: #5" in a direct push's message
        ("ado:2001", f"commit:{D1}"),  # "AB#2001" in a direct push's message
    }  # nothing for #10's "Related to #3"


# -- deployments --------------------------------------------------------------------------------
def test_the_latest_finished_status_decides_and_unfinished_ones_wait(synced: tuple[Store, Replay]) -> None:
    store, server = synced
    deployments = {d.native_id: d for d in store.deployments("gh")}
    assert set(deployments) == {"deployment:1000", "deployment:1001", "deployment:1002"}  # 1003 queued, 1004 none
    first = deployments["deployment:1001"]
    assert (first.status, first.finished_at) == ("success", at("2025-02-01T09:00:00Z"))  # error, then success
    assert set(first.contains) == {f"commit:{D1}", f"commit:{D5}"}
    second = deployments["deployment:1002"]
    assert (second.status, second.finished_at) == ("success", at("2025-02-20T10:05:00Z"))
    assert set(second.contains) == {f"commit:{s}" for s in (P10A, M10, P11A, P11B, M11, DS)}
    failed = deployments["deployment:1000"]
    assert (failed.status, failed.environment, failed.production) == ("failure", "staging", False)
    # counted, not opened: no commit list was read for the failed staging deployment of D1
    assert failed.contains == ()
    assert server.count(f"{R}/commits?") == 3  # D5 (gh), DS (gh_runs, gh_releases)
    assert server.count(f"{R}/compare/") == 1


def test_a_workflow_run_finishes_when_its_last_job_completes(synced: tuple[Store, Replay]) -> None:
    store, server = synced
    (run,) = store.deployments("gh_runs")  # the run on release/1.0 is not a deployment of main
    assert run.native_id == "run:30433642"
    assert run.started_at == at("2025-02-20T09:00:05Z")
    assert run.finished_at == at("2025-02-20T09:07:42Z")  # not updated_at, 2026-01-10
    assert f"commit:{DS}" in run.contains
    assert server.count(f"{R}/actions/runs/30433642/jobs") == 1
    source(server.url, "gh_runs").sync(store)  # a finished run's jobs are read once
    assert server.count(f"{R}/actions/runs/30433642/jobs") == 1


def test_a_release_deploys_the_commit_of_its_annotated_tag(store: Store) -> None:
    (release,) = store.deployments("gh_releases")  # the draft and the release candidate are not
    assert release.native_id == "release:2" and release.sha == DS
    assert release.finished_at == at("2025-02-21T12:00:00Z")


# -- figures ------------------------------------------------------------------------------------
def test_figures_from_the_store(store: Store) -> None:
    figures = compute(store.work_items("gh"), store.changes("gh"), store.deployments("gh"), store.links("gh"))
    first, second = at("2025-02-01T09:00:00Z"), at("2025-02-20T10:05:00Z")
    lead = sorted(v for _, v in figures.change_lead_time.pairs(("gh", REPO, "production")))
    assert lead == sorted(
        [
            (first - at("2025-01-27T17:00:00Z")).total_seconds(),  # D1
            (first - at("2025-01-30T17:30:00Z")).total_seconds(),  # D5
            (second - at("2025-02-03T16:30:00Z")).total_seconds(),  # PR #10
            (second - at("2025-02-09T15:30:00Z")).total_seconds(),  # PR #11
        ]
    )
    # DS was authored "after" it shipped: left out, and counted
    assert figures.rejected == {("gh", "end_before_start"): 1}
    released = {
        labels: [v for _, v in figures.request_to_release.pairs(labels)]
        for labels in figures.request_to_release.by_labels
    }
    assert released == {
        ("gh", REPO, "", "Issue", "production"): [
            (first - at("2025-01-25T09:00:00Z")).total_seconds()
        ],  # #5, closed by D5
        ("gh", REPO, "", "Feature", "production"): [
            (second - at("2025-02-01T09:00:00Z")).total_seconds()
        ],  # #3, fixed by PR #11
    }
    assert figures.deployments == {
        ("gh", REPO, "production", "true", "success"): 2,
        ("gh", REPO, "staging", "false", "failure"): 1,
    }


def test_every_fixture_is_served_and_every_route_was_asked_for(synced: tuple[Store, Replay]) -> None:
    _, server = synced
    used = {route["body"] for route in server.routes.values()}
    assert used == {p.name for p in FIXTURES.glob("*.json")} - {"routes.json"}
    assert set(server.routes) <= set(server.requests)


def test_a_server_without_etags_is_read_all_the_same(tmp_path: Path) -> None:
    """Proxies in front of GitHub Enterprise Server may strip ``ETag``: a missing one is no 304."""
    store = Store(f"sqlite:///{tmp_path}/store.db")
    with replay(etags=False) as server:
        assert not source(server.url, "gh").sync(store).problems
    assert {d.native_id for d in store.deployments("gh")} == {"deployment:1000", "deployment:1001", "deployment:1002"}
    store.close()


# -- end to end: the command line ---------------------------------------------------------------
def _cycletime(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "collector", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )


def _sample(exposition: str, name: str, **labels: str) -> float:
    for line in exposition.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {name}{labels}")


def test_cycletime_sync_then_metrics(tmp_path: Path) -> None:
    """``cycletime sync`` reads the fixtures, ``cycletime metrics --at`` prints the figures as of then.

    ``since`` follows the wall clock in ``sync``, so the replay does not match on it; the history is
    long enough to keep 2025 whatever the date.
    """
    with replay(ignore=frozenset({"since"})) as server:
        config = tmp_path / "cycletime.yaml"
        config.write_text(
            f"store: sqlite:///{tmp_path}/store.db\nhistory: 3650d\nsources:\n"
            f"  - name: gh\n    kind: github\n    base_url: {server.url}\n    token: replay-token\n"
            f"    repositories: [{REPO}]\n    deployments_from: deployments\n"
            "    type_labels: {enhancement: Feature}\n    api: rest\n"
        )
        synced = _cycletime("sync", "--config", str(config))
        assert synced.returncode == 0, synced.stderr
    shown = _cycletime("metrics", "--config", str(config), "--at", "2025-02-25T00:00:00Z")
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert _sample(text, "cycletime_change_lead_time_seconds_count", source="gh", environment="production") == 4
    assert _sample(text, "cycletime_records_rejected_total", source="gh", reason="end_before_start") == 1
    assert _sample(text, "cycletime_request_to_release_seconds_count", source="gh", type="Feature") == 1
    assert _sample(text, "cycletime_request_to_release_seconds_count", source="gh", type="Issue") == 1
    assert _sample(text, "cycletime_deployments_total", source="gh", environment="production", status="success") == 2
    assert _sample(text, "cycletime_deployments_total", source="gh", environment="staging", status="failure") == 1
    # in the 7 days before 2025-02-25, deployment 1002 shipped PRs #10 and #11 (DS rejected)
    assert _sample(text, "cycletime_change_lead_time_window_count", source="gh", window="7d") == 2
    assert _sample(text, "cycletime_change_lead_time_window_count", source="gh", window="30d") == 4


def test_a_run_deleted_before_its_jobs_are_read_is_no_deployment(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/store.db")
    with replay() as server:
        del server.routes[f"{R}/actions/runs/30433642/jobs?filter=latest&per_page=100"]  # now a 404
        assert not source(server.url, "gh_runs").sync(store).problems
    assert store.deployments("gh_runs") == []
    store.close()
