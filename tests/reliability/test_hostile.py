"""Hostile answers inside the sources: one bad record never costs a pass, no list spins forever.

A mutating proxy (``mutating_proxy.py``) sits between the real ``Runner`` and the sandbox and
rewrites one answer per case: a record whose time has no UTC form, an absurd id, a string where an
object belongs, an object where a list belongs, continuation tokens that cycle or never end. Every
pass runs under a hard timeout and ends either finished — the bad record counted in
``cycletime_records_rejected_total``, every valid record kept (the rows of an unmutated run) — or,
for lists that never end, failed visibly; ``cycletime metrics`` then prints an exposition
``promtool check metrics`` accepts. Definitions: docs/definitions.md "Records that cannot be trusted".
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from conftest import azure_source, sandbox_config
from mutating_proxy import Answer, MutatingProxy
from reliability_kit import TOKEN, config_yaml, quick_sleep, samples, start_sandbox

from collector.config import parse_config
from collector.runner import PassResult, Runner
from collector.store import Store
from sandbox.app import Sandbox, default_now

ROOT = Path(__file__).resolve().parents[2]
#: longer than any case needs (a few seconds each); a loop that never ends hits it
PASS_TIMEOUT = 120.0
AFTER_UTC = "9999-12-31T23:59:59-01:00"  # no UTC form: past datetime.max
BEFORE_UTC = "0001-01-01T00:30:00+01:00"  # no UTC form: before datetime.min
HUGE_ID = 2**63
NOW = default_now() + timedelta(days=1)


# -- the organisation, the proxy and an unmutated run to compare with -----------------------------
@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    box = start_sandbox(seed=11, work_items=120, now=NOW)
    yield box
    box.stop()


@pytest.fixture(scope="module")
def proxy(sandbox: Sandbox) -> Iterator[MutatingProxy]:
    p = MutatingProxy(sandbox.url).start()
    yield p
    p.stop()


@pytest.fixture(autouse=True)
def _no_rewrite(proxy: MutatingProxy) -> Iterator[None]:
    proxy.rewrite = None
    yield
    proxy.rewrite = None


def rows(store: Store, source: str) -> dict[str, set[tuple[Any, ...]]]:
    return {
        "work_items": {
            (
                w.native_id,
                w.ref,
                w.project,
                w.team,
                w.type,
                w.created_at,
                tuple((s.seq, s.at, s.state, s.category.value) for s in w.history),
            )
            for w in store.work_items()
            if w.source == source
        },
        "changes": {
            (c.native_id, c.ref, c.service, c.kind, c.first_commit_at, c.merged_at, tuple(sorted(c.commits)))
            for c in store.changes()
            if c.source == source
        },
        "deployments": {
            (
                d.native_id,
                d.service,
                d.environment,
                d.production,
                d.status,
                d.started_at,
                d.finished_at,
                d.sha,
                tuple(sorted(d.contains)),
            )
            for d in store.deployments()
            if d.source == source
        },
        "links": {(x.work_item, x.target) for x in store.links() if x.source == source},
    }


def rejected(store: Store, config: Any, source: str) -> Counter[str]:
    found = samples(store, config, time.time(), ("cycletime_records_rejected_total",))
    return Counter(
        {
            dict(labels)["reason"]: int(value)
            for (_n, labels), value in found.items()
            if dict(labels)["source"] == source
        }
    )


@dataclass
class Run:
    result: PassResult
    store: Store
    config: Any
    config_path: Path


def run_pass(proxy: MutatingProxy, tmp_path: Path, source: str) -> Run:
    """One pass of one source through the proxy, on a fresh store, under a hard timeout."""
    store_url = f"sqlite:///{tmp_path}/store.db"
    text = config_yaml(proxy.url, store_url)
    config_path = tmp_path / "config.yaml"
    config_path.write_text(text)
    config = parse_config(text, {})
    store = Store(config.store)
    runner = Runner(config, store, sleep=quick_sleep)
    out: list[PassResult] = []
    thread = threading.Thread(target=lambda: out.append(runner.run(source)), daemon=True)
    thread.start()
    thread.join(PASS_TIMEOUT)
    if thread.is_alive():
        runner.stop.set()
        pytest.fail(f"{source}: the pass did not end within {PASS_TIMEOUT:.0f}s ({proxy.requests} requests)")
    return Run(out[0], store, config, config_path)


@pytest.fixture(scope="module")
def baseline(proxy: MutatingProxy, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every source's rows and rejections from an unmutated pass."""
    out: dict[str, Any] = {}
    for source in ("boards", "pipelines", "pipelines_tailspin", "gh_web", "gh_api", "gh_mobile_app"):
        run = run_pass(proxy, tmp_path_factory.mktemp(source), source)
        assert run.result.ok, run.result.error
        out[source] = (rows(run.store, source), rejected(run.store, run.config, source))
        run.store.close()
    return out


CONTRACT_LINT = re.compile(
    r'^cycletime_\w+_window_(seconds non-summary metrics should not have "quantile" label'
    r'|count non-histogram and non-summary metrics should not have "_count" suffix)$'
)


def assert_exposition_valid(config_path: Path) -> None:
    """``cycletime metrics`` on the store, checked by promtool (the two window-gauge lint findings the
    metric names themselves cause are accepted, as in tests/exporters/test_prometheus.py)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "collector", "metrics", "--config", str(config_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus) is required"
    check = subprocess.run([promtool, "check", "metrics"], input=result.stdout, capture_output=True, text=True)
    assert check.returncode in (0, 3), check.stderr
    problems = [line for line in (check.stdout + check.stderr).splitlines() if line and not CONTRACT_LINT.match(line)]
    assert problems == []
    assert "cycletime_records_rejected_total" in result.stdout


# -- rewrites ----------------------------------------------------------------------------------------
def query(answer: Answer) -> dict[str, list[str]]:
    return {k.lower(): v for k, v in parse_qs(urlsplit(answer.path).query).items()}


def once(match: Callable[[Answer], bool], change: Callable[[Answer], Any]) -> Callable[[Answer], Answer | None]:
    """Rewrite the first answer ``match`` picks (and the same request again, should it be retried)."""
    picked: list[str] = []

    def rewrite(answer: Answer) -> Answer | None:
        if answer.status != 200 or (picked and answer.path != picked[0]) or not match(answer):
            return None
        picked[:1] = [answer.path]
        answer.body = change(answer)
        return answer

    return rewrite


def listed(answer: Answer) -> list[Any]:
    body = answer.body
    if isinstance(body, dict):
        for key in ("values", "value", "workflow_runs", "jobs"):
            if isinstance(body.get(key), list):
                return body[key]
    assert isinstance(body, list), body
    return body


def with_extra(make: Callable[[Answer, list[Any]], Any], first: bool = False) -> Callable[[Answer], Any]:
    """The answer with one more record, built from its records, appended (or put first)."""

    def change(answer: Answer) -> Any:
        records = listed(answer)
        extra = make(answer, records)
        records.insert(0 if first else len(records), extra)
        return answer.body

    return change


def path_has(*parts: str, without: tuple[str, ...] = ()) -> Callable[[Answer], bool]:
    return lambda a: (
        all(p in a.path for p in parts)
        and not any(w in a.path for w in without)
        and bool(listed(a) if isinstance(a.body, list | dict) else False)
    )


def revision(time_field: str | None = None, value: Any = None, **top: Any) -> Callable[[Answer, list[Any]], Any]:
    def make(_answer: Answer, records: list[Any]) -> Any:
        extra = copy.deepcopy(records[0])
        extra["id"], extra["rev"] = 9_000_001, 1
        if time_field:
            extra["fields"][time_field] = value
        extra.update(top)
        return extra

    return make


def env_record(**fields: Any) -> Callable[[Answer, list[Any]], Any]:
    """A copy of the page's newest finished record, newer than every record, with ``fields`` changed."""

    def make(_answer: Answer, records: list[Any]) -> Any:
        done = [r for r in records if r.get("result") in ("succeeded", "failed")]
        extra = copy.deepcopy(done[0] if done else records[0])
        extra.update({"id": max(r["id"] for r in records) + 100_000, "result": "succeeded"}, **fields)
        return extra

    return make


def issue(number: int = 999_001, **fields: Any) -> Callable[[Answer, list[Any]], Any]:
    def make(_answer: Answer, records: list[Any]) -> Any:
        extra = copy.deepcopy(next(r for r in records if "pull_request" not in r))
        # listed by update time: the extra one is as old as the first, so the cursor passes nothing
        extra.update(
            {"number": number, "id": 900_000_000 + abs(number), "updated_at": records[0]["updated_at"]}, **fields
        )
        return extra

    return make


def first_timeline_event(**fields: Any) -> Callable[[Answer, list[Any]], Any]:
    def make(_answer: Answer, records: list[Any]) -> Any:
        return {"event": "cross-referenced", "created_at": records[0].get("created_at"), **fields}

    return make


def native_of_issue(answer_path: str) -> str:
    m = re.search(r"/repos/([^/]+/[^/]+)/issues/(\d+)/", answer_path)
    assert m
    return f"{m[1]}#{m[2]}"


# -- one bad record never costs a pass --------------------------------------------------------------
@dataclass
class Case:
    source: str
    match: Callable[[Answer], bool]
    change: Callable[[Answer], Any]
    reasons: dict[str, int]
    #: the record that carries the bad part is rejected as a whole: what it takes with it
    lost: Callable[[str], Callable[[tuple[Any, ...]], bool]] | None = None
    #: where ``lost`` applies: those rows are compared exactly (the others may lose what only the
    #: rejected record brought, e.g. the direct pushes a rejected deployment contained)
    parts: tuple[str, ...] = ()


REVISIONS = path_has("/Fabrikam/_apis/wit/reporting/workitemrevisions", without=("continuationToken",))
ENV_RECORDS = path_has("/Fabrikam/_apis/distributedtask/environments/", "environmentdeploymentrecords")
RELEASE_DEPLOYMENTS = path_has("/Tailspin/_apis/release/deployments")
ISSUES = path_has("/repos/contoso/web/issues?")
STATUSES = path_has("/repos/contoso/web/deployments/", "/statuses")
TIMELINE = path_has("/repos/contoso/web/issues/", "/timeline")


def issue_lost(path: str) -> Callable[[tuple[Any, ...]], bool]:
    native = native_of_issue(path)
    return lambda row: row[0] == native or (len(row) == 2 and row[0] == f"gh:{native}")


CASES = {
    # Azure Boards: reporting work item revisions
    "revision_created_after_utc": Case(
        "boards", REVISIONS, with_extra(revision("System.CreatedDate", AFTER_UTC)), {"bad_timestamp": 1}
    ),
    "revision_changed_before_utc": Case(
        "boards", REVISIONS, with_extra(revision("System.ChangedDate", BEFORE_UTC)), {"bad_timestamp": 1}
    ),
    "revision_huge_id": Case("boards", REVISIONS, with_extra(revision(id=HUGE_ID)), {"out_of_range": 1}),
    "revision_nested_id": Case(
        "boards", REVISIONS, with_extra(revision(id=json.loads("[" * 900 + "]" * 900))), {"wrong_type": 1}
    ),
    # Azure Pipelines: environment deployment records and classic release deployments
    "env_record_finished_after_utc": Case(
        "pipelines", ENV_RECORDS, with_extra(env_record(finishTime=AFTER_UTC), True), {"bad_timestamp": 1}
    ),
    "env_record_started_before_utc": Case(
        "pipelines", ENV_RECORDS, with_extra(env_record(startTime=BEFORE_UTC), True), {"bad_timestamp": 1}
    ),
    "env_record_huge_id": Case("pipelines", ENV_RECORDS, with_extra(env_record(id=HUGE_ID), True), {"out_of_range": 1}),
    "release_started_after_utc": Case(
        "pipelines_tailspin",
        RELEASE_DEPLOYMENTS,
        with_extra(
            lambda _a, rs: {
                **copy.deepcopy(rs[0]),
                "id": 9_000_001,
                "deploymentStatus": "succeeded",
                "startedOn": AFTER_UTC,
            }
        ),
        {"bad_timestamp": 1},
    ),
    # GitHub: issues, timelines, pull requests, deployments, releases, runs
    "issue_created_after_utc": Case(
        "gh_web", ISSUES, with_extra(issue(created_at=AFTER_UTC), True), {"bad_timestamp": 1}
    ),
    "issue_updated_before_utc": Case(
        "gh_web", ISSUES, with_extra(issue(updated_at=BEFORE_UTC), True), {"bad_timestamp": 1}
    ),
    "issue_labels_an_int": Case("gh_web", ISSUES, with_extra(issue(labels=7), True), {"wrong_type": 1}),
    "issue_negative_number": Case("gh_web", ISSUES, with_extra(issue(number=-5), True), {"out_of_range": 1}),
    "timeline_source_a_string": Case(
        "gh_web",
        TIMELINE,
        with_extra(first_timeline_event(source="x")),
        {"wrong_type": 1},
        lost=issue_lost,
        parts=("work_items",),
    ),
    "timeline_event_after_utc": Case(
        "gh_web",
        TIMELINE,
        with_extra(lambda _a, _r: {"event": "closed", "created_at": AFTER_UTC}),
        {"bad_timestamp": 1},
        lost=issue_lost,
        parts=("work_items",),
    ),
}


def pull_lost(path: str) -> Callable[[tuple[Any, ...]], bool]:
    m = re.search(r"/repos/([^/]+/[^/]+)/pulls/(\d+)/", path)
    assert m
    native = f"{m[1]}#{m[2]}"
    # the pull request's change, and any link to it or from the commits it carried
    return lambda row: row[0] == native or (len(row) == 2 and row[1] == f"ghpr:{native}")


def deployment_lost(path: str) -> Callable[[tuple[Any, ...]], bool]:
    m = re.search(r"/deployments/(\d+)/statuses", path)
    assert m
    return lambda row: row[0] == f"deployment:{m[1]}"


def run_lost(path: str) -> Callable[[tuple[Any, ...]], bool]:
    m = re.search(r"/actions/runs/(\d+)/jobs", path)
    assert m
    return lambda row: row[0] == f"run:{m[1]}"


def _mixed_ids(answer: Answer) -> Any:
    statuses = listed(answer)
    done = [s for s in statuses if s.get("state") in ("success", "failure", "error")]
    statuses.append({**copy.deepcopy(done[0] if done else statuses[0]), "id": "x"})
    return answer.body


def _commit_detail_a_string(answer: Answer) -> Any:
    listed(answer)[0]["commit"] = "not an object"
    return answer.body


def _job_after_utc(answer: Answer) -> Any:
    listed(answer)[0].update(completed_at=AFTER_UTC, status="completed")
    return answer.body


CASES |= {
    "pull_commit_a_string": Case(
        "gh_web",
        path_has("/repos/contoso/web/pulls/", "/commits"),
        _commit_detail_a_string,
        {"wrong_type": 1},
        lost=pull_lost,
        parts=("changes", "work_items", "deployments"),
    ),
    "deployment_huge_id": Case(
        "gh_web",
        path_has("/repos/contoso/web/deployments?"),
        with_extra(lambda _a, rs: {**copy.deepcopy(rs[0]), "id": HUGE_ID}, True),
        {"out_of_range": 1},
    ),
    "deployment_status_after_utc": Case(
        "gh_web",
        lambda a: STATUSES(a) and any(s.get("state") == "success" for s in listed(a)),
        with_extra(
            lambda _a, rs: {**copy.deepcopy(rs[0]), "id": 9_000_001, "state": "success", "created_at": AFTER_UTC}
        ),
        {"bad_timestamp": 1},
        lost=deployment_lost,
        parts=("deployments", "work_items"),
    ),
    "deployment_status_ids_mixed": Case(
        "gh_web",
        lambda a: STATUSES(a) and any(s.get("state") == "success" for s in listed(a)),
        _mixed_ids,
        {"wrong_type": 1},
        lost=deployment_lost,
        parts=("deployments", "work_items"),
    ),
    "release_published_after_utc": Case(
        "gh_api",
        path_has("/repos/contoso/api/releases?"),
        with_extra(
            lambda _a, rs: {
                **copy.deepcopy(rs[0]),
                "id": 9_000_001,
                "draft": False,
                "prerelease": False,
                "published_at": AFTER_UTC,
            },
            True,
        ),
        {"bad_timestamp": 1},
    ),
    "run_job_after_utc": Case(
        "gh_mobile_app",
        path_has("/repos/contoso/mobile-app/actions/runs/", "/jobs"),
        _job_after_utc,
        {"bad_timestamp": 1},
        lost=run_lost,
        parts=("deployments", "work_items"),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_one_bad_record_is_counted_and_the_rest_kept(
    name: str, proxy: MutatingProxy, baseline: dict[str, Any], tmp_path: Path
) -> None:
    case = CASES[name]
    seen: list[str] = []
    rewrite = once(case.match, case.change)

    def recording(answer: Answer) -> Answer | None:
        changed = rewrite(answer)
        if changed is not None:
            seen.append(answer.path)
        return changed

    proxy.rewrite = recording
    run = run_pass(proxy, tmp_path, case.source)
    assert seen, "the case never met the answer it rewrites"
    assert run.result.ok, run.result.error
    expected_rows, expected_rejections = baseline[case.source]
    assert rejected(run.store, run.config, case.source) - expected_rejections == Counter(case.reasons)
    actual = rows(run.store, case.source)
    for part, wanted in expected_rows.items():
        if case.lost is None:
            assert actual[part] == wanted, part
        else:
            gone = case.lost(seen[0])
            kept = {row for row in wanted if not gone(row)}
            if part in case.parts:
                assert actual[part] == kept, (part, sorted(kept ^ actual[part])[:3])
            if part == case.parts[0]:
                assert len(kept) == len(wanted) - 1, "the rejected record was not among the baseline's"
    if name == "deployment_huge_id":
        state = json.loads(run.store.watermark("gh_web", "deployments:contoso/web"))
        assert state["max_id"] < 2**53, "an absurd id became the high-water mark"
    run.store.close()
    assert_exposition_valid(run.config_path)


# -- lists that cycle or never end: the pass fails visibly, in bounded time ------------------------------
def _token(answer: Answer) -> str | None:
    return query(answer).get("continuationtoken", [None])[0]


def revisions_chained(next_token: Callable[[str | None], str]) -> Callable[[Answer], Answer | None]:
    """The reporting revisions stream with its tokens replaced: the first page as served, then empty pages."""

    def rewrite(answer: Answer) -> Answer | None:
        if "/Fabrikam/_apis/wit/reporting/workitemrevisions" not in answer.path:
            return None
        token = _token(answer)
        values = answer.body.get("values", []) if token is None and isinstance(answer.body, dict) else []
        answer.status, answer.body = (
            200,
            {"values": values, "continuationToken": next_token(token), "isLastBatch": False},
        )
        return answer

    return rewrite


def records_chained(fresh_ids: bool) -> Callable[[Answer], Answer | None]:
    """Environment deployment records whose ``x-ms-continuationtoken`` never runs out: every page
    repeats the first one's records (or, with ``fresh_ids``, brings ids never seen)."""
    first: list[Any] = []

    def rewrite(answer: Answer) -> Answer | None:
        if (
            "/Fabrikam/_apis/distributedtask/environments/" not in answer.path
            or "environmentdeploymentrecords" not in answer.path
        ):
            return None
        token = _token(answer)
        n = int(token) if token else 0
        if not first:
            first.append(copy.deepcopy(answer.body))
        body = copy.deepcopy(first[0])
        if fresh_ids:
            for i, record in enumerate(listed(Answer("GET", "", 200, {}, body))):
                record["id"] = 10_000_000 - n * 1000 - i
        answer.status, answer.body = 200, body
        answer.headers["x-ms-continuationtoken"] = str(n + 1)
        return answer

    return rewrite


def issues_linked(proxy: MutatingProxy, next_page: Callable[[int], int]) -> Callable[[Answer], Answer | None]:
    """The issues list with a ``Link: rel="next"`` on every page; past the real end, the last real page again."""
    last: list[Any] = []

    def rewrite(answer: Answer) -> Answer | None:
        split = urlsplit(answer.path)
        if split.path != "/api/v3/repos/contoso/web/issues" or answer.status != 200:
            return None
        q = parse_qs(split.query)
        page = int(q.get("page", ["1"])[0])
        if answer.body:
            last[:] = [answer.body]
        else:
            answer.body = last[0]
        q["page"] = [str(next_page(page))]
        answer.headers["Link"] = f'<{proxy.url}{split.path}?{urlencode(q, doseq=True)}>; rel="next"'
        return answer

    return rewrite


def failed_visibly(run: Run, source: str, words: str, proxy: MutatingProxy, requests_before: int) -> None:
    assert not run.result.ok
    assert run.result.error and words in run.result.error, run.result.error
    assert proxy.requests - requests_before < 400, "it stopped, but late"
    up = samples(run.store, run.config, time.time(), ("cycletime_source_up",))
    assert [v for (_n, labels), v in up.items() if dict(labels)["source"] == source] == [0.0]


def test_a_continuation_token_cycle_fails_the_pass(proxy: MutatingProxy, tmp_path: Path) -> None:
    cycle = {None: "A", "A": "B", "B": "A"}
    proxy.rewrite = revisions_chained(lambda token: cycle[token])
    before = proxy.requests
    run = run_pass(proxy, tmp_path, "boards")
    failed_visibly(run, "boards", "pagination cycle", proxy, before)
    # every page read was committed with the token that follows it, no further
    assert run.store.watermark("boards", "revisions") in ("A", "B")
    assert len(run.store.work_items()) > 0
    run.store.close()
    assert_exposition_valid(run.config_path)


def test_ever_new_tokens_without_new_records_end_the_walk(proxy: MutatingProxy, tmp_path: Path) -> None:
    proxy.rewrite = revisions_chained(lambda token: f"t{int(token[1:]) + 1}" if token else "t1")
    before = proxy.requests
    run = run_pass(proxy, tmp_path, "boards")
    failed_visibly(run, "boards", "brought nothing new", proxy, before)
    run.store.close()
    assert_exposition_valid(run.config_path)


def test_environment_records_that_never_end(proxy: MutatingProxy, tmp_path: Path) -> None:
    proxy.rewrite = records_chained(fresh_ids=False)
    before = proxy.requests
    run = run_pass(proxy, tmp_path, "pipelines")
    failed_visibly(run, "pipelines", "brought nothing new", proxy, before)
    run.store.close()


def test_the_page_cap_stops_a_list_of_ever_new_records(
    proxy: MutatingProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import collector.sources.base as base

    monkeypatch.setattr(base, "MAX_PAGES", 30)
    proxy.rewrite = records_chained(fresh_ids=True)
    before = proxy.requests
    run = run_pass(proxy, tmp_path, "pipelines")
    failed_visibly(run, "pipelines", "more than 30 pages", proxy, before)
    run.store.close()


def test_endless_link_pages_end_the_walk(proxy: MutatingProxy, tmp_path: Path) -> None:
    proxy.rewrite = issues_linked(proxy, lambda page: page + 1)
    before = proxy.requests
    run = run_pass(proxy, tmp_path, "gh_web")
    failed_visibly(run, "gh_web", "brought nothing new", proxy, before)
    # the other parts of the repository were still read
    assert any(d.source == "gh_web" for d in run.store.deployments())
    run.store.close()
    assert_exposition_valid(run.config_path)


def test_a_link_cycle_fails_the_walk(proxy: MutatingProxy, tmp_path: Path) -> None:
    proxy.rewrite = issues_linked(proxy, lambda page: 3 if page == 2 else 2)
    before = proxy.requests
    run = run_pass(proxy, tmp_path, "gh_web")
    failed_visibly(run, "gh_web", "pagination cycle", proxy, before)
    run.store.close()


# -- a wrong organisation is named as such -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("organisation", "project", "says"),
    [
        ("nosuchorg", "Fabrikam", "organisation not found"),
        ("contoso", "NoSuchProject", "project 'NoSuchProject' not found"),
    ],
)
def test_a_wrong_organisation_or_project_is_named(
    sandbox: Sandbox, tmp_path: Path, organisation: str, project: str, says: str
) -> None:
    sources = [
        azure_source(kind, sandbox.url, TOKEN, project, organization=organisation)
        for kind in ("azure_boards", "azure_pipelines")
    ]
    text = sandbox_config(f"sqlite:///{tmp_path}/store.db", sources)
    config = parse_config(text, {})
    store = Store(config.store)
    results = Runner(config, store, sleep=quick_sleep).run_all()
    store.close()
    for result in results:
        assert not result.ok
        assert result.error and says in result.error, result.error
        if organisation != "contoso":
            assert "project" not in result.error, result.error


def test_an_answer_nested_too_deeply_to_parse_fails_the_pass_with_its_reason(
    proxy: MutatingProxy, tmp_path: Path
) -> None:
    """JSON nested deeper than any parser's stack (here 100,000 levels inside one record) cannot be
    read at all: the page fails visibly, naming the cause, instead of a RecursionError traceback."""

    def rewrite(answer: Answer) -> Answer | None:
        if "environmentdeploymentrecords" not in answer.path or not isinstance(answer.body, dict):
            return None
        text = json.dumps(answer.body)
        answer.body = text.replace(
            '"value": [', '"value": [{"id": 1, "x": ' + "[" * 100_000 + "]" * 100_000 + "}, ", 1
        ).encode()
        return answer

    proxy.rewrite = rewrite
    run = run_pass(proxy, tmp_path, "pipelines")
    assert not run.result.ok
    assert run.result.error and "nested too deeply" in run.result.error, run.result.error
    run.store.close()
