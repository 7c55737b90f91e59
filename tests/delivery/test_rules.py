"""config/prometheus/rules.yaml: promtool accepts it, every alert is unit-tested both ways."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from .promql import CONTRACT_METRICS, ROOT, RULES_FILE, load_rules, metric_names, recording_rule_names, run_promtool

HERE = Path(__file__).resolve().parent
UNIT_TEST_FILES = sorted(HERE.glob("rules_test*.yaml"))
RUNBOOKS = ROOT / "config" / "prometheus" / "runbooks.md"


def _alerts() -> list[dict[str, Any]]:
    return [r for g in load_rules()["groups"] for r in g["rules"] if "alert" in r]


def _alert_cases() -> list[dict[str, Any]]:
    cases = []
    for path in UNIT_TEST_FILES:
        for test in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            for case in test.get("alert_rule_test", []):
                cases.append({**case, "test": f"{path.name}: {test.get('name', '?')}"})
    return cases


def test_promtool_check_rules() -> None:
    result = run_promtool("check", "rules", str(RULES_FILE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    assert UNIT_TEST_FILES, "no rules_test*.yaml next to this file"
    result = run_promtool("test", "rules", *map(str, UNIT_TEST_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_unit_tests_load_the_shipped_rules() -> None:
    for path in UNIT_TEST_FILES:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        files = [(path.parent / f).resolve() for f in doc["rule_files"]]
        assert files == [RULES_FILE.resolve()], path.name


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    cases = _alert_cases()
    problems = []
    for alert in _alerts():
        name = alert["alert"]
        mine = [c for c in cases if c["alertname"] == name]
        firing = [c for c in mine if c.get("exp_alerts")]
        quiet = [c for c in mine if not c.get("exp_alerts")]
        if not firing:
            problems.append(f"{name}: no unit test where it fires")
        if not quiet:
            problems.append(f"{name}: no unit test where it stays quiet")
        for case in firing:
            for exp in case["exp_alerts"]:
                if exp.get("exp_labels", {}).get("severity") != alert["labels"]["severity"]:
                    problems.append(
                        f"{name} ({case['test']}): expected labels lack severity {alert['labels']['severity']}"
                    )
                if set(exp.get("exp_annotations", {})) != set(alert["annotations"]):
                    problems.append(
                        f"{name} ({case['test']}): expected annotations must be exact: {sorted(alert['annotations'])}"
                    )
    unknown = {c["alertname"] for c in cases} - {a["alert"] for a in _alerts()}
    if unknown:
        problems.append(f"unit tests for alerts that do not exist: {sorted(unknown)}")
    assert not problems, "\n".join(problems)


def test_regression_alerts_have_a_min_count_guard() -> None:
    regressions = [alert for alert in _alerts() if "Regression" in alert["alert"]]
    assert len(regressions) >= 2, "the cycle time and change lead time regression alerts are missing"
    for alert in regressions:
        assert "window_count" in alert["expr"] and ">=" in alert["expr"], alert["alert"]


@pytest.mark.parametrize("alert", _alerts(), ids=lambda a: a["alert"])
def test_alert_shape(alert: dict[str, Any]) -> None:
    assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", alert["alert"])
    assert alert["labels"]["severity"] in {"critical", "warning", "info"}
    assert set(alert["annotations"]) == {"summary", "description", "runbook_url"}
    anchor = alert["annotations"]["runbook_url"].split("#", 1)[1]
    assert anchor == alert["alert"].lower()
    headings = re.findall(r"^## (\w+)", RUNBOOKS.read_text(encoding="utf-8"), re.M)
    assert alert["alert"] in headings, f"config/prometheus/runbooks.md has no section for {alert['alert']}"


def test_rule_names_and_metrics() -> None:
    rules = load_rules()
    records = recording_rule_names(rules)
    known = CONTRACT_METRICS | records
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "record" in rule:
                # level:metric:operations
                assert re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", rule["record"]), rule["record"]
            used = metric_names(rule["expr"])
            assert used, rule
            assert used <= known, f"{rule.get('record') or rule.get('alert')}: unknown {sorted(used - known)}"


def test_metric_name_extraction() -> None:
    expr = (
        'sum by (le, source) (increase(cycletime_request_to_release_seconds_bucket{team=~"a|b"}[1h] '
        "offset 90d)) / on () group_left a:b:c - 1e3 and time() - x_total > 0.5"
    )
    assert metric_names(expr) == {"cycletime_request_to_release_seconds_bucket", "a:b:c", "x_total"}
