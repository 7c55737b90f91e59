"""`cycletime metrics --at T` after a real full sync equals an independent per-item computation.

The sandbox serves its seeded organisation over HTTP; the real CLI syncs it into a SQLite file
and prints the exposition as of T; ``tests/reference.py`` computes every figure from the
sandbox's ground truth without importing compute, linking or any source. Both must agree on
every series, at the sandbox's "today" and 90 days before, with and without injected faults.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import azure_source, github_source, sandbox_config
from prometheus_client.parser import text_string_to_metric_families
from reference import BOUNDS, Expected, quantile, reference_figures

from sandbox.app import Sandbox, SandboxOptions

TOKEN = "reference-token-1"
WINDOWS = {"7d": 7 * 86400.0, "30d": 30 * 86400.0, "90d": 90 * 86400.0}
QUANTILES = (0.5, 0.85, 0.95)


def sources(sandbox: Sandbox) -> list[dict[str, Any]]:
    url = sandbox.url
    return [
        azure_source("azure_boards", url, TOKEN),
        azure_source("azure_boards", url, TOKEN, "Tailspin", name="boards-tailspin"),
        azure_source("azure_pipelines", url, TOKEN, production_environments=["production"]),
        azure_source("azure_repos", url, TOKEN, name="repos"),
        azure_source(
            "azure_pipelines",
            url,
            TOKEN,
            "Tailspin",
            name="pipelines-tailspin",
            production_environments=["/^(production|Prod)$/"],
        ),
        github_source(url, TOKEN, name="github-web", deployments_from="deployments"),
        github_source(url, TOKEN, ["contoso/api"], name="github-api", deployments_from="releases"),
        github_source(
            url, TOKEN, ["contoso/mobile-app"], name="github-mobile", deployments_from="workflow_runs:deploy.yml"
        ),
    ]


def write_config(path: Path, store: Path, srcs: list[dict[str, Any]]) -> Path:
    settings = {"history": "400d", "windows": list(WINDOWS), "quantiles": list(QUANTILES)}
    path.write_text(sandbox_config(f"sqlite:///{store}", srcs, **settings))
    return path


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run(
        [sys.executable, "-m", "collector", *args, "--log-format", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def exposition(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """sample name → sorted label pairs → value."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name][tuple(sorted(s.labels.items()))] = s.value
    return out


def _keyed(names: tuple[str, ...], labels: tuple[str, ...], **extra: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({**dict(zip(names, labels, strict=True)), **extra}.items()))


HISTOGRAM_LABELS = {
    "cycletime_work_item_lead_time": ("source", "project", "team", "type"),
    "cycletime_work_item_cycle_time": ("source", "project", "team", "type"),
    "cycletime_request_to_release": ("source", "project", "team", "type", "environment"),
    "cycletime_change_lead_time": ("source", "service", "environment"),
    "cycletime_failed_deployment_recovery": ("source", "service", "environment", "production"),
    "cycletime_change_stage": ("source", "service", "stage"),
    "cycletime_request_stage": ("source", "project", "team", "type", "stage"),
}


def assert_matches(seen: dict[str, dict[tuple[tuple[str, str], ...], float]], want: Expected, at: float) -> None:
    problems: list[str] = []

    def check(name: str, key: tuple[tuple[str, str], ...], value: float) -> None:
        got = seen[name].get(key)
        if got is None or not math.isclose(got, value, rel_tol=1e-9, abs_tol=1e-6):
            problems.append(f"{name}{dict(key)}: exposition {got}, reference {value}")

    def same_keys(name: str, keys: set[tuple[tuple[str, str], ...]]) -> None:
        extra = set(seen[name]) - keys
        problems.extend(f"{name}{dict(k)}: in the exposition only ({seen[name][k]})" for k in sorted(extra)[:5])

    for base, names in HISTOGRAM_LABELS.items():
        series = {labels: pairs for labels, pairs in want.histograms[base].items() if pairs}
        counts, windows = set(), set()
        for labels, pairs in series.items():
            key = _keyed(names, labels)
            counts.add(key)
            check(f"{base}_seconds_count", key, len(pairs))
            check(f"{base}_seconds_sum", key, sum(v for _, v in pairs))
            for bound, n in zip([*BOUNDS, math.inf], want.buckets(base, labels), strict=True):
                check(
                    f"{base}_seconds_bucket",
                    _keyed(names, labels, le="+Inf" if bound == math.inf else repr(float(bound))),
                    n,
                )
            for window, seconds in WINDOWS.items():
                values = want.window(base, labels, at, seconds)
                check(f"{base}_window_count", _keyed(names, labels, window=window), len(values))
                for q in QUANTILES if values else ():
                    wkey = _keyed(names, labels, window=window, quantile=repr(q))
                    windows.add(wkey)
                    check(f"{base}_window_seconds", wkey, quantile(values, q))
        same_keys(f"{base}_seconds_count", counts)
        same_keys(f"{base}_window_seconds", windows)

    state_names = ("source", "project", "team", "type", "state", "category")
    for labels, value in want.state_seconds.items():
        check("cycletime_work_item_state_seconds_total", _keyed(state_names, labels), value)
    same_keys("cycletime_work_item_state_seconds_total", {_keyed(state_names, k) for k in want.state_seconds})
    dep_names = ("source", "service", "environment", "production", "status")
    for labels, n in want.deployments.items():
        check("cycletime_deployments_total", _keyed(dep_names, labels), n)
    same_keys("cycletime_deployments_total", {_keyed(dep_names, k) for k in want.deployments})
    for labels, ends in want.deployment_ends.items():
        for window, seconds in WINDOWS.items():
            check(
                "cycletime_deployments_window_count",
                _keyed(dep_names, labels, window=window),
                sum(1 for end in ends if at - seconds < end <= at),
            )
    flows = set()
    for labels, rows in want.active.items():
        for window, seconds in WINDOWS.items():
            inside = [(work, lead) for end, work, lead in rows if at - seconds < end <= at]
            if sum(lead for _, lead in inside) > 0:
                key = _keyed(("source", "project", "team", "type"), labels, window=window)
                flows.add(key)
                check(
                    "cycletime_work_item_flow_efficiency_window_ratio",
                    key,
                    sum(work for work, _ in inside) / sum(lead for _, lead in inside),
                )
    same_keys("cycletime_work_item_flow_efficiency_window_ratio", flows)
    wip_names = ("source", "project", "team", "type", "category")
    for labels, n in want.wip.items():
        check("cycletime_work_items_in_progress", _keyed(wip_names, labels), n)
    same_keys("cycletime_work_items_in_progress", {_keyed(wip_names, k) for k in want.wip})
    for (source, reason), n in want.rejected.items():
        check("cycletime_records_rejected_total", (("reason", reason), ("source", source)), n)
    assert not problems, f"{len(problems)} differences, first ones:\n" + "\n".join(problems[:25])


@pytest.mark.parametrize("fault_rate", [0.0, 0.2])
def test_metrics_at_equal_an_independent_reference(tmp_path: Path, fault_rate: float) -> None:
    with Sandbox(SandboxOptions(seed=11, work_items=240, token=TOKEN, fault_rate=fault_rate)) as sandbox:
        srcs = sources(sandbox)
        config = write_config(tmp_path / "c.yaml", tmp_path / "s.db", srcs)
        for _attempt in range(12):  # a faulty pass fails visibly; the next one resumes
            done = cli("sync", "--config", str(config))
            if done.returncode == 0:
                break
        assert done.returncode == 0, done.stderr[-2000:]
        truth = sandbox.truth()
        today = sandbox.options.now or sandbox._clock
    now = reference_figures(truth, srcs, today.timestamp())
    totals = {base: sum(map(len, series.values())) for base, series in now.histograms.items()}
    assert totals.get("cycletime_request_to_release", 0) >= 20 and totals.get("cycletime_change_lead_time", 0) >= 20
    assert totals.get("cycletime_request_stage", 0) == 4 * totals["cycletime_request_to_release"]
    assert totals.get("cycletime_change_stage", 0) > totals["cycletime_change_lead_time"]  # PRs have four
    for at in (today, today - timedelta(days=90)):
        shown = cli("metrics", "--config", str(config), "--at", at.isoformat())
        assert shown.returncode == 0, shown.stderr
        assert_matches(exposition(shown.stdout), reference_figures(truth, srcs, at.timestamp()), at.timestamp())


def test_metrics_at_rejects_a_bad_time(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "c.yaml",
        tmp_path / "s.db",
        [github_source("http://127.0.0.1:9", TOKEN, ["o/r"], name="gh")],
    )
    shown = cli("metrics", "--config", str(config), "--at", "last tuesday")
    assert shown.returncode == 2
    assert "neither an ISO 8601 time nor -<duration>" in shown.stderr
