"""Shared helpers for the delivery tests: contract metric names, PromQL metric extraction, promtool.

Standard library and PyYAML only, so other tests can import it (or load it by path).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES_FILE = ROOT / "config" / "prometheus" / "rules.yaml"
GRAFANA_DIR = ROOT / "config" / "grafana"
CHART_DIR = ROOT / "helm" / "cycletime-collector"

HISTOGRAMS = {
    "cycletime_work_item_lead_time_seconds",
    "cycletime_work_item_cycle_time_seconds",
    "cycletime_request_to_release_seconds",
    "cycletime_change_lead_time_seconds",
    "cycletime_failed_deployment_recovery_seconds",
    "cycletime_change_stage_seconds",
    "cycletime_request_stage_seconds",
}
#: every metric name (docs/metrics.md) a query may use (histogram series and window gauges included)
CONTRACT_METRICS: frozenset[str] = frozenset(
    {
        "cycletime_work_item_state_seconds_total",
        "cycletime_deployments_total",
        "cycletime_deployments_window_count",
        "cycletime_work_item_flow_efficiency_window_ratio",
        "cycletime_work_items_in_progress",
        "cycletime_source_up",
        "cycletime_source_last_success_timestamp_seconds",
        "cycletime_api_requests_total",
        "cycletime_api_rate_limit_remaining",
        "cycletime_api_budget_remaining",
        "cycletime_sync_backlog",
        "cycletime_records_rejected_total",
    }
    | {
        f"{h}{suffix}"
        for h in HISTOGRAMS | {"cycletime_source_poll_duration_seconds"}
        for suffix in ("_bucket", "_sum", "_count")
    }
    | {f"{h.removesuffix('_seconds')}_window_{suffix}" for h in HISTOGRAMS for suffix in ("seconds", "count")}
)

_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
    "atan2",
    "start",
    "end",
}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (best effort, no full parser needed for our queries)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for m in re.finditer(r"(?<![\w.])[A-Za-z_:][\w:]*", text):
        name = m.group(0)
        if name.lower() in _KEYWORDS:
            continue
        if re.match(r"\s*\(", text[m.end() :]):
            continue  # a function or an aggregation
        names.add(name)
    return names


def load_rules(path: Path = RULES_FILE) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def recording_rule_names(rules: dict[str, Any] | None = None) -> set[str]:
    rules = rules or load_rules()
    return {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}


def promtool() -> str:
    """Path of promtool; fails (never skips) the calling test when it is missing."""
    path = shutil.which("promtool")
    if not path:
        pytest.fail(
            "promtool is not installed: install the Debian package `prometheus` (make system-deps) "
            "or put Prometheus' promtool on PATH; the delivery tests need it",
            pytrace=False,
        )
    return path


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=600, check=False)


def check_exprs_with_promtool(exprs: Iterable[tuple[str, str]]) -> subprocess.CompletedProcess[str]:
    """Write each (name, expr) as a recording rule into a temporary file and `promtool check rules` it."""
    items = list(exprs)
    rules = [{"record": f"check:expr:{i}", "expr": expr} for i, (_, expr) in enumerate(items)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "exprs.yaml"
        path.write_text(yaml.safe_dump({"groups": [{"name": "check", "rules": rules}]}), encoding="utf-8")
        return run_promtool("check", "rules", str(path))
