"""Hostile answers through the real command line: one bad record never costs a pass, no list spins forever.

A mutating proxy (``mutating_proxy.py``, in this process) sits between ``cycletime sync`` /
``cycletime serve`` subprocesses and the sandbox and rewrites chosen answers: a record whose time
has no UTC form, an absurd id, a string where an object belongs, a record nested 5,000 or 100,000
levels deep, continuation tokens that cycle or never end. Every process runs under a hard timeout
and ends either finished — the bad records counted in ``cycletime_records_rejected_total`` as
``cycletime metrics`` prints it, every valid record kept (the rows of an unmutated run) — or, for
lists that never end, failed visibly; the exposition passes ``promtool check metrics``. Cases that
add records to one answer share a process; a case that rejects a whole parent record (its timeline,
commits, statuses or jobs) runs alone, so what it takes with it is exactly known. Definitions:
docs/definitions.md "Records that cannot be trusted".
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from conftest import azure_source, free_port, sandbox_config
from mutating_proxy import Answer, MutatingProxy, Rewrite
from prometheus_client.parser import text_string_to_metric_families
from reliability_kit import TOKEN, config_yaml, start_sandbox

from collector.store import Store
from sandbox.app import Sandbox, default_now

ROOT = Path(__file__).resolve().parents[2]
#: longer than any process here needs (a few seconds each); a loop that never ends hits it
PROCESS_TIMEOUT = 120.0
AFTER_UTC = "9999-12-31T23:59:59-01:00"  # no UTC form: past datetime.max
BEFORE_UTC = "0001-01-01T00:30:00+01:00"  # no UTC form: before datetime.min
HUGE_ID = 2**63
NOW = default_now() + timedelta(days=1)
ALL_SOURCES = ("boards", "pipelines", "pipelines_tailspin", "gh_web", "gh_api", "gh_mobile_app")


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


def cycletime(
    *args: str, timeout: float = PROCESS_TIMEOUT, max_pages: int | None = None
) -> subprocess.CompletedProcess[str]:
    """The command line in a subprocess, killed (and the test failed) past ``timeout``.

    ``max_pages`` lowers the per-walk page cap of that process (``collector.sources.base.MAX_PAGES``),
    so a list of ever-new records meets it within seconds.
    """
    program = ["-m", "collector"]
    if max_pages is not None:
        program = [
            "-c",
            "import sys; import collector.sources.base as base; base.MAX_PAGES = int(sys.argv.pop(1)); "
            "from collector.cli import main; sys.exit(main())",
            str(max_pages),
        ]
    try:
        return subprocess.run(
            [sys.executable, *program, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"cycletime {' '.join(args[:1])} did not end within {timeout:.0f}s")


@dataclass
class Sync:
    """One ``cycletime sync`` through the proxy on a fresh store."""

    process: subprocess.CompletedProcess[str]
    config_path: Path
    store_url: str

    def failures(self) -> dict[str, str]:
        """Each failed source's final line: ``cycletime sync: source NAME failed: WHY``."""
        found = re.findall(r"^cycletime sync: source (\S+) failed: (.*)$", self.process.stderr, re.M)
        return dict(found)

    def rows(self, source: str) -> dict[str, set[tuple[Any, ...]]]:
        store = Store(self.store_url)
        try:
            return rows(store, source)
        finally:
            store.close()


def sync(
    proxy: MutatingProxy,
    tmp_path: Path,
    sources: tuple[str, ...],
    max_pages: int | None = None,
    github_api: str = "rest",
) -> Sync:
    store_url = f"sqlite:///{tmp_path}/store.db"
    config_path = tmp_path / "config.yaml"
    # most rewrites are of REST answers: the GitHub sources read everything over REST then; the
    # GraphQL cases sync under ``auto``, the default
    config_path.write_text(config_yaml(proxy.url, store_url, only=sources, github_api=github_api))
    process = cycletime("sync", "--config", str(config_path), "--log-format", "json", max_pages=max_pages)
    return Sync(process, config_path, store_url)


CONTRACT_LINT = re.compile(
    r'^cycletime_\w+_window_(seconds non-summary metrics should not have "quantile" label'
    r'|count non-histogram and non-summary metrics should not have "_count" suffix)$'
)


def promtool_accepts(text: str) -> None:
    """``promtool check metrics`` finds nothing but the two window-gauge lint findings the metric
    names themselves cause (accepted as in tests/exporters/test_prometheus.py)."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus) is required"
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert check.returncode in (0, 3), check.stderr
    problems = [line for line in (check.stdout + check.stderr).splitlines() if line and not CONTRACT_LINT.match(line)]
    assert problems == []


def metrics(config_path: Path) -> str:
    """``cycletime metrics`` on the store, checked by promtool."""
    result = cycletime("metrics", "--config", str(config_path))
    assert result.returncode == 0, result.stderr
    promtool_accepts(result.stdout)
    assert "cycletime_records_rejected_total" in result.stdout
    return result.stdout


def samples_of(text: str, name: str, source: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and s.labels.get("source") == source
    }


def rejected(text: str, source: str) -> Counter[str]:
    return Counter(
        {
            dict(labels)["reason"]: int(value)
            for labels, value in samples_of(text, "cycletime_records_rejected_total", source).items()
        }
    )


def up(text: str, source: str) -> float:
    (value,) = samples_of(text, "cycletime_source_up", source).values()
    return value


@pytest.fixture(scope="module")
def baseline(proxy: MutatingProxy, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every source's rows and rejections from one unmutated ``cycletime sync``."""
    run = sync(proxy, tmp_path_factory.mktemp("baseline"), ALL_SOURCES)
    assert run.process.returncode == 0, run.process.stderr[-3000:]
    text = metrics(run.config_path)
    return {source: (run.rows(source), rejected(text, source)) for source in ALL_SOURCES}


# -- rewrites ----------------------------------------------------------------------------------------
def query(answer: Answer) -> dict[str, list[str]]:
    return {k.lower(): v for k, v in parse_qs(urlsplit(answer.path).query).items()}


def listed(answer: Answer) -> list[Any]:
    body = answer.body
    if isinstance(body, dict):
        for key in ("values", "value", "workflow_runs", "jobs"):
            if isinstance(body.get(key), list):
                return body[key]
    assert isinstance(body, list), body
    return body


#: the records each answer being rewritten came with (by ``id`` of the Answer; ``rewriting`` clears it),
#: so the cases sharing an answer build their records from the server's, never from another case's
_ORIGINALS: dict[int, list[Any]] = {}


def with_extra(make: Callable[[Answer, list[Any]], Any], first: bool = False) -> Callable[[Answer], Any]:
    """The answer with one more record, built from its original records, appended (or put first)."""

    def change(answer: Answer) -> Any:
        records = listed(answer)
        extra = make(answer, _ORIGINALS.setdefault(id(answer), list(records)))
        records.insert(0 if first else len(records), extra)
        return answer.body

    return change


def path_has(*parts: str, without: tuple[str, ...] = ()) -> Callable[[Answer], bool]:
    return lambda a: (
        all(p in a.path for p in parts)
        and not any(w in a.path for w in without)
        and bool(listed(a) if isinstance(a.body, list | dict) else False)
    )


def revision(
    time_field: str | None = None, value: Any = None, rid: int = 9_000_001, **top: Any
) -> Callable[[Answer, list[Any]], Any]:
    def make(_answer: Answer, records: list[Any]) -> Any:
        extra = copy.deepcopy(records[0])
        extra["id"], extra["rev"] = rid, 1
        if time_field:
            extra["fields"][time_field] = value
        extra.update(top)
        return extra

    return make


def env_record(offset: int = 0, **fields: Any) -> Callable[[Answer, list[Any]], Any]:
    """A copy of the page's newest finished record, newer than every record, with ``fields`` changed."""

    def make(_answer: Answer, records: list[Any]) -> Any:
        done = [r for r in records if r.get("result") in ("succeeded", "failed")]
        extra = copy.deepcopy(done[0] if done else records[0])
        extra.update({"id": max(r["id"] for r in records) + 100_000 + offset, "result": "succeeded"}, **fields)
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


def too_deep(depth: int) -> str:
    """A placeholder the proxy sends as JSON nested ``depth`` levels deep (``serialised``)."""
    return f"@@nested:{depth}@@"


_NESTED = re.compile(r'"@@nested:(\d+)@@"')


def serialised(body: Any) -> bytes:
    """The answer's text, each ``too_deep`` placeholder written out as that many nested lists
    (deeper than Python's own decoder or encoder can go)."""
    return _NESTED.sub(lambda m: "[" * int(m[1]) + "]" * int(m[1]), json.dumps(body)).encode()


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
        "boards", REVISIONS, with_extra(revision("System.CreatedDate", AFTER_UTC, 9_000_001)), {"bad_timestamp": 1}
    ),
    "revision_changed_before_utc": Case(
        "boards", REVISIONS, with_extra(revision("System.ChangedDate", BEFORE_UTC, 9_000_002)), {"bad_timestamp": 1}
    ),
    "revision_huge_id": Case("boards", REVISIONS, with_extra(revision(id=HUGE_ID)), {"out_of_range": 1}),
    "revision_nested_id": Case(
        "boards", REVISIONS, with_extra(revision(id=json.loads("[" * 900 + "]" * 900))), {"wrong_type": 1}
    ),
    "revision_nested_5000_deep": Case(
        "boards", REVISIONS, with_extra(revision("System.Title", too_deep(5_000), 9_000_005)), {"too_deep": 1}
    ),
    "revision_nested_100000_deep": Case(
        "boards", REVISIONS, with_extra(revision("System.Title", too_deep(100_000), 9_000_006)), {"too_deep": 1}
    ),
    # Azure Pipelines: environment deployment records and classic release deployments
    "env_record_finished_after_utc": Case(
        "pipelines", ENV_RECORDS, with_extra(env_record(1, finishTime=AFTER_UTC), True), {"bad_timestamp": 1}
    ),
    "env_record_started_before_utc": Case(
        "pipelines", ENV_RECORDS, with_extra(env_record(2, startTime=BEFORE_UTC), True), {"bad_timestamp": 1}
    ),
    "env_record_huge_id": Case("pipelines", ENV_RECORDS, with_extra(env_record(id=HUGE_ID), True), {"out_of_range": 1}),
    "env_record_nested_5000_deep": Case(
        "pipelines", ENV_RECORDS, with_extra(env_record(4, stageName=too_deep(5_000)), True), {"too_deep": 1}
    ),
    "env_record_nested_100000_deep": Case(
        "pipelines", ENV_RECORDS, with_extra(env_record(5, owner={"id": too_deep(100_000)}), True), {"too_deep": 1}
    ),
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
        "gh_web", ISSUES, with_extra(issue(999_001, created_at=AFTER_UTC), True), {"bad_timestamp": 1}
    ),
    "issue_updated_before_utc": Case(
        "gh_web", ISSUES, with_extra(issue(999_002, updated_at=BEFORE_UTC), True), {"bad_timestamp": 1}
    ),
    "issue_labels_an_int": Case("gh_web", ISSUES, with_extra(issue(999_003, labels=7), True), {"wrong_type": 1}),
    "issue_negative_number": Case("gh_web", ISSUES, with_extra(issue(number=-5), True), {"out_of_range": 1}),
    "issue_nested_5000_deep": Case(
        "gh_web", ISSUES, with_extra(issue(999_005, labels=[{"name": too_deep(5_000)}]), True), {"too_deep": 1}
    ),
    "issue_nested_100000_deep": Case(
        "gh_web", ISSUES, with_extra(issue(999_006, title=too_deep(100_000))), {"too_deep": 1}
    ),
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
    "timeline_event_nested_100000_deep": Case(
        "gh_web",
        TIMELINE,
        with_extra(first_timeline_event(actor={"login": too_deep(100_000)})),
        {"too_deep": 1},
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


def _commit_author_a_string(answer: Answer) -> Any:
    listed(answer)[0]["commit"]["author"] = "not an object"
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
    "pull_commit_author_a_string": Case(
        "gh_web",
        path_has("/repos/contoso/web/pulls/", "/commits"),
        _commit_author_a_string,
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


#: the cases one ``cycletime sync`` runs together: those that add records to an answer share a
#: process; each that rejects a parent record runs alone (see the module docstring)
GROUPS: dict[str, tuple[str, ...]] = {
    "boards_revisions": (
        "revision_created_after_utc",
        "revision_changed_before_utc",
        "revision_huge_id",
        "revision_nested_id",
    ),
    # apart from revision_nested_id: once an answer is too deep to decode, every entry nested more
    # than 200 levels in it is cut out, the 900-deep id too
    "boards_revisions_too_deep": ("revision_nested_5000_deep", "revision_nested_100000_deep"),
    "pipelines_environment_records": (
        "env_record_finished_after_utc",
        "env_record_started_before_utc",
        "env_record_huge_id",
        "env_record_nested_5000_deep",
        "env_record_nested_100000_deep",
    ),
    "pipelines_releases": ("release_started_after_utc",),
    "github_issues_and_deployments": (
        "issue_created_after_utc",
        "issue_updated_before_utc",
        "issue_labels_an_int",
        "issue_negative_number",
        "issue_nested_5000_deep",
        "issue_nested_100000_deep",
        "deployment_huge_id",
    ),
    "github_releases": ("release_published_after_utc",),
} | {
    name: (name,)
    for name in (
        "timeline_source_a_string",
        "timeline_event_after_utc",
        "timeline_event_nested_100000_deep",
        "pull_commit_a_string",
        "pull_commit_author_a_string",
        "deployment_status_after_utc",
        "deployment_status_ids_mixed",
        "run_job_after_utc",
    )
}


def test_every_case_runs_in_one_group() -> None:
    grouped = [name for names in GROUPS.values() for name in names] + list(GQL_CASES)
    assert sorted(grouped) == sorted(CASES) and len(set(grouped)) == len(grouped)
    assert all(case.lost is None for case in GQL_CASES.values())  # they run in one process
    for names in GROUPS.values():
        assert len({CASES[n].source for n in names}) == 1
        assert len(names) == 1 or all(CASES[n].lost is None for n in names)


def rewriting(names: tuple[str, ...]) -> tuple[Rewrite, dict[str, list[str]]]:
    """One rewrite applying each case to the first answer it matches (and to that same request
    again, should it be retried); returns it and the path (with a POST's body: every GraphQL query
    has the same path) each case rewrote."""
    seen: dict[str, list[str]] = {name: [] for name in names}

    def rewrite(answer: Answer) -> Answer | None:
        if answer.status != 200:
            return None
        changed = False
        for name in names:
            picked = seen[name]
            request = answer.path + (f" {answer.request.decode(errors='replace')}" if answer.method == "POST" else "")
            if (picked and request != picked[0]) or (not picked and not CASES[name].match(answer)):
                continue
            picked[:1] = [request]
            answer.body = CASES[name].change(answer)
            changed = True
        _ORIGINALS.pop(id(answer), None)
        if not changed:
            return None
        answer.body = serialised(answer.body)
        return answer

    return rewrite, seen


def _without_base(kept: set[tuple[Any, ...]], lost: set[tuple[Any, ...]]) -> set[tuple[Any, ...]]:
    """The deployments when the ``lost`` ones are rejected: a lost success is no base any more, so
    the next success to its environment contains its commits too (new deployments are read oldest
    first, so the spoiled one may well have a successor)."""
    out = set(kept)
    for gone in lost:
        if gone[4] != "success" or not gone[3]:
            continue
        later = [
            row for row in out if row[1:3] == gone[1:3] and row[4] == "success" and _order(row[0]) > _order(gone[0])
        ]
        if later:
            successor = min(later, key=lambda row: _order(row[0]))
            out.remove(successor)
            out.add((*successor[:-1], tuple(sorted(set(successor[-1]) | set(gone[-1])))))
    return out


def _order(native_id: str) -> int:
    return int(native_id.rsplit(":", 1)[1])


@pytest.mark.parametrize("group", list(GROUPS))
def test_bad_records_are_counted_and_the_rest_kept(
    group: str, proxy: MutatingProxy, baseline: dict[str, Any], tmp_path: Path
) -> None:
    names = GROUPS[group]
    source = CASES[names[0]].source
    proxy.rewrite, seen = rewriting(names)
    run = sync(proxy, tmp_path, (source,))
    assert all(seen.values()), f"cases that never met the answer they rewrite: {[n for n in names if not seen[n]]}"
    assert run.process.returncode == 0, run.process.stderr[-3000:]
    text = metrics(run.config_path)
    assert up(text, source) == 1.0
    expected_rows, expected_rejections = baseline[source]
    wanted_reasons = sum((Counter(CASES[n].reasons) for n in names), Counter())
    assert rejected(text, source) - expected_rejections == wanted_reasons
    actual = run.rows(source)
    case = CASES[names[0]]
    for part, wanted in expected_rows.items():
        if case.lost is None:
            assert actual[part] == wanted, part
        else:
            gone = case.lost(seen[names[0]][0])
            kept = {row for row in wanted if not gone(row)}
            if part == "deployments":
                kept = _without_base(kept, wanted - kept)
            if part in case.parts:
                assert actual[part] == kept, (part, sorted(kept ^ actual[part])[:3])
            if part == case.parts[0]:
                assert len(kept) == len(wanted) - 1, "the rejected record was not among the baseline's"
    if "deployment_huge_id" in names:
        store = Store(run.store_url)
        state = json.loads(store.watermark("gh_web", "deployments:contoso/web") or "{}")
        store.close()
        assert 0 < state["max_id"] < 2**53, "an absurd id became the high-water mark"


# -- the same over GraphQL: hostile nodes in the answers ``auto`` reads histories from ---------------
def gql_nodes(answer: Answer, connection: str) -> list[Any] | None:
    """The nodes of a repository list query's answer (``data.repository.<connection>.nodes``)."""
    data = answer.body.get("data") if isinstance(answer.body, dict) else None
    repo = data.get("repository") if isinstance(data, dict) else None
    conn = repo.get(connection) if isinstance(repo, dict) else None
    nodes = conn.get("nodes") if isinstance(conn, dict) else None
    return nodes if isinstance(nodes, list) and nodes else None


def gql_list(connection: str) -> Callable[[Answer], bool]:
    return lambda a: a.method == "POST" and gql_nodes(a, connection) is not None


def gql_extra(connection: str, make: Callable[[list[Any]], Any]) -> Callable[[Answer], Any]:
    """The answer with one more node, built from its original nodes: appended, or first for issues
    (listed oldest change first: one as old as the first node is read before the cursor passes it)."""

    def change(answer: Answer) -> Any:
        nodes = gql_nodes(answer, connection)
        assert nodes is not None
        extra = make(_ORIGINALS.setdefault(id(answer), copy.deepcopy(nodes)))
        nodes.insert(0 if connection == "issues" else len(nodes), extra)
        return answer.body

    return change


def gql_copy(number_key: str, number: Any, **fields: Any) -> Callable[[list[Any]], Any]:
    """A copy of the page's first node under another number (as old as it: the cursor passes nothing)."""
    return lambda nodes: {**copy.deepcopy(nodes[0]), number_key: number, "id": f"X_{number}", **fields}


GQL_ISSUES, GQL_PULLS, GQL_DEPLOYMENTS = gql_list("issues"), gql_list("pullRequests"), gql_list("deployments")
GQL_CASES = {
    "gql_issue_created_after_utc": Case(
        "gh_web",
        GQL_ISSUES,
        gql_extra("issues", gql_copy("number", 999_101, createdAt=AFTER_UTC)),
        {"bad_timestamp": 1},
    ),
    "gql_issue_number_a_string": Case(
        "gh_web", GQL_ISSUES, gql_extra("issues", gql_copy("number", "999102")), {"wrong_type": 1}
    ),
    "gql_issue_body_huge": Case(
        "gh_web", GQL_ISSUES, gql_extra("issues", gql_copy("number", 999_103, body="x" * 100_000)), {"too_large": 1}
    ),
    "gql_issue_timeline_an_int": Case(
        "gh_web", GQL_ISSUES, gql_extra("issues", gql_copy("number", 999_104, timelineItems=7)), {"wrong_type": 1}
    ),
    "gql_issue_labels_null": Case(
        "gh_web", GQL_ISSUES, gql_extra("issues", gql_copy("number", 999_105, labels=None)), {"missing_field": 1}
    ),
    "gql_issue_nested_5000_deep": Case(
        "gh_web", GQL_ISSUES, gql_extra("issues", gql_copy("number", 999_106, body=too_deep(5_000))), {"too_deep": 1}
    ),
    "gql_issue_null_node": Case("gh_web", GQL_ISSUES, gql_extra("issues", lambda _n: None), {"missing_field": 1}),
    "gql_pull_merged_at_a_number": Case(
        "gh_web", GQL_PULLS, gql_extra("pullRequests", gql_copy("number", 999_201, mergedAt=12345)), {"wrong_type": 1}
    ),
    "gql_pull_commits_a_string": Case(
        "gh_web", GQL_PULLS, gql_extra("pullRequests", gql_copy("number", 999_202, commits="x")), {"wrong_type": 1}
    ),
    "gql_pull_null_node": Case("gh_web", GQL_PULLS, gql_extra("pullRequests", lambda _n: None), {"missing_field": 1}),
    "gql_deployment_huge_id": Case(
        "gh_web", GQL_DEPLOYMENTS, gql_extra("deployments", gql_copy("databaseId", HUGE_ID)), {"out_of_range": 1}
    ),
    "gql_deployment_statuses_without_nodes": Case(
        "gh_web",
        GQL_DEPLOYMENTS,
        gql_extra("deployments", gql_copy("databaseId", 999_302, statuses={"nodes": 5})),
        {"wrong_type": 1},
    ),
    "gql_deployment_null_node": Case(
        "gh_web", GQL_DEPLOYMENTS, gql_extra("deployments", lambda _n: None), {"missing_field": 1}
    ),
}
CASES |= GQL_CASES


def test_hostile_graphql_nodes_are_counted_and_the_rest_kept(
    proxy: MutatingProxy, baseline: dict[str, Any], tmp_path: Path
) -> None:
    """Under ``auto`` the histories come over GraphQL: a node of a wrong type, a missing or
    malformed nested list, a huge string, a record nested too deeply, a ``null`` node in the list
    are each rejected and counted; every other node of the page is kept and the pass goes on."""
    names = tuple(GQL_CASES)
    proxy.rewrite, seen = rewriting(names)
    run = sync(proxy, tmp_path, ("gh_web",), github_api="auto")
    assert all(seen.values()), f"cases that never met the answer they rewrite: {[n for n in names if not seen[n]]}"
    assert run.process.returncode == 0, run.process.stderr[-3000:]
    text = metrics(run.config_path)
    assert up(text, "gh_web") == 1.0
    expected_rows, expected_rejections = baseline["gh_web"]
    wanted = sum((Counter(CASES[n].reasons) for n in names), Counter())
    assert rejected(text, "gh_web") - expected_rejections == wanted
    assert run.rows("gh_web") == expected_rows
    store = Store(run.store_url)
    state = json.loads(store.watermark("gh_web", "deployments:contoso/web") or "{}")
    store.close()
    assert 0 < state["max_id"] < 2**53, "an absurd id became the high-water mark"


def test_graphql_errors_beside_partial_data_keep_the_rest_and_the_next_pass_reads_the_part(
    proxy: MutatingProxy, baseline: dict[str, Any], tmp_path: Path
) -> None:
    """An issue node nulled with an error at its path (GitHub's partial answer): the other issues of
    the page are stored, the failed part is named, the repository's other lists are still read,
    and the watermark stays, so the next pass (an answer without the error) stores that issue too."""
    failed: list[str] = []

    def rewrite(answer: Answer) -> Answer | None:
        nodes = gql_nodes(answer, "issues") if answer.method == "POST" else None
        if nodes is None or failed:
            return None
        failed.append(f"contoso/web#{nodes[0]['number']}")
        nodes[0] = None
        answer.body.setdefault("errors", []).append(
            {
                "type": "FORBIDDEN",
                "path": ["repository", "issues", "nodes", 0],
                "locations": [{"line": 1, "column": 1}],
                "message": "Resource not accessible by integration",
            }
        )
        return answer

    proxy.rewrite = rewrite
    first = sync(proxy, tmp_path, ("gh_web",), github_api="auto")
    proxy.rewrite = None
    assert failed, "no issues answer came over GraphQL"
    assert "partial answer" in first.failures().get("gh_web", ""), first.process.stderr[-3000:]
    expected_rows = baseline["gh_web"][0]
    rows_first = first.rows("gh_web")
    (lost,) = failed
    assert {row[0] for row in expected_rows["work_items"] - rows_first["work_items"]} == {lost}
    assert rows_first["deployments"] == expected_rows["deployments"]  # the other lists were read
    again = cycletime("sync", "--config", str(first.config_path), "--log-format", "json")
    assert again.returncode == 0, again.stderr[-3000:]
    assert first.rows("gh_web") == expected_rows


def test_release_tags_graphql_does_not_resolve_are_looked_up_over_rest(
    proxy: MutatingProxy, sandbox: Sandbox, baseline: dict[str, Any], tmp_path: Path
) -> None:
    """Release tag commits come over GraphQL under ``auto``; a tag the answer leaves unresolved (no
    release, no tag commit, an error at its path) is looked up over REST, and the store is the same."""
    changed: list[str] = []

    def rewrite(answer: Answer) -> Answer | None:
        data = answer.body.get("data") if isinstance(answer.body, dict) else None
        repo = data.get("repository") if isinstance(data, dict) else None
        if changed or not isinstance(repo, dict) or not {"t0", "t1", "t2"} <= set(repo):
            return None
        request = json.loads(answer.request)["variables"]
        changed.extend(request[t] for t in ("t0", "t1", "t2"))
        repo["t0"], repo["t1"], repo["t2"] = None, {"tagCommit": None}, None
        answer.body.setdefault("errors", []).append(
            {"type": "SERVICE_UNAVAILABLE", "path": ["repository", "t2"], "message": "Something went wrong"}
        )
        return answer

    proxy.rewrite = rewrite
    before = sandbox.server.stats.snapshot()["by_endpoint"].get("github.git_ref", 0)
    run = sync(proxy, tmp_path, ("gh_api",), github_api="auto")
    looked_up = sandbox.server.stats.snapshot()["by_endpoint"].get("github.git_ref", 0) - before
    assert run.process.returncode == 0, run.process.stderr[-3000:]
    assert len(changed) == 3 and looked_up == 3  # those three, and only those, over REST
    assert run.rows("gh_api") == baseline["gh_api"][0]
    assert rejected(metrics(run.config_path), "gh_api") == baseline["gh_api"][1]


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


def failed_visibly(run: Sync, source: str, words: str, proxy: MutatingProxy, requests_before: int) -> str:
    """The process exited 1 naming the source and ``words``, soon; the source is down in the exposition."""
    assert run.process.returncode == 1, run.process.stderr[-3000:]
    failures = run.failures()
    assert source in failures and words in failures[source], run.process.stderr[-3000:]
    assert proxy.requests - requests_before < 400, "it stopped, but late"
    text = metrics(run.config_path)
    assert up(text, source) == 0.0
    return text


def test_a_continuation_token_cycle_fails_the_pass(proxy: MutatingProxy, tmp_path: Path) -> None:
    cycle = {None: "A", "A": "B", "B": "A"}
    proxy.rewrite = revisions_chained(lambda token: cycle[token])
    before = proxy.requests
    run = sync(proxy, tmp_path, ("boards",))
    failed_visibly(run, "boards", "pagination cycle", proxy, before)
    # every page read was committed with the token that follows it, no further
    store = Store(run.store_url)
    assert store.watermark("boards", "revisions") in ("A", "B")
    assert len(store.work_items()) > 0
    store.close()


def test_ever_new_tokens_without_new_records_end_the_walk(proxy: MutatingProxy, tmp_path: Path) -> None:
    proxy.rewrite = revisions_chained(lambda token: f"t{int(token[1:]) + 1}" if token else "t1")
    before = proxy.requests
    failed_visibly(sync(proxy, tmp_path, ("boards",)), "boards", "brought nothing new", proxy, before)


def test_environment_records_that_never_end(proxy: MutatingProxy, tmp_path: Path) -> None:
    proxy.rewrite = records_chained(fresh_ids=False)
    before = proxy.requests
    failed_visibly(sync(proxy, tmp_path, ("pipelines",)), "pipelines", "brought nothing new", proxy, before)


def test_the_page_cap_stops_a_list_of_ever_new_records(proxy: MutatingProxy, tmp_path: Path) -> None:
    proxy.rewrite = records_chained(fresh_ids=True)
    before = proxy.requests
    run = sync(proxy, tmp_path, ("pipelines",), max_pages=30)
    failed_visibly(run, "pipelines", "more than 30 pages", proxy, before)


def test_endless_link_pages_end_the_walk(proxy: MutatingProxy, tmp_path: Path) -> None:
    proxy.rewrite = issues_linked(proxy, lambda page: page + 1)
    before = proxy.requests
    run = sync(proxy, tmp_path, ("gh_web",))
    failed_visibly(run, "gh_web", "brought nothing new", proxy, before)
    # the other parts of the repository were still read
    assert run.rows("gh_web")["deployments"]


def test_a_link_cycle_fails_the_walk(proxy: MutatingProxy, tmp_path: Path) -> None:
    proxy.rewrite = issues_linked(proxy, lambda page: 3 if page == 2 else 2)
    before = proxy.requests
    failed_visibly(sync(proxy, tmp_path, ("gh_web",)), "gh_web", "pagination cycle", proxy, before)


def test_a_link_to_another_host_is_not_followed_with_our_token(proxy: MutatingProxy, tmp_path: Path) -> None:
    class Elsewhere(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            tokens.append(self.headers.get("Authorization"))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"[]")

        def log_message(self, *args: object) -> None:
            pass

    tokens: list[str | None] = []
    other = ThreadingHTTPServer(("127.0.0.1", 0), Elsewhere)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        linked = issues_linked(proxy, lambda page: page + 1)

        def away(answer: Answer) -> Answer | None:
            changed = linked(answer)
            if changed is not None:  # the same path and page, on a host that is not GitHub's
                changed.headers["Link"] = changed.headers["Link"].replace(
                    proxy.url, f"http://127.0.0.1:{other.server_port}"
                )
            return changed

        proxy.rewrite = away
        before = proxy.requests
        run = sync(proxy, tmp_path, ("gh_web",))
        failed_visibly(run, "gh_web", "leads to another host", proxy, before)
        assert tokens == []  # nothing was sent there, let alone the token
        assert run.rows("gh_web")["deployments"]  # the repository's other parts were still read
    finally:
        other.shutdown()


def test_an_issues_answer_that_is_an_object_fails_its_part_visibly(proxy: MutatingProxy, tmp_path: Path) -> None:
    """Read as an empty list, it would move the watermark past a page it never read."""

    def rewrite(answer: Answer) -> Answer | None:
        if urlsplit(answer.path).path != "/api/v3/repos/contoso/web/issues" or answer.status != 200:
            return None
        answer.body = {"total_count": len(answer.body), "items": answer.body}
        return answer

    proxy.rewrite = rewrite
    before = proxy.requests
    run = sync(proxy, tmp_path, ("gh_web",))
    failed_visibly(run, "gh_web", "issues: expected a list, got dict", proxy, before)
    found = run.rows("gh_web")
    assert found["work_items"] == set() and found["deployments"], "the issues part failed, the others were read"


@pytest.mark.parametrize(
    ("source", "endpoint", "says"),
    [
        ("boards", "/_apis/wit/reporting/workitemrevisions", "unexpected reporting revisions response"),
        ("pipelines", "/_apis/distributedtask/environments", "an object without a 'value' list"),
    ],
)
def test_an_azure_answer_without_its_list_fails_visibly(
    proxy: MutatingProxy, tmp_path: Path, source: str, endpoint: str, says: str
) -> None:
    """An object that is no answer of the API (a proxy's page, an error document) is not an empty
    list: read as one, the walk and its watermark would pass records never read."""

    def rewrite(answer: Answer) -> Answer | None:
        if not urlsplit(answer.path).path.endswith(endpoint) or answer.status != 200:
            return None
        answer.body = {"message": "maintenance page", "items": []}
        return answer

    proxy.rewrite = rewrite
    before = proxy.requests
    failed_visibly(sync(proxy, tmp_path, (source,)), source, says, proxy, before)


# -- serve: one poll through the hostile proxy, then /metrics and /readyz ---------------------------------
def test_serve_counts_bad_records_and_reports_the_endless_list(
    proxy: MutatingProxy, baseline: dict[str, Any], tmp_path: Path
) -> None:
    """``cycletime serve`` polls once through the proxy: the records nested too deeply are counted
    on /metrics with every valid record kept, the environment records that never end put
    ``pipelines`` down, /readyz answers 503 naming it, and SIGTERM ends the process promptly."""
    names = ("revision_nested_100000_deep", "issue_nested_5000_deep")
    records, seen = rewriting(names)
    endless = records_chained(fresh_ids=False)
    proxy.rewrite = lambda answer: records(answer) or endless(answer)
    port = free_port()
    store_url = f"sqlite:///{tmp_path}/store.db"
    config_path = tmp_path / "config.yaml"
    sources = ("boards", "pipelines", "gh_web")
    config_path.write_text(
        config_yaml(proxy.url, store_url, listen=f"127.0.0.1:{port}", only=sources, github_api="rest")
    )
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "collector", "serve", "--config", str(config_path), "--log-format", "json"],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + PROCESS_TIMEOUT
        while True:
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "serve did not poll every source within the timeout"
            try:
                if "never polled" not in requests.get(url + "/", timeout=5).text:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.3)
        readyz = requests.get(url + "/readyz", timeout=10)
        text = requests.get(url + "/metrics", timeout=10).text
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            pytest.fail("serve did not stop within 30 s of SIGTERM")
    assert process.returncode == 0, log.read_text()[-3000:]
    assert all(seen.values())
    assert readyz.status_code == 503 and "pipelines" in readyz.text, readyz.text
    promtool_accepts(text)
    assert up(text, "pipelines") == 0.0 and up(text, "boards") == 1.0 and up(text, "gh_web") == 1.0
    store = Store(store_url)
    for source in ("boards", "gh_web"):
        expected_rows, expected_rejections = baseline[source]
        assert rejected(text, source) - expected_rejections == Counter({"too_deep": 1}), source
        assert rows(store, source) == expected_rows, source
    store.close()
    assert "Traceback" not in log.read_text()


# -- a wrong organisation is named as such -----------------------------------------------------------------
def test_a_wrong_organisation_or_project_is_named(sandbox: Sandbox, tmp_path: Path) -> None:
    sources = [
        azure_source(kind, sandbox.url, TOKEN, project, name=f"{kind}_{name}", organization=organisation)
        for name, organisation, project in (("org", "nosuchorg", "Fabrikam"), ("project", "contoso", "NoSuchProject"))
        for kind in ("azure_boards", "azure_pipelines")
    ]
    config_path = tmp_path / "config.yaml"
    config_path.write_text(sandbox_config(f"sqlite:///{tmp_path}/store.db", sources))
    process = cycletime("sync", "--config", str(config_path), "--log-format", "json")
    assert process.returncode == 1 and "Traceback" not in process.stderr
    failures = dict(re.findall(r"^cycletime sync: source (\S+) failed: (.*)$", process.stderr, re.M))
    assert len(failures) == 4, process.stderr[-3000:]
    for kind in ("azure_boards", "azure_pipelines"):
        assert "organisation not found" in failures[f"{kind}_org"] and "project" not in failures[f"{kind}_org"]
        assert "project 'NoSuchProject' not found" in failures[f"{kind}_project"]
