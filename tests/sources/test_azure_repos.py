"""The Azure Repos source: completed pull requests against the sandbox and the official shapes.

The sandbox serves its seeded organisation over HTTP on 127.0.0.1 (``sandbox/azure/repos.py``); the
real source syncs it into a real SQLite file, and what it stored is compared with the sandbox's
ground truth, which the sandbox computes from what it generated, not from its JSON. The official
examples of MicrosoftDocs/vsts-rest-api-specs (``tests/fixtures/azure``) are served by a small
replay server, with hostile records mixed in.
"""

from __future__ import annotations

import copy
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from azure_truth import TOKEN, context, requests_made, start_sandbox
from conftest import azure_source, sandbox_config

from collector.compute import compute
from collector.config import AzureReposConfig, parse_config
from collector.errors import SourceError
from collector.linking import NEVER, ChangeTable, deliveries
from collector.model import Change, Deployment, Link
from collector.runner import Runner
from collector.sources.azure_repos import PRS_TOP, AzureReposSource
from collector.store import Store
from sandbox.app import Sandbox, SandboxOptions
from sandbox.azure.repos import COMMITS_PAGE
from sandbox.server import FaultPlan, Request, Response, Router, SandboxHTTPServer

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "azure"
#: the official repository list's Fabrikam-Fiber-Git, whose pull requests the replay serves
REPO = "278d5cd2-584d-4b63-824a-2ba458937249"


def released_at(changes: list[Change], deployments: list[Deployment], links: list[Link]) -> dict[str, float]:
    """work item ref → the finish of the first production deployment that released it."""
    table = ChangeTable.from_records(changes, deployments, links)
    first = deliveries(table).item.tolist()
    return {ref: float(table.d_finish[row]) for ref, row in zip(table.items, first, strict=True) if row != NEVER}


def repos_config(url: str, project: str = "Fabrikam", repositories: list[str] | None = None) -> AzureReposConfig:
    return AzureReposConfig(
        name="repos",
        kind="azure_repos",
        organization_url=url,
        project=project,
        token=TOKEN,
        repositories=repositories or ["*"],
    )


def expected_pull_requests(truth: dict[str, Any], project: str, names: set[str] | None = None) -> dict[str, Any]:
    return {
        p["native_id"]: (
            p["ref"],
            p["service"],
            p["kind"],
            p["first_commit_at"],
            p["merged_at"],
            sorted(p["commits"]),
            p["ready_at"],
            p["first_review_at"],
        )
        for p in truth["pull_requests"]
        if p["project"] == project and (names is None or p["repository"] in names)
    }


def stored_pull_requests(store: Store) -> dict[str, Any]:
    return {
        c.native_id: (
            c.ref,
            c.service,
            c.kind,
            c.first_commit_at.isoformat(),
            c.merged_at.isoformat() if c.merged_at else None,
            sorted(c.commits),
            c.ready_at.isoformat() if c.ready_at else None,
            c.first_review_at.isoformat() if c.first_review_at else None,
        )
        for c in store.changes("repos")
    }


def expected_links(truth: dict[str, Any], project: str, names: set[str] | None = None) -> set[tuple[str, str]]:
    return {
        (item, p["ref"])
        for p in truth["pull_requests"]
        if p["project"] == project and (names is None or p["repository"] in names)
        for item in p["work_items"]
    }


def minimum_requests(truth: dict[str, Any], project: str, repositories: int) -> int:
    """The fewest requests a full sync can make: 1 repository list + per repository the completed
    pull request pages (``$top`` 100; a full last page needs one more to know it was the last) + per
    pull request its commit pages (the sandbox serves ``COMMITS_PAGE`` a page), its threads and its
    work items. A squash merge's commit is not one of the pull request's own commits."""
    prs = [p for p in truth["pull_requests"] if p["project"] == project]
    per_repo = Counter(p["repository"] for p in prs)
    total = 1 + repositories - len(per_repo)  # repositories without pull requests: one empty page
    total += sum(n // PRS_TOP + 1 for n in per_repo.values())
    for p in prs:
        own = len(p["commits"]) - (1 if p["squash"] else 0)
        total += max(1, math.ceil(own / COMMITS_PAGE)) + 2
    return total


# -- against the sandbox ------------------------------------------------------------------------------------------


def test_a_full_sync_stores_every_completed_pull_request_as_the_truth_has_it(tmp_path: Path) -> None:
    with start_sandbox(work_items=200) as sandbox:
        store = Store(f"sqlite:///{tmp_path}/repos.db")
        before = requests_made(sandbox.server)
        report = AzureReposSource(repos_config(f"{sandbox.url}/contoso"), context()).sync(store)
        spent = requests_made(sandbox.server) - before
        truth = sandbox.truth()["azure"]

    assert not report.problems
    expected = expected_pull_requests(truth, "Fabrikam")
    assert stored_pull_requests(store) == expected
    assert {(link.work_item, link.target) for link in store.links("repos")} == expected_links(truth, "Fabrikam")
    assert not store.rejection_counts()
    # the sandbox's awkward variations are all there and all read right
    prs = [p for p in truth["pull_requests"] if p["project"] == "Fabrikam"]
    assert any(p["draft"] and p["ready_at"] > p["created_at"] for p in prs)  # published later
    assert any(p["first_review_at"] is None for p in prs)  # nobody else looked
    assert any(len(p["commits"]) > COMMITS_PAGE for p in prs)  # commits over several pages
    assert any(p["squash"] for p in prs) and any(not p["squash"] for p in prs)
    assert spent == minimum_requests(truth, "Fabrikam", repositories=2)


def test_named_repositories_are_the_only_ones_read(tmp_path: Path) -> None:
    with start_sandbox(work_items=150, seed=4) as sandbox:
        store = Store(f"sqlite:///{tmp_path}/repos.db")
        report = AzureReposSource(
            repos_config(f"{sandbox.url}/contoso", "Tailspin", ["MOBILE", "nope"]), context()
        ).sync(store)
        truth = sandbox.truth()["azure"]
    assert report.problems == ["repository 'nope' not found in project 'Tailspin'"]
    assert stored_pull_requests(store) == expected_pull_requests(truth, "Tailspin", {"mobile"})
    assert {(lk.work_item, lk.target) for lk in store.links("repos")} == expected_links(truth, "Tailspin", {"mobile"})


def test_an_idle_pass_asks_each_repository_once(tmp_path: Path) -> None:
    with start_sandbox(work_items=200) as sandbox:
        store = Store(f"sqlite:///{tmp_path}/repos.db")
        source = AzureReposSource(repos_config(f"{sandbox.url}/contoso"), context())
        source.sync(store)
        digest = store.content_digest()
        before = requests_made(sandbox.server)
        source.sync(store)  # the repository list is trusted for an hour
        assert requests_made(sandbox.server) - before == 2  # web, payments
        before = requests_made(sandbox.server)
        AzureReposSource(repos_config(f"{sandbox.url}/contoso"), context()).sync(store)  # a restarted process
        assert requests_made(sandbox.server) - before == 3  # + the repository list: one request a stream
        assert store.content_digest() == digest


def test_pull_requests_completed_after_a_sync_are_read_by_the_next_one_alone(tmp_path: Path) -> None:
    """The sandbox's live activity completes new pull requests (squash merges of the commits a build
    then deploys): the next pass reads those and nothing else."""
    with start_sandbox(work_items=200) as sandbox:
        store = Store(f"sqlite:///{tmp_path}/repos.db")
        source = AzureReposSource(repos_config(f"{sandbox.url}/contoso"), context())
        source.sync(store)
        old = stored_pull_requests(store)
        added = [name for step in sandbox.add_activity(steps=4)["azure"] for name in step["pull_requests"]]
        before = requests_made(sandbox.server)
        report = source.sync(store)
        spent = requests_made(sandbox.server) - before
        truth = sandbox.truth()["azure"]
    assert not report.problems
    expected = expected_pull_requests(truth, "Fabrikam")
    assert stored_pull_requests(store) == expected
    new = [p for p in truth["pull_requests"] if p["native_id"] in set(expected) - set(old)]
    assert len(new) == sum(name.split("!")[0] in ("web", "payments") for name in added) > 0
    # web's and payments' lists, then each new pull request's commit pages, threads and work items
    own = [len(p["commits"]) - (1 if p["squash"] else 0) for p in new]
    assert spent == 2 + sum(max(1, math.ceil(n / COMMITS_PAGE)) + 2 for n in own)


def test_overlap_rereads_cost_nothing_and_a_pull_request_completed_late_is_still_read(tmp_path: Path) -> None:
    """A pull request whose closedDate is older than the watermark's overlap window but which the
    list had not shown yet would be missed: the overlap is the window a late one may use. Here the
    watermark is moved back into the history and the pass re-reads everything since: the stored
    pull requests cost no request, only the list pages do."""
    with start_sandbox(work_items=200) as sandbox:
        store = Store(f"sqlite:///{tmp_path}/repos.db")
        source = AzureReposSource(repos_config(f"{sandbox.url}/contoso"), context())
        source.sync(store)
        digest = store.content_digest()
        for stream in store.watermarks("repos"):
            if stream.startswith("prs:"):  # the pull request streams; the other is the repository list
                store.set_watermark("repos", stream, "2025-06-01T00:00:00.000Z")
        before = requests_made(sandbox.server)
        source.sync(store)
        assert requests_made(sandbox.server) - before == 2
        assert store.content_digest() == digest


# -- kill -9 and resume --------------------------------------------------------------------------------------------


def cycletime_sync(config: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "collector", "sync", "--config", str(config), "--log-format", "json"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,
    )


def repos_only_config(tmp: Path, url: str, name: str) -> Path:
    path = tmp / f"{name}.yaml"
    source = azure_source("azure_repos", url, TOKEN, name="repos", max_concurrency=2)
    path.write_text(sandbox_config(f"sqlite:///{tmp}/{name}.db", [source], history="365d"))
    return path


def test_kill_9_mid_sync_then_a_fresh_sync_gives_the_uninterrupted_store(tmp_path: Path) -> None:
    with start_sandbox(work_items=200, seed=9) as sandbox:
        reference = repos_only_config(tmp_path, sandbox.url, "reference")
        assert cycletime_sync(reference, tmp_path / "reference.log").wait(timeout=120) == 0
        whole = requests_made(sandbox.server)
        want = Store(f"sqlite:///{tmp_path}/reference.db").content_digest()
        assert want["changes"], "the reference sync stored pull requests"
        for n, fraction in enumerate((0.1, 0.45, 0.8)):
            config = repos_only_config(tmp_path, sandbox.url, f"killed{n}")
            log = tmp_path / f"killed{n}.log"
            start = requests_made(sandbox.server)
            proc = cycletime_sync(config, log)
            deadline = time.monotonic() + 60
            while requests_made(sandbox.server) - start < int(whole * fraction) and proc.poll() is None:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.002)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            partial = Store(f"sqlite:///{tmp_path}/killed{n}.db").content_digest()
            assert partial["changes"] != want["changes"], "killed before the end"
            assert cycletime_sync(config, log).wait(timeout=120) == 0, log.read_text()
            got = Store(f"sqlite:///{tmp_path}/killed{n}.db").content_digest()
            assert got == want


# -- the chain: Boards item → pull request → build → production deployment -----------------------------------------


def test_a_boards_item_linked_only_to_a_pull_request_is_released_by_the_deployment_of_its_merge_commit(
    tmp_path: Path,
) -> None:
    """The pull request's merge commit is the ``sourceVersion`` of an Azure Pipelines build; the
    production deployment of that build releases the Boards items linked only to the pull request,
    with request-to-release = that deployment's finish minus the item's creation."""
    # the runner reads with the wall clock: the sandbox's history ends now, not at NOW
    with Sandbox(SandboxOptions(seed=5, work_items=300, token=TOKEN)) as sandbox:
        sources = [
            azure_source("azure_boards", sandbox.url, TOKEN),
            azure_source("azure_pipelines", sandbox.url, TOKEN, production_environments=["production"]),
            azure_source("azure_repos", sandbox.url, TOKEN, name="repos"),
        ]
        config = parse_config(sandbox_config(f"sqlite:///{tmp_path}/s.db", sources, history="400d"), {})
        store = Store(config.store)
        results = Runner(config, store, sleep=lambda s: None).run_all()
        assert all(r.ok for r in results), [r.error for r in results]
        truth = sandbox.truth()["azure"]

    items = {w["ref"]: w for w in truth["work_items"] if w["project"] == "Fabrikam"}
    prs = {p["ref"]: p for p in truth["pull_requests"] if p["project"] == "Fabrikam"}
    production = sorted(
        (
            d
            for d in truth["deployments"]
            if d["project"] == "Fabrikam" and d["production"] and d["status"] == "success"
        ),
        key=lambda d: (d["finished_at"], d["native_id"]),
    )
    # items whose only link is a pull request, and the deployment the truth says released them
    expected: dict[str, tuple[str, float]] = {}
    for ref, item in items.items():
        removed = item["history"] and item["history"][-1]["category"] == "Removed"
        if item["deleted"] or item["migrated"] or removed or not item["links"]:
            continue
        if not all(target in prs for target in item["links"]):
            continue
        shas = {f"commit:{sha}" for target in item["links"] for sha in prs[target]["commits"]}
        first = next((d for d in production if shas & {*d["contains"], f"commit:{d['sha']}"}), None)
        if first is not None:
            value = ts(first["finished_at"]) - ts(item["created_at"])
            expected[ref] = (first["native_id"], value)
            # the build it deployed built the pull request's merge commit itself
            merges = {prs[target]["merge_commit"] for target in item["links"]}
            assert first["sha"] in merges or shas & set(first["contains"])
    assert len(expected) >= 5, "the sandbox should release several Boards items only through pull requests"
    assert any(
        d["sha"] == prs[t]["merge_commit"]
        for ref in expected
        for t in items[ref]["links"]
        for d in production
        if d["native_id"] == expected[ref][0]
    ), "some are released by the deployment of the build of the merge commit itself"

    finished = {d["native_id"]: ts(d["finished_at"]) for d in production}
    found = released_at(store.changes(), store.deployments(), store.links())
    assert {ref: found[ref] for ref in expected if ref in found} == {
        ref: finished[native] for ref, (native, _) in expected.items()
    }
    # without the pull requests nothing links them to a deployment
    without = released_at(
        store.changes("pipelines"), store.deployments(), [lk for lk in store.links() if lk.source != "repos"]
    )
    assert not set(expected) & set(without)
    figures = compute(store.work_items(), store.changes(), store.deployments(), store.links())
    observed = Counter(
        round(float(v), 3)
        for (source, *_rest, env), pairs in figures.request_to_release.by_labels.items()
        if source == "boards" and env == "production"
        for v in pairs[:, 1]
    )
    wanted = Counter(round(value, 3) for _, value in expected.values())
    assert not wanted - observed, "every such item's request-to-release is observed"


def ts(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# -- official shapes and hostile records ----------------------------------------------------------------------------


def example(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8-sig"))["responses"]["200"]["body"]


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


class Replay:
    """Serves recorded answers for one project, ``Fabrikam``: the repository list, one repository's
    completed pull requests and, per pull request, its commits, threads and work items."""

    def __init__(self, repositories: Any, pulls: Any, details: dict[int, tuple[Any, Any, Any]]) -> None:
        self.repositories = repositories
        self.pulls = pulls
        self.details = details
        self.asked: list[str] = []

    def register(self, router: Router) -> None:
        base = r"/fabrikam/Fabrikam/_apis/git/repositories"
        router.add("GET", base, "repositories", lambda req: self.answer(req, self.repositories))
        router.add("GET", base + r"/(?P<repo>[^/]+)/pullrequests", "pulls", lambda req: self.answer(req, self.pulls))
        for n, resource in enumerate(("commits", "threads", "workitems")):
            router.add(
                "GET",
                base + r"/(?P<repo>[^/]+)/pullRequests/(?P<pr>\d+)/" + resource,
                resource,
                lambda req, n=n: self.answer(req, self.details[int(req.params["pr"])][n]),
            )

    def answer(self, req: Request, body: Any) -> Response:
        self.asked.append(req.path)
        return Response(200, body)


@contextmanager
def replaying(replay: Replay) -> Iterator[str]:
    router = Router()
    replay.register(router)
    server = SandboxHTTPServer(("127.0.0.1", 0), router, FaultPlan(), lambda req: None)
    import threading

    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/fabrikam"
    finally:
        server.shutdown()
        server.server_close()


def official() -> tuple[Any, Any, dict[int, tuple[Any, Any, Any]]]:
    repositories = example("GET__git_repositories.json")
    pulls = example("GET__git_repositories__repositoryId__pullRequests_status-completed.json")
    details = {
        20: (
            fixture("pull_request_commits.json"),
            example("GET__git_repositories__repositoryId__pullRequests__pullRequestId__threads.json"),
            fixture("pull_request_workitems.json"),
        )
    }
    return repositories, pulls, details


def test_the_official_examples_become_a_change_and_its_links(tmp_path: Path) -> None:
    repositories, pulls, details = official()
    # a second copy of the pull request opened by someone else: Normal Paulk's vote then reviews it
    other = copy.deepcopy(pulls["value"][0])
    other["pullRequestId"] = 21
    other["createdBy"]["id"] = "2428198325304a9caeb788d60d57acfd"  # Johnnie McLeod (an id without dashes)
    pulls["value"].append(other)
    details[21] = details[20]
    replay = Replay(repositories, pulls, details)
    with replaying(replay) as url:
        store = Store(f"sqlite:///{tmp_path}/shapes.db")
        config = repos_config(url, repositories=["Fabrikam-Fiber-Git"])
        source = AzureReposSource(config, context(timedelta(days=3650)))
        source.sync(store)
        asked = len(replay.asked)
        source.sync(store)  # 7-digit closedDates come back from the store equal enough: nothing reopened
        assert replay.asked[asked:] == [f"/fabrikam/Fabrikam/_apis/git/repositories/{REPO}/pullrequests"]
    changes = {c.native_id: c for c in store.changes("repos")}
    repo = REPO
    mine, theirs = changes[f"{repo}/20"], changes[f"{repo}/21"]
    assert mine.ref == f"adopr:{repo}/20" and mine.service == "Fabrikam-Fiber-Git" and mine.kind == "pull_request"
    assert mine.merged_at.isoformat() == "2016-11-01T16:30:02.041391+00:00"  # closedDate, 7 digits read
    assert mine.ready_at is not None and mine.ready_at.isoformat() == "2016-11-01T16:28:08.890011+00:00"
    # the earliest author date, not the first listed and not a committer date
    assert mine.first_commit_at.isoformat() == "2016-10-28T09:02:47.123000+00:00"
    assert set(mine.commits) == {
        "ae875f124fe5c625664fae12af26cc294ed1575f",
        "8c9396b5cf22f929767c7172e9dbbe777ddc6357",
        "b60280bc6e62e2f880f1b63c1e24987664d3bda3",
        "1e924c570d532d92c12e955b9f8948935f54944e",  # lastMergeCommit
    }
    # every comment and the vote are its creator's own, system threads are nobody's
    assert mine.first_review_at is None
    # opened by someone else, the creator's vote (a VoteUpdate system thread) is the first review
    assert (
        theirs.first_review_at is not None and theirs.first_review_at.isoformat() == "2016-11-01T16:30:36.580000+00:00"
    )
    assert {(lk.work_item, lk.target) for lk in store.links("repos")} == {
        ("ado:297", f"adopr:{repo}/20"),
        ("ado:299", f"adopr:{repo}/20"),
        ("ado:297", f"adopr:{repo}/21"),
        ("ado:299", f"adopr:{repo}/21"),
    }
    assert not store.rejection_counts()


def test_hostile_records_are_rejected_and_counted_and_the_rest_is_kept(tmp_path: Path) -> None:
    repositories, pulls, details = official()
    good = pulls["value"][0]

    def variant(number: int, **fields: Any) -> dict[str, Any]:
        pr = copy.deepcopy(good)
        pr["pullRequestId"] = number
        for key, value in fields.items():
            if value is None:
                pr.pop(key, None)
            else:
                pr[key] = value
        return pr

    pulls["value"] = [
        "not a pull request",
        variant(30, closedDate="yesterday"),  # bad_timestamp
        variant(31, creationDate=None),  # missing_field
        variant(32, closedDate="2016-10-01T00:00:00Z"),  # closed before it was created
        variant(33, pullRequestId=None),  # replaced below: an id that is no number
        variant(34, lastMergeCommit="1e924c57"),  # wrong_type
        variant(35, closedDate="9999-12-31T23:59:59-01:00"),  # past the last representable instant
        variant(36, lastMergeCommit=None),  # no merge commit and, below, no commits: nothing to deliver
        variant(37),  # fine, with junk inside its commits, threads and work items
        good,
    ]
    pulls["value"][4]["pullRequestId"] = "33"
    details[36] = ({"count": 0, "value": []}, {"value": []}, {"value": []})
    commits, threads, items = copy.deepcopy(details[20])
    commits["value"] += [None, {"commitId": "zz"}, {"commitId": "a" * 40, "author": {"date": "never"}}]
    threads["value"] += [7, {"comments": "none"}, {"properties": [], "comments": [None, {"author": "x"}]}]
    items["value"] += [{"id": "-3"}, {"id": "x"}, "y", {"id": 10**20}]
    details[37] = (commits, threads, items)
    replay = Replay(repositories, pulls, details)
    with replaying(replay) as url:
        store = Store(f"sqlite:///{tmp_path}/hostile.db")
        config = repos_config(url, repositories=["Fabrikam-Fiber-Git"])
        report = AzureReposSource(config, context(timedelta(days=3650))).sync(store)
    assert not report.problems
    repo = REPO
    assert {c.native_id for c in store.changes("repos")} == {f"{repo}/20", f"{repo}/37"}
    kept = next(c for c in store.changes("repos") if c.native_id.endswith("/37"))
    assert "a" * 40 in kept.commits  # its sha is good; its author date is not, and is not used
    assert kept.first_commit_at.isoformat() == "2016-10-28T09:02:47.123000+00:00"
    assert store.rejection_counts() == Counter(
        {
            ("repos", "wrong_type"): 3,  # not an object, a string id, a string merge commit
            ("repos", "bad_timestamp"): 2,
            ("repos", "missing_field"): 2,  # no creationDate; nothing it is made of
            ("repos", "end_before_start"): 1,
        }
    )
    # a page that is no list of pull requests fails the pass with a clear error; nothing is skipped
    pulls_page: dict[str, Any] = {"message": "proxy says hello"}
    replay = Replay(repositories, pulls_page, details)
    with replaying(replay) as url:
        broken = Store(f"sqlite:///{tmp_path}/broken.db")
        with pytest.raises(SourceError, match="pull_requests: unexpected response shape"):
            AzureReposSource(repos_config(url, repositories=["Fabrikam-Fiber-Git"]), context()).sync(broken)
        assert list(broken.watermarks("repos")) == ["repositories"]  # the list read; no pull request stream moved


def test_config_names_repositories_or_star() -> None:
    base = "sources:\n  - {name: r, kind: azure_repos, organization_url: 'http://x/o', project: P, token: t, "
    assert parse_config(base + "repositories: [web, api]}", {}).sources[0].repositories == ["web", "api"]
    assert parse_config(base[:-2] + "}", {}).sources[0].repositories == ["*"]
    for bad, message in (
        ("['*', web]", "list names or"),
        ("['we*']", "only a lone *"),
        ("[]", "at least 1 item"),
    ):
        with pytest.raises(Exception, match=message):
            parse_config(base + f"repositories: {bad}}}", {})
