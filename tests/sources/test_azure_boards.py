"""Azure Boards source: revisions, state categories, artifact links and rejections, over real HTTP."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure_replay import PROJECT, FakeBoards, replay_boards_config, serving
from azure_truth import (
    NOW,
    TOKEN,
    azure_only,
    boards_config,
    boards_minimum_requests,
    context,
    expected_item_links,
    expected_rejections,
    expected_work_items,
    requests_made,
    start_sandbox,
    store_killed_at_commit,
    stored_work_items,
)

from collector.config import parse_config
from collector.figures import Settings
from collector.model import Category, ado_pr_ref, ado_ref, build_ref, commit_ref
from collector.runner import Runner
from collector.sources import SOURCES, azure_boards
from collector.sources.azure_boards import AzureBoardsSource, artifact_ref
from collector.sources.base import SourceContext
from collector.store import Store
from exporters.prometheus import self_families
from sandbox.app import Sandbox
from sandbox.azure.common import Throttle

SHA = "9991b4f66def4c0a9ad8f9f27043ece7eddcf1c7"
REPO = "278d5cd2-584d-4b63-824a-2ba458937249"
PROJ = "ac7c05bb-7f8e-4880-85a6-e08f37fd4a10"
CONN = "0A1B2C3D-1111-2222-3333-444455556666"


def rev(
    item: int,
    n: int,
    state: str,
    changed: str,
    *,
    type_: str = "User Story",
    area: str = "Fabrikam\\Payments",
    created: str = "2026-01-05T09:00:00.123Z",
    **extra: Any,
) -> dict[str, Any]:
    fields = {
        "System.Id": item,
        "System.Rev": n,
        "System.WorkItemType": type_,
        "System.State": state,
        "System.CreatedDate": created,
        "System.ChangedDate": changed,
        "System.AreaPath": area,
        "System.IterationPath": "Fabrikam\\Sprint 1",
        "System.TeamProject": PROJECT,
    }
    fields.update(extra)
    return {"id": item, "rev": n, "fields": {k: v for k, v in fields.items() if v is not None}}


def artifact(url: str, name: str) -> dict[str, Any]:
    return {"rel": "ArtifactLink", "url": url, "attributes": {"name": name, "authorizedDate": "2026-01-06T00:00:00Z"}}


REVISIONS = [
    rev(1, 1, "New", "2026-01-05T09:00:00.123Z"),
    rev(2, 1, "New", "2026-01-06T10:00:00Z", type_="Bug", area="Fabrikam", created="2026-01-06T10:00:00Z"),
    rev(1, 2, "Active", "2026-01-07T08:30:00.1234567Z"),
    rev(9, 1, "To Do", "2026-01-07T09:00:00Z", type_="Task"),  # not a configured type: ignored, not rejected
    rev(1, 3, "Code Review", "2026-01-09T16:00:00Z"),
    rev(3, 1, "New", "2026-01-10T10:00:00Z", created="2026-01-10T10:00:00Z"),
    rev(2, 2, "Resolved", "2026-01-11T10:00:00Z", type_="Bug", area="Fabrikam", created="2026-01-06T10:00:00Z"),
    rev(4, 1, "New", None),  # no ChangedDate
    rev(5, 1, "Bogus", "2026-01-12T10:00:00Z"),  # a state the process does not have
    rev(6, 1, "New", "2026-01-01T10:00:00Z"),  # changed before it was created
    {"id": "7", "rev": 1, "fields": {}},  # id of the wrong type
    rev(8, 1, "New", "2026-01-12T11:00:00Z", area="Fabrikam\\" + "x" * 10_000),  # huge string
    rev(10, 1, "New", "not a date"),
    rev(1, 4, "Closed", "2026-01-14T12:00:00Z"),
    rev(3, 2, "New", "2026-01-15T10:00:00Z", created="2026-01-10T10:00:00Z", **{"System.IsDeleted": True}),
]
RELATIONS = {
    1: [
        artifact(f"vstfs:///Git/Commit/{PROJ}%2F{REPO}%2F{SHA}", "Fixed in Commit"),
        artifact(f"vstfs:///Git/PullRequestId/{PROJ}%2f{REPO}%2f42", "Pull Request"),
        artifact("vstfs:///Build/Build/1234", "Integrated in build"),
        artifact(f"vstfs:///GitHub/PullRequest/{CONN}%2F17", "GitHub Pull Request"),
        artifact(f"vstfs:///GitHub/Commit/{CONN}%2F{SHA.upper()}", "GitHub Commit"),
        {"rel": "System.LinkTypes.Hierarchy-Reverse", "url": "https://x/_apis/wit/workItems/2", "attributes": {}},
        {"rel": "Hyperlink", "url": "https://example.com", "attributes": {}},
        artifact("vstfs:///Wiki/WikiPage/abc", "Wiki Page"),
    ],
    2: [artifact("vstfs:///Build/Build/1240", "Found in build")],
}


@pytest.fixture
def replay() -> Iterator[tuple[FakeBoards, str]]:
    fake = FakeBoards(revisions=[dict(r) for r in REVISIONS], relations=RELATIONS, deleted={3})
    with serving(fake) as url:
        yield fake, url


@pytest.fixture
def boards_store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path}/boards.db")


def test_registered_under_its_kind() -> None:
    assert SOURCES["azure_boards"] is AzureBoardsSource


def test_revisions_become_histories_with_the_process_categories(
    replay: tuple[FakeBoards, str], boards_store: Store
) -> None:
    _fake, url = replay
    AzureBoardsSource(replay_boards_config(url), context()).sync(boards_store)
    items = {w.native_id: w for w in boards_store.work_items("boards")}
    assert sorted(items) == ["1", "2", "3"]

    story = items["1"]
    assert (story.ref, story.project, story.team, story.type) == (
        ado_ref(1),
        PROJECT,
        "Fabrikam\\Payments",
        "User Story",
    )
    assert story.created_at == datetime(2026, 1, 5, 9, 0, 0, 123000, tzinfo=UTC)
    assert [(s.seq, s.state, s.category) for s in story.history] == [
        (1, "New", Category.PROPOSED),
        (2, "Active", Category.IN_PROGRESS),
        (3, "Code Review", Category.IN_PROGRESS),
        (4, "Closed", Category.COMPLETED),
    ]
    assert story.history[1].at == datetime(2026, 1, 7, 8, 30, 0, 123456, tzinfo=UTC)

    bug = items["2"]
    assert bug.team == PROJECT  # the root area path is the project itself
    assert [s.category for s in bug.history] == [Category.PROPOSED, Category.RESOLVED]

    deleted = items["3"]
    assert [s.category for s in deleted.history] == [Category.PROPOSED, Category.REMOVED]


def test_artifact_links_of_the_items_a_page_touched(replay: tuple[FakeBoards, str], boards_store: Store) -> None:
    fake, url = replay
    AzureBoardsSource(replay_boards_config(url), context()).sync(boards_store)
    links = {(link.work_item, link.target) for link in boards_store.links("boards")}
    assert links == {
        (ado_ref(1), commit_ref(SHA)),
        (ado_ref(1), ado_pr_ref(REPO, 42)),
        (ado_ref(1), build_ref(1234)),
        (ado_ref(1), f"ghconn:{CONN.lower()}#17"),
        (ado_ref(2), build_ref(1240)),
    }
    posts = [body for method, path, _, body in fake.requests if path.endswith("/workitemsbatch")]
    assert all(body["$expand"] == "Relations" and "fields" not in body for body in posts)
    assert all(len(body["ids"]) <= 200 for body in posts)


def test_malformed_revisions_are_rejected_with_a_reason_never_a_crash(
    replay: tuple[FakeBoards, str], boards_store: Store
) -> None:
    _fake, url = replay
    AzureBoardsSource(replay_boards_config(url), context()).sync(boards_store)
    assert boards_store.rejection_counts() == {
        ("boards", "missing_field"): 1,
        ("boards", "unknown_state"): 1,
        ("boards", "end_before_start"): 1,
        ("boards", "wrong_type"): 1,
        ("boards", "too_large"): 1,
        ("boards", "bad_timestamp"): 1,
    }
    assert not {"4", "5", "6", "7", "8", "10"} & {w.native_id for w in boards_store.work_items("boards")}


def test_pages_follow_the_continuation_token_and_keep_the_filters(
    replay: tuple[FakeBoards, str], boards_store: Store
) -> None:
    fake, url = replay
    AzureBoardsSource(replay_boards_config(url), context()).sync(boards_store)
    pages = [query for _, path, query, _ in fake.requests if path.endswith("/workitemrevisions")]
    assert len(pages) == 5  # 15 revisions, 3 a page
    first, second = pages[0], pages[1]
    assert first["startDateTime"] == ["2025-03-01T00:00:00.000Z"] and "continuationToken" not in first
    # page 1 had its token only inside nextLink (as in the official example); later pages in the body too
    assert second["continuationToken"] == ["3;1"] and "startDateTime" not in second
    for query in pages:
        assert query["types"] == ["User Story,Bug"] and query["includeDeleted"] == ["true"]
        assert "System.State" in query["fields"][0].split(",") and "System.Title" not in query["fields"][0]
        assert query["api-version"] == ["7.1-preview.2"]
    assert boards_store.watermark("boards", "revisions") == "15;3"


def test_a_second_pass_reads_one_page_and_changes_nothing(replay: tuple[FakeBoards, str], boards_store: Store) -> None:
    fake, url = replay
    source = AzureBoardsSource(replay_boards_config(url), context())
    source.sync(boards_store)
    before = boards_store.content_digest()
    fake.requests.clear()
    source.sync(boards_store)
    assert [path.rsplit("/", 1)[-1] for _, path, _, _ in fake.requests] == ["workitemrevisions"]
    assert boards_store.content_digest() == before

    fake.revisions.append(
        rev(2, 3, "Closed", "2026-02-01T10:00:00Z", type_="Bug", area="Fabrikam", created="2026-01-06T10:00:00Z")
    )
    fake.requests.clear()
    source.sync(boards_store)
    assert [path.rsplit("/", 1)[-1] for _, path, _, _ in fake.requests] == ["workitemrevisions", "workitemsbatch"]
    bug = next(w for w in boards_store.work_items("boards") if w.native_id == "2")
    assert [s.state for s in bug.history] == ["New", "Resolved", "Closed"]


def test_a_pass_interrupted_after_a_page_resumes_where_it_stopped(
    replay: tuple[FakeBoards, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, url = replay
    monkeypatch.setattr(azure_boards, "COMMIT_REVISIONS", 1)  # a transaction per page of 3
    whole = Store(f"sqlite:///{tmp_path}/whole.db")
    AzureBoardsSource(replay_boards_config(url), context()).sync(whole)

    class CrashAfter(Store):
        """Fails the k-th transaction just before it commits, like a process killed mid-write."""

        commits = 0

        def commit(self, *args: Any, **kwargs: Any) -> None:
            CrashAfter.commits += 1
            if CrashAfter.commits == 3:

                def crash() -> None:
                    raise KeyboardInterrupt("killed")

                kwargs["before_commit"] = crash
            super().commit(*args, **kwargs)

    path = f"sqlite:///{tmp_path}/crash.db"
    with pytest.raises(KeyboardInterrupt):
        AzureBoardsSource(replay_boards_config(url), context()).sync(CrashAfter(path))
    resumed = Store(path)
    assert resumed.watermark("boards", "revisions") == "6;3"  # two pages committed, the third rolled back
    fake.requests.clear()
    AzureBoardsSource(replay_boards_config(url), context()).sync(resumed)
    tokens = [q.get("continuationToken") for _, p, q, _ in fake.requests if p.endswith("/workitemrevisions")]
    assert tokens[0] == ["6;3"]
    assert resumed.content_digest() == whole.content_digest()


@pytest.mark.parametrize(
    ("per_transaction", "after_pages"),
    [(1, [1, 2, 3, 4, 5]), (6, [2, 4, 5]), (None, [5])],
)
def test_consecutive_pages_are_stored_together_up_to_commit_revisions(
    replay: tuple[FakeBoards, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    per_transaction: int | None,
    after_pages: list[int],
) -> None:
    """Five pages of 3 revisions: a transaction per page, per 6 revisions, or (the default, 5,000)
    one for all; the stored content is the same, and each transaction carries the token that
    follows its last page."""
    _, url = replay
    seen: list[str | None] = []

    class Watching(Store):
        def commit(self, *args: Any, **kwargs: Any) -> None:
            if kwargs.get("stream") == "revisions":
                seen.append(kwargs.get("watermark"))
            super().commit(*args, **kwargs)

    per_page = Watching(f"sqlite:///{tmp_path}/per_page.db")
    with monkeypatch.context() as m:
        m.setattr(azure_boards, "COMMIT_REVISIONS", 1)
        AzureBoardsSource(replay_boards_config(url), context()).sync(per_page)
    page_tokens, seen[:] = list(seen), []
    assert len(page_tokens) == 5

    if per_transaction is not None:
        monkeypatch.setattr(azure_boards, "COMMIT_REVISIONS", per_transaction)
    store = Watching(f"sqlite:///{tmp_path}/batched.db")
    AzureBoardsSource(replay_boards_config(url), context()).sync(store)
    assert seen == [page_tokens[n - 1] for n in after_pages]
    assert store.content_digest() == per_page.content_digest()


def test_each_item_s_relations_are_read_once_a_pass_however_many_pages_touched_it(
    replay: tuple[FakeBoards, str], boards_store: Store
) -> None:
    fake, url = replay
    AzureBoardsSource(replay_boards_config(url), context()).sync(boards_store)
    posts = [body["ids"] for _, path, _, body in fake.requests if path.endswith("/workitemsbatch")]
    # item 1 is on pages 1, 2 and 5; item 3 was deleted on page 5, so it has no relations to read
    assert posts == [[1, 2]]
    assert fake.requests[-1][1].endswith("/workitemsbatch")  # after the last page
    assert boards_store.queued("boards", "relations") == []


def test_a_crash_while_reading_relations_leaves_them_queued_for_the_next_pass(
    replay: tuple[FakeBoards, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, url = replay
    monkeypatch.setattr(azure_boards, "COMMIT_REVISIONS", 1)  # a transaction per page of 3
    whole = Store(f"sqlite:///{tmp_path}/whole.db")
    AzureBoardsSource(replay_boards_config(url), context()).sync(whole)

    path = f"sqlite:///{tmp_path}/killed.db"
    with pytest.raises(SystemExit):  # the five pages commit; the relations' transaction dies
        AzureBoardsSource(replay_boards_config(url), context()).sync(store_killed_at_commit(path, 6))
    killed = Store(path)
    assert killed.watermark("boards", "revisions") == "15;3"  # the stream is past every page...
    assert killed.queued("boards", "relations") == ["1", "2"]  # ...and its items wait for their links
    assert killed.links("boards") == []

    fake.requests.clear()
    # a new process: it reads the process's states first
    AzureBoardsSource(replay_boards_config(url), context()).sync(killed)
    assert [p.rsplit("/", 1)[-1] for _, p, _, _ in fake.requests] == [
        "workitemtypes",
        "workitemrevisions",
        "workitemsbatch",
    ]
    assert killed.content_digest() == whole.content_digest()


def test_team_from_iteration_path_or_a_field(replay: tuple[FakeBoards, str], tmp_path: Path) -> None:
    fake, url = replay
    by_iteration = Store(f"sqlite:///{tmp_path}/it.db")
    AzureBoardsSource(replay_boards_config(url, team_from="iteration_path"), context()).sync(by_iteration)
    assert {w.team for w in by_iteration.work_items()} == {"Fabrikam\\Sprint 1"}

    fake.revisions = [
        rev(1, 1, "New", "2026-01-05T09:00:00.123Z", **{"Custom.Team": "Blue"}),
        rev(2, 1, "New", "2026-01-06T10:00:00Z", type_="Bug", created="2026-01-06T10:00:00Z"),
    ]
    by_field = Store(f"sqlite:///{tmp_path}/field.db")
    AzureBoardsSource(replay_boards_config(url, team_from="field:Custom.Team"), context()).sync(by_field)
    assert {w.native_id: w.team for w in by_field.work_items()} == {"1": "Blue", "2": ""}
    query = next(
        q for _, p, q, _ in fake.requests if p.endswith("/workitemrevisions") and "Custom.Team" in q["fields"][0]
    )
    assert query


def test_without_the_reporting_api_it_falls_back_to_wiql_and_updates(
    replay: tuple[FakeBoards, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake, url = replay
    reporting = Store(f"sqlite:///{tmp_path}/reporting.db")
    AzureBoardsSource(replay_boards_config(url), context()).sync(reporting)

    fake.reporting = False
    fallback = Store(f"sqlite:///{tmp_path}/wiql.db")
    report = AzureBoardsSource(replay_boards_config(url), context()).sync(fallback)
    assert report.details["mode"] == "wiql"
    assert "falling back to WIQL" in caplog.text
    live = [w for w in reporting.work_items() if w.native_id != "3"]  # WIQL cannot see deleted items
    assert sorted(fallback.work_items(), key=lambda w: w.native_id) == sorted(live, key=lambda w: w.native_id)
    assert set(fallback.links()) == set(reporting.links())
    assert fallback.watermark("boards", "wiql") == "2026-01-14T12:00:00.000Z"


@pytest.mark.parametrize(
    ("url", "ref"),
    [
        (f"vstfs:///Git/Commit/{PROJ}%2F{REPO}%2F{SHA.upper()}", commit_ref(SHA)),
        (f"VSTFS:///git/commit/{PROJ}%2f{REPO}%2f{SHA}", commit_ref(SHA)),
        (f"vstfs:///Git/PullRequestId/{PROJ}%2F{REPO.upper()}%2F7", ado_pr_ref(REPO, 7)),
        ("vstfs:///Build/Build/99", build_ref(99)),
        (f"vstfs:///GitHub/Commit/{CONN}%2F{SHA}", commit_ref(SHA)),
        (f"vstfs:///GitHub/PullRequest/{CONN}%2F5", f"ghconn:{CONN.lower()}#5"),
        ("vstfs:///Build/Build/abc", None),
        (f"vstfs:///Git/Commit/{PROJ}%2F{REPO}", None),
        ("vstfs:///ReleaseManagement/Environment/1:2:3", None),
        ("https://example.com/commit/" + SHA, None),
        (None, None),
        (12, None),
    ],
)
def test_artifact_link_urls(url: Any, ref: str | None) -> None:
    assert artifact_ref(url) == ref


# -- against the sandbox's seeded organisation ----------------------------------------------------------


@pytest.fixture
def boards_sandbox() -> Iterator[Sandbox]:
    sandbox = start_sandbox(work_items=200)
    yield sandbox
    sandbox.stop()


def test_a_full_sync_equals_the_sandbox_truth(boards_sandbox: Sandbox, boards_store: Store) -> None:
    AzureBoardsSource(boards_config(boards_sandbox.azure_url), context()).sync(boards_store)
    truth = boards_sandbox.truth()["azure"]
    expected = expected_work_items(truth, "Fabrikam")
    assert len(expected) > 100
    assert stored_work_items(boards_store) == expected
    assert {(link.work_item, link.target) for link in boards_store.links("boards")} == expected_item_links(
        truth, "Fabrikam"
    )
    # the custom state and deletions are exercised, not just present in the data
    histories = [h for w in expected.values() for h in w[5]]
    assert any(state == "In Review" for _, _, state, _ in histories)
    assert any(category == "Removed" for _, _, _, category in histories)


def test_request_count_of_a_full_sync_is_near_the_page_size_minimum(
    boards_sandbox: Sandbox, boards_store: Store
) -> None:
    truth = boards_sandbox.truth()["azure"]
    before = requests_made(boards_sandbox.server)
    AzureBoardsSource(boards_config(boards_sandbox.azure_url), context()).sync(boards_store)
    made = requests_made(boards_sandbox.server) - before
    minimum = boards_minimum_requests(truth, "Fabrikam", boards_sandbox.azure.page_size)
    assert minimum <= made <= math.ceil(minimum * 1.1), (made, minimum)


def test_no_new_activity_costs_one_request_and_changes_nothing_then_new_activity_appears(
    boards_sandbox: Sandbox, boards_store: Store
) -> None:
    source = AzureBoardsSource(boards_config(boards_sandbox.azure_url), context())
    source.sync(boards_store)
    before, digest = requests_made(boards_sandbox.server), boards_store.content_digest()
    source.sync(boards_store)
    assert requests_made(boards_sandbox.server) - before == 1  # the revisions stream's token, nothing new
    assert boards_store.content_digest() == digest

    added = boards_sandbox.add_activity(steps=3)["azure"]
    assert any(step["revisions"] for step in added)
    source.sync(boards_store)
    truth = boards_sandbox.truth()["azure"]
    assert stored_work_items(boards_store) == expected_work_items(truth, "Fabrikam")
    assert {(link.work_item, link.target) for link in boards_store.links("boards")} == expected_item_links(
        truth, "Fabrikam"
    )


def test_a_sync_killed_after_a_batch_and_resumed_ends_like_an_uninterrupted_one(
    boards_sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    boards_sandbox.azure.page_size = 50
    monkeypatch.setattr(azure_boards, "COMMIT_REVISIONS", 300)  # transactions of 6 pages
    assert sum(len(w["history"]) for w in boards_sandbox.truth()["azure"]["work_items"]) > 2 * 300
    whole = Store(f"sqlite:///{tmp_path}/whole.db")
    AzureBoardsSource(boards_config(boards_sandbox.azure_url), context()).sync(whole)

    path = f"sqlite:///{tmp_path}/killed.db"
    with pytest.raises(SystemExit):
        AzureBoardsSource(boards_config(boards_sandbox.azure_url), context()).sync(store_killed_at_commit(path, 2))
    resumed = Store(path)
    assert len(resumed.work_items()) < len(whole.work_items())
    AzureBoardsSource(boards_config(boards_sandbox.azure_url), context()).sync(resumed)
    assert resumed.content_digest() == whole.content_digest()


def test_429_5xx_resets_and_truncated_bodies_do_not_change_the_result(boards_sandbox: Sandbox, tmp_path: Path) -> None:
    boards_sandbox.azure.page_size = 50  # enough requests for the faults to land on every kind of page
    clean = Store(f"sqlite:///{tmp_path}/clean.db")
    AzureBoardsSource(boards_config(boards_sandbox.azure_url), context()).sync(clean)
    boards_sandbox.server.faults.rate = 0.2
    faulty = Store(f"sqlite:///{tmp_path}/faulty.db")
    AzureBoardsSource(boards_config(boards_sandbox.azure_url), context()).sync(faulty)
    assert sum(boards_sandbox.server.stats.snapshot()["faults"].values()) > 2
    assert faulty.content_digest() == clean.content_digest()


def test_malformed_revisions_of_the_sandbox_are_counted_as_rejections(boards_store: Store) -> None:
    sandbox = start_sandbox(work_items=150, malformed=18)
    try:
        AzureBoardsSource(boards_config(sandbox.azure_url), context()).sync(boards_store)
        truth = sandbox.truth()["azure"]
    finally:
        sandbox.stop()
    expected = expected_rejections(truth, "Fabrikam")
    assert sum(expected.values()) >= 6
    assert boards_store.rejection_counts() == expected
    assert stored_work_items(boards_store) == expected_work_items(truth, "Fabrikam")


def test_azure_devops_throttling_is_waited_out_not_failed(boards_store: Store) -> None:
    """A 5-minute TSTU budget far below one sync: Retry-After on 200s and 429 TF400733 are honoured.

    The sandbox's throttle runs on a clock the source's ``sleep`` advances, so waiting is instant
    but real: a request only succeeds once the budget has recovered. One request at a time: workers
    sleeping at once would each move that one clock (tests/sources/test_azure_concurrency.py has
    the concurrent case, on the real clock).
    """
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    ctx = SourceContext(history=timedelta(days=365), now=lambda: NOW, sleep=sleep)
    with azure_only(work_items=120) as (url, routes, server):
        routes.throttle = Throttle(budget=5, window=300, clock=lambda: clock[0])
        serial = boards_config(url).model_copy(update={"max_concurrency": 1})
        AzureBoardsSource(serial, ctx).sync(boards_store)
        truth = routes.truth()
        statuses = server.stats.snapshot()["by_status"]
    assert statuses.get("429", 0) > 0
    assert ctx.telemetry.requests["429"] == statuses["429"]
    assert ctx.telemetry.slept_seconds >= 300  # at least one whole window waited out
    # the budget was reported while throttled; the last answers, no longer throttled, carried none
    assert ctx.telemetry.rate_limit_remaining is None and ctx.telemetry.rate_limit_expired
    assert stored_work_items(boards_store) == expected_work_items(truth, "Fabrikam")


def test_the_budget_gauge_expires_once_azure_devops_stops_throttling(tmp_path: Path) -> None:
    """Azure DevOps sends ``X-RateLimit-Remaining`` only while it delays or blocks: once answers
    come without it, the last throttled value (0 or nearly) no longer holds and is not exported."""
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    with azure_only(work_items=60) as (url, routes, _server):
        config = parse_config(
            f"""
store: sqlite:///{tmp_path}/budget.db
sources:
  - {{name: boards, kind: azure_boards, organization_url: "{url}", project: Fabrikam, token: {TOKEN}}}
""",
            {},
        )
        store = Store(config.store)
        runner = Runner(config, store, sleep=sleep)
        routes.throttle = Throttle(budget=4, window=300, clock=lambda: clock[0])
        assert runner.run("boards").ok
        assert store.statuses()["boards"].rate_limit_remaining is not None
        assert set(store.budgets()) == {("boards", "rest")}  # the TSTU budget, whatever its resource says
        routes.throttle = Throttle(budget=None)  # the load is gone: answers carry no budget any more
        assert runner.run("boards").ok
        assert store.statuses()["boards"].rate_limit_remaining is None
        families = {f.name: f for f in self_families(store, Settings.from_config(config), [])}
        assert families["cycletime_api_rate_limit_remaining"].samples == []
        assert families["cycletime_api_budget_remaining"].samples == []
        assert families["cycletime_sync_backlog"].samples == []  # Azure DevOps cannot tell its backlog


def test_a_state_added_to_the_process_later_is_read_again_not_rejected(
    replay: tuple[FakeBoards, str], boards_store: Store
) -> None:
    fake, url = replay
    source = AzureBoardsSource(replay_boards_config(url), context())
    source.sync(boards_store)
    fake.states["Bug"].append({"name": "Triaged", "color": "aa00aa", "category": "Proposed"})
    fake.revisions.append(
        rev(2, 3, "Triaged", "2026-02-01T10:00:00Z", type_="Bug", area="Fabrikam", created="2026-01-06T10:00:00Z")
    )
    fake.requests.clear()
    source.sync(boards_store)
    assert [path.rsplit("/", 1)[-1] for _, path, _, _ in fake.requests] == [
        "workitemrevisions",
        "workitemtypes",
        "workitemsbatch",
    ]
    bug = next(w for w in boards_store.work_items("boards") if w.native_id == "2")
    assert (bug.history[-1].state, bug.history[-1].category) == ("Triaged", Category.PROPOSED)
    assert sum(boards_store.rejection_counts().values()) == 6  # only the six malformed records
