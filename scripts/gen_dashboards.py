#!/usr/bin/env python3
"""Generate the delivery artefacts from one definition, deterministically.

Writes:

* ``config/grafana/{request-to-release,flow,dora,collector-health,where-the-time-goes}.json`` — the Grafana dashboards;
* ``helm/cycletime-collector/dashboards/*.json`` — byte-identical copies (Helm cannot read files
  outside the chart directory, the dashboards ConfigMap uses ``.Files.Glob``);
* ``config/prometheus/rules.yaml`` — recording rules and alerts, thresholds at their defaults;
* ``helm/cycletime-collector/templates/prometheusrule.yaml`` — the same rules with every threshold
  taken from ``.Values.prometheusRule.thresholds`` (so the chart rendered with its default values
  yields exactly ``rules.yaml``; a test checks it).

Edit the definitions here, then run ``make dashboards``. ``--check`` exits 1 (listing the files)
when a checked-in file differs from what would be generated.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, NamedTuple

import yaml

ROOT = Path(__file__).resolve().parent.parent
GRAFANA_DIR = ROOT / "config" / "grafana"
CHART_DIR = ROOT / "helm" / "cycletime-collector"
CHART_DASHBOARDS_DIR = CHART_DIR / "dashboards"
RULES_FILE = ROOT / "config" / "prometheus" / "rules.yaml"
RULE_TEMPLATE_FILE = CHART_DIR / "templates" / "prometheusrule.yaml"

# ---------------------------------------------------------------------------------------------------
# Prometheus rules
# ---------------------------------------------------------------------------------------------------

#: Rule parameters: name -> default. In rules.yaml they are replaced by the default; in the Helm
#: template by ``{{ .Values.prometheusRule.thresholds.<name> }}``. values.yaml carries the same defaults.
THRESHOLDS: dict[str, Any] = {
    "cycleTimeRegressionRatio": 1.5,
    "cycleTimeRegressionMinItems": 5,
    "changeLeadTimeRegressionRatio": 1.5,
    "changeLeadTimeRegressionMinChanges": 5,
    "regressionFor": "1h",
    # a stage's p85 over 30 days / over 90 days, by at least this much longer, with this many items in
    # 30 days: a pickup going from 10 to 20 minutes doubles without being worth a page
    "requestStageRegressionRatio": 1.25,
    "requestStageRegressionMinIncreaseSeconds": 86400,
    "requestStageRegressionMinItems": 5,
    "changeStageRegressionRatio": 1.25,
    "changeStageRegressionMinIncreaseSeconds": 14400,
    "changeStageRegressionMinChanges": 5,
    "stageRegressionFor": "6h",
    "deploymentFrequencyDropRatio": 0.5,
    "deploymentFrequencyMinDeployments30d": 8,
    "deploymentFrequencyDropFor": "6h",
    "changeFailureRate": 0.3,
    "changeFailureRateMinDeployments": 5,
    "changeFailureRateFor": "1h",
    "sourceDownFor": "15m",
    # 3 poll intervals of the default 5m, plus 5m of margin for a slow poll.
    "staleAfterSeconds": 1200,
    "staleFor": "5m",
    "rateLimitRemaining": 100,
    "rateLimitFor": "10m",
    # a first sync larger than one rate-limit window spreads over several; a day of backlog is not that
    "syncBacklogFor": "24h",
    "runbookBaseUrl": "https://github.com/cycletime-collector/cycletime-collector/blob/main/"
    "config/prometheus/runbooks.md",
}

_PARAM = re.compile(r"PARAM__([A-Za-z0-9]+)__")


def P(name: str) -> str:
    if name not in THRESHOLDS:
        raise KeyError(name)
    return f"PARAM__{name}__"


def _runbook(alert: str) -> str:
    return f"{P('runbookBaseUrl')}#{alert.lower()}"


WI = "source, project, team, type"
DEP = "source, service, environment"
WI_STAGE = "source, project, team, type, stage"
CHANGE_STAGE = "source, service, stage"
DEP7 = "source_service_environment_status:cycletime_deployments_window_count:production_7d"
DEP30 = "source_service_environment_status:cycletime_deployments_window_count:production_30d"

RECORDING_RULES: list[dict[str, Any]] = [
    {
        "record": "source_project_team_type:cycletime_work_item_cycle_time_p85:ratio_7d_90d",
        "expr": (
            f'max by ({WI}) (cycletime_work_item_cycle_time_window_seconds{{window="7d",quantile="0.85"}})\n'
            "/\n"
            f"(max by ({WI}) "
            '(cycletime_work_item_cycle_time_window_seconds{window="90d",quantile="0.85"}) > 0)\n'
        ),
    },
    {
        "record": "source_project_team_type:cycletime_work_item_cycle_time_window_count:7d",
        "expr": f'max by ({WI}) (cycletime_work_item_cycle_time_window_count{{window="7d"}})\n',
    },
    {
        "record": "source_service_environment:cycletime_change_lead_time_p85:ratio_7d_90d",
        "expr": (
            f'max by ({DEP}) (cycletime_change_lead_time_window_seconds{{window="7d",quantile="0.85"}})\n'
            "/\n"
            f'(max by ({DEP}) (cycletime_change_lead_time_window_seconds{{window="90d",quantile="0.85"}}) > 0)\n'
        ),
    },
    {
        "record": "source_service_environment:cycletime_change_lead_time_window_count:7d",
        "expr": f'max by ({DEP}) (cycletime_change_lead_time_window_count{{window="7d"}})\n',
    },
    # Stages (request-to-release and change lead time split): p85 over 30 days against 90 days. The
    # stage gauges change slowly (a month of items), so the longer pair of windows than above.
    {
        "record": "source_project_team_type_stage:cycletime_request_stage_p85:ratio_30d_90d",
        "expr": (
            f'max by ({WI_STAGE}) (cycletime_request_stage_window_seconds{{window="30d",quantile="0.85"}})\n'
            "/\n"
            f"(max by ({WI_STAGE}) "
            '(cycletime_request_stage_window_seconds{window="90d",quantile="0.85"}) > 0)\n'
        ),
    },
    {
        "record": "source_project_team_type_stage:cycletime_request_stage_window_count:30d",
        "expr": f'max by ({WI_STAGE}) (cycletime_request_stage_window_count{{window="30d"}})\n',
    },
    {
        "record": "source_service_stage:cycletime_change_stage_p85:ratio_30d_90d",
        "expr": (
            f'max by ({CHANGE_STAGE}) (cycletime_change_stage_window_seconds{{window="30d",quantile="0.85"}})\n'
            "/\n"
            f"(max by ({CHANGE_STAGE}) "
            '(cycletime_change_stage_window_seconds{window="90d",quantile="0.85"}) > 0)\n'
        ),
    },
    {
        "record": "source_service_stage:cycletime_change_stage_window_count:30d",
        "expr": f'max by ({CHANGE_STAGE}) (cycletime_change_stage_window_count{{window="30d"}})\n',
    },
    # Production deployments per window from the collector's window gauges (the `production` label
    # is decided by each source's production_environments, docs/metrics.md): right from the first
    # scrape, and a staging or dev deployment never counts.
    {
        "record": "source_service_environment_status:cycletime_deployments_window_count:production_7d",
        "expr": (f'sum by ({DEP}, status) (cycletime_deployments_window_count{{production="true",window="7d"}})\n'),
    },
    {
        "record": "source_service_environment_status:cycletime_deployments_window_count:production_30d",
        "expr": (f'sum by ({DEP}, status) (cycletime_deployments_window_count{{production="true",window="30d"}})\n'),
    },
    {
        # successful production deployments per day over the last 7 days / per day over the last 30 days
        "record": "source_service_environment:cycletime_deployment_frequency:ratio_7d_30d",
        "expr": (
            "(\n"
            "  sum without (status) (\n"
            f'    {DEP7}{{status="success"}}\n'
            "  ) / 7\n"
            ")\n"
            "/\n"
            "(\n"
            "  sum without (status) (\n"
            f'    {DEP30}{{status="success"}}\n'
            "  ) / 30 > 0\n"
            ")\n"
        ),
    },
    {
        # failed / (successful + failed) production deployments over the last 7 days; 0 when a
        # service never failed (it then has no failure series at all)
        "record": "source_service_environment:cycletime_change_failure_rate:ratio_7d",
        "expr": (
            "(\n"
            f'  sum without (status) ({DEP7}{{status="failure"}})\n'
            "  or\n"
            f"  0 * sum without (status) ({DEP7})\n"
            ")\n"
            "/\n"
            "(\n"
            "  sum without (status) (\n"
            f'    {DEP7}{{status=~"success|failure"}}\n'
            "  ) > 0\n"
            ")\n"
        ),
    },
]

DELIVERY_ALERTS: list[dict[str, Any]] = [
    {
        "alert": "CycleTimeP85Regression",
        "expr": (
            "source_project_team_type:cycletime_work_item_cycle_time_p85:ratio_7d_90d"
            f" > {P('cycleTimeRegressionRatio')}\n"
            f"and on ({WI})\n"
            "source_project_team_type:cycletime_work_item_cycle_time_window_count:7d"
            f" >= {P('cycleTimeRegressionMinItems')}\n"
        ),
        "for": P("regressionFor"),
        "labels": {"severity": "warning"},
        "annotations": {
            "summary": "p85 cycle time of {{ $labels.team }} ({{ $labels.type }}) regressed",
            "description": (
                "The 85th percentile cycle time (first In Progress to completion) of {{ $labels.type }} "
                "items of team {{ $labels.team }} in {{ $labels.project }} (source {{ $labels.source }}) "
                'over the last 7 days is {{ $value | printf "%.2f" }} times its 90-day value '
                f"(threshold {P('cycleTimeRegressionRatio')}, at least "
                f"{P('cycleTimeRegressionMinItems')} items completed in 7 days)."
            ),
            "runbook_url": _runbook("CycleTimeP85Regression"),
        },
    },
    {
        "alert": "ChangeLeadTimeP85Regression",
        "expr": (
            "source_service_environment:cycletime_change_lead_time_p85:ratio_7d_90d"
            f" > {P('changeLeadTimeRegressionRatio')}\n"
            f"and on ({DEP})\n"
            "source_service_environment:cycletime_change_lead_time_window_count:7d"
            f" >= {P('changeLeadTimeRegressionMinChanges')}\n"
        ),
        "for": P("regressionFor"),
        "labels": {"severity": "warning"},
        "annotations": {
            "summary": "p85 change lead time of {{ $labels.service }} ({{ $labels.environment }}) regressed",
            "description": (
                "The 85th percentile change lead time (first commit to first successful deployment) of "
                "{{ $labels.service }} to {{ $labels.environment }} (source {{ $labels.source }}) over the "
                'last 7 days is {{ $value | printf "%.2f" }} times its 90-day value '
                f"(threshold {P('changeLeadTimeRegressionRatio')}, at least "
                f"{P('changeLeadTimeRegressionMinChanges')} changes deployed in 7 days)."
            ),
            "runbook_url": _runbook("ChangeLeadTimeP85Regression"),
        },
    },
    {
        "alert": "RequestStageP85Regression",
        "expr": (
            "source_project_team_type_stage:cycletime_request_stage_p85:ratio_30d_90d"
            f" > {P('requestStageRegressionRatio')}\n"
            f"and on ({WI_STAGE})\n"
            "(\n"
            f'  max by ({WI_STAGE}) (cycletime_request_stage_window_seconds{{window="30d",quantile="0.85"}})\n'
            "  -\n"
            f'  max by ({WI_STAGE}) (cycletime_request_stage_window_seconds{{window="90d",quantile="0.85"}})\n'
            f") >= {P('requestStageRegressionMinIncreaseSeconds')}\n"
            f"and on ({WI_STAGE})\n"
            "source_project_team_type_stage:cycletime_request_stage_window_count:30d"
            f" >= {P('requestStageRegressionMinItems')}\n"
        ),
        "for": P("stageRegressionFor"),
        "labels": {"severity": "warning"},
        "annotations": {
            "summary": "p85 {{ $labels.stage }} time of {{ $labels.team }} ({{ $labels.type }}) regressed",
            "description": (
                "The 85th percentile time that {{ $labels.type }} items of team {{ $labels.team }} in "
                "{{ $labels.project }} (source {{ $labels.source }}) spent in the {{ $labels.stage }} stage "
                "of request-to-release over the last 30 days is "
                '{{ $value | printf "%.2f" }} times its 90-day value '
                f"(threshold {P('requestStageRegressionRatio')}, at least "
                f"{P('requestStageRegressionMinIncreaseSeconds')}s longer, at least "
                f"{P('requestStageRegressionMinItems')} items released in 30 days)."
            ),
            "runbook_url": _runbook("RequestStageP85Regression"),
        },
    },
    {
        "alert": "ChangeStageP85Regression",
        "expr": (
            "source_service_stage:cycletime_change_stage_p85:ratio_30d_90d"
            f" > {P('changeStageRegressionRatio')}\n"
            f"and on ({CHANGE_STAGE})\n"
            "(\n"
            f'  max by ({CHANGE_STAGE}) (cycletime_change_stage_window_seconds{{window="30d",quantile="0.85"}})\n'
            "  -\n"
            f'  max by ({CHANGE_STAGE}) (cycletime_change_stage_window_seconds{{window="90d",quantile="0.85"}})\n'
            f") >= {P('changeStageRegressionMinIncreaseSeconds')}\n"
            f"and on ({CHANGE_STAGE})\n"
            "source_service_stage:cycletime_change_stage_window_count:30d"
            f" >= {P('changeStageRegressionMinChanges')}\n"
        ),
        "for": P("stageRegressionFor"),
        "labels": {"severity": "warning"},
        "annotations": {
            "summary": "p85 {{ $labels.stage }} time of {{ $labels.service }} changes regressed",
            "description": (
                "The 85th percentile time that changes of {{ $labels.service }} (source {{ $labels.source }}) "
                "spent in the {{ $labels.stage }} stage of change lead time over the last 30 days is "
                '{{ $value | printf "%.2f" }} times its 90-day value '
                f"(threshold {P('changeStageRegressionRatio')}, at least "
                f"{P('changeStageRegressionMinIncreaseSeconds')}s longer, at least "
                f"{P('changeStageRegressionMinChanges')} changes deployed in 30 days)."
            ),
            "runbook_url": _runbook("ChangeStageP85Regression"),
        },
    },
    {
        "alert": "DeploymentFrequencyDrop",
        "expr": (
            "source_service_environment:cycletime_deployment_frequency:ratio_7d_30d"
            f" < {P('deploymentFrequencyDropRatio')}\n"
            f"and on ({DEP})\n"
            f'sum without (status) ({DEP30}{{status="success"}})'
            f" >= {P('deploymentFrequencyMinDeployments30d')}\n"
        ),
        "for": P("deploymentFrequencyDropFor"),
        "labels": {"severity": "info"},
        "annotations": {
            "summary": "Deployment frequency of {{ $labels.service }} ({{ $labels.environment }}) dropped",
            "description": (
                "Successful deployments of {{ $labels.service }} to {{ $labels.environment }} "
                "(source {{ $labels.source }}) per day over the last 7 days are "
                "{{ $value | humanizePercentage }} of the 30-day daily average "
                f"(threshold {P('deploymentFrequencyDropRatio')}, at least "
                f"{P('deploymentFrequencyMinDeployments30d')} deployments in 30 days)."
            ),
            "runbook_url": _runbook("DeploymentFrequencyDrop"),
        },
    },
    {
        "alert": "ChangeFailureRateHigh",
        "expr": (
            "source_service_environment:cycletime_change_failure_rate:ratio_7d"
            f" > {P('changeFailureRate')}\n"
            f"and on ({DEP})\n"
            f'sum without (status) ({DEP7}{{status=~"success|failure"}})'
            f" >= {P('changeFailureRateMinDeployments')}\n"
        ),
        "for": P("changeFailureRateFor"),
        "labels": {"severity": "warning"},
        "annotations": {
            "summary": "Change failure rate of {{ $labels.service }} ({{ $labels.environment }}) is high",
            "description": (
                "{{ $value | humanizePercentage }} of the deployments of {{ $labels.service }} to "
                "{{ $labels.environment }} (source {{ $labels.source }}) in the last 7 days failed "
                f"(threshold {P('changeFailureRate')}, at least {P('changeFailureRateMinDeployments')} "
                "deployments in 7 days)."
            ),
            "runbook_url": _runbook("ChangeFailureRateHigh"),
        },
    },
]

COLLECTOR_ALERTS: list[dict[str, Any]] = [
    {
        "alert": "CycletimeSourceDown",
        "expr": "cycletime_source_up == 0\n",
        "for": P("sourceDownFor"),
        "labels": {"severity": "warning"},
        "annotations": {
            "summary": "cycletime-collector cannot poll source {{ $labels.source }}",
            "description": (
                "The last poll of source {{ $labels.source }} (with shards: of at least one shard) has "
                f"failed for {P('sourceDownFor')}; its figures are not being updated. The landing page "
                "of {{ $labels.instance }} shows the last error, naming the failing shard; the logs have "
                "details."
            ),
            "runbook_url": _runbook("CycletimeSourceDown"),
        },
    },
    {
        # `> 0`: a source that never finished its first sync (which can take long) is not "stale";
        # CycletimeSourceDown covers a first sync that fails.
        "alert": "CycletimeSourceStale",
        "expr": (
            f"time() - cycletime_source_last_success_timestamp_seconds > {P('staleAfterSeconds')}\n"
            "and\n"
            "cycletime_source_last_success_timestamp_seconds > 0\n"
        ),
        "for": P("staleFor"),
        "labels": {"severity": "warning"},
        "annotations": {
            "summary": "Data of source {{ $labels.source }} is stale",
            "description": (
                "The last successful poll of source {{ $labels.source }} (with shards: the oldest of the "
                "shards' last ones) ended {{ $value | humanizeDuration }} ago (threshold "
                f"{P('staleAfterSeconds')}s, about three poll intervals)."
            ),
            "runbook_url": _runbook("CycletimeSourceStale"),
        },
    },
    {
        "alert": "CycletimeRateLimitLow",
        "expr": f"cycletime_api_rate_limit_remaining < {P('rateLimitRemaining')}\n",
        "for": P("rateLimitFor"),
        "labels": {"severity": "warning"},
        "annotations": {
            "summary": "API rate-limit budget of source {{ $labels.source }} is nearly exhausted",
            "description": (
                "Source {{ $labels.source }} reports {{ $value }} API requests left in the current "
                f"rate-limit window (threshold {P('rateLimitRemaining')}); polls will slow down or fail "
                "until the window resets."
            ),
            "runbook_url": _runbook("CycletimeRateLimitLow"),
        },
    },
    {
        "alert": "CycletimeSyncBehind",
        "expr": "cycletime_sync_backlog > 0\n",
        "for": P("syncBacklogFor"),
        "labels": {"severity": "warning"},
        "annotations": {
            "summary": "Source {{ $labels.source }} is not catching up within its rate budget",
            "description": (
                "Every pass of source {{ $labels.source }} on {{ $labels.instance }} for "
                f"{P('syncBacklogFor')} has ended with work left for later by the rate budget (now "
                "{{ $value }} repository streams): its figures lag behind, and a backlog that never "
                "empties means the budget cannot keep up with the repositories."
            ),
            "runbook_url": _runbook("CycletimeSyncBehind"),
        },
    },
    {
        "alert": "CycletimeRecordsRejected",
        "expr": "sum by (source, reason) (increase(cycletime_records_rejected_total[1h])) > 0\n",
        "labels": {"severity": "info"},
        "annotations": {
            "summary": "Source {{ $labels.source }} delivered invalid records",
            "description": (
                'About {{ $value | printf "%.0f" }} records of source {{ $labels.source }} were skipped '
                "in the last hour as invalid (reason {{ $labels.reason }}). They are missing from the "
                "figures; the collector logs each one."
            ),
            "runbook_url": _runbook("CycletimeRecordsRejected"),
        },
    },
]

RULE_GROUPS: list[dict[str, Any]] = [
    {"name": "cycletime.recording", "rules": RECORDING_RULES},
    {"name": "cycletime.delivery", "rules": DELIVERY_ALERTS},
    {"name": "cycletime.collector", "rules": COLLECTOR_ALERTS},
]


class _Dumper(yaml.SafeDumper):
    pass


def _str_representer(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str_representer)


def _rules_yaml_body() -> str:
    return yaml.dump({"groups": RULE_GROUPS}, Dumper=_Dumper, sort_keys=False, width=1000, default_flow_style=False)


def _default_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def render_rules_yaml() -> str:
    body = _PARAM.sub(lambda m: _default_text(THRESHOLDS[m.group(1)]), _rules_yaml_body())
    return (
        "# Recording rules and alerts of cycletime-collector (metrics: docs/metrics.md).\n"
        "# GENERATED by scripts/gen_dashboards.py (`make dashboards`) - edit the definitions there.\n"
        "# The Helm chart renders the same rules with thresholds from values.yaml\n"
        "# (prometheusRule.thresholds); unit tests: tests/delivery/rules_test*.yaml.\n"
        "# The rules need windows 7d, 30d and 90d and quantile 0.85 in the collector config (the defaults);\n"
        "# DORA rules count production deployments only: the `production` label, never environment names.\n" + body
    )


def _values_path(name: str) -> str:
    if name == "runbookBaseUrl":
        return ".Values.prometheusRule.runbookBaseUrl"
    return ".Values.prometheusRule.thresholds." + name


def render_rule_template() -> str:
    body = _rules_yaml_body()
    # Prometheus template actions in annotations must reach the output verbatim: wrap each in a Go
    # raw-string action, {{`{{ $labels.x }}`}}.
    body = re.sub(r"\{\{.*?\}\}", lambda m: "{{`" + m.group(0) + "`}}", body)
    body = _PARAM.sub(lambda m: "{{ " + _values_path(m.group(1)) + " }}", body)
    assert body.startswith("groups:\n")
    groups = body[len("groups:\n") :]
    indented = "".join(("    " + line if line.strip() else line) for line in groups.splitlines(True))
    return (
        "{{- /* GENERATED by scripts/gen_dashboards.py from the same definitions as\n"
        "config/prometheus/rules.yaml; default values render exactly that file. */ -}}\n"
        "{{- if .Values.prometheusRule.enabled }}\n"
        "apiVersion: monitoring.coreos.com/v1\n"
        "kind: PrometheusRule\n"
        "metadata:\n"
        '  name: {{ include "cycletime-collector.fullname" . }}\n'
        "  namespace: {{ .Release.Namespace }}\n"
        "  labels:\n"
        '    {{- include "cycletime-collector.labels" . | nindent 4 }}\n'
        "    {{- with .Values.prometheusRule.additionalLabels }}\n"
        "    {{- toYaml . | nindent 4 }}\n"
        "    {{- end }}\n"
        "spec:\n"
        "  groups:\n" + indented + "{{- end }}\n"
    )


# ---------------------------------------------------------------------------------------------------
# Grafana dashboards
# ---------------------------------------------------------------------------------------------------

DS = {"type": "prometheus", "uid": "${datasource}"}
SCHEMA_VERSION = 39

WI_FILTER = 'source=~"$source",project=~"$project",team=~"$team",type=~"$type"'
R2R_FILTER = WI_FILTER + ',environment=~"$environment"'
DEP_FILTER = 'source=~"$source",service=~"$service",environment=~"$environment"'
SRC_FILTER = 'source=~"$source"'

# DORA performance bands (State of DevOps 2023), lowest-is-best metrics: elite below the first step.
DAY = 86400
WEEK = 7 * DAY
MONTH = 30 * DAY


def _steps(*pairs: tuple[str, float | None]) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in pairs]}


BANDS_DURATION_LEAD = _steps(("dark-green", None), ("green", DAY), ("yellow", WEEK), ("red", MONTH))
BANDS_RECOVERY = _steps(("dark-green", None), ("green", 3600), ("yellow", DAY), ("red", WEEK))
BANDS_CFR = _steps(("dark-green", None), ("green", 0.05), ("yellow", 0.10), ("red", 0.15))
# deployments per day: low < once a month <= medium < once a week <= high < once a day <= elite
BANDS_DEPLOY_FREQ = _steps(("red", None), ("yellow", 1 / 30), ("green", 1 / 7), ("dark-green", 1))
NEUTRAL = _steps(("green", None))


def target(
    expr: str, legend: str = "", ref: str = "A", *, instant: bool = False, fmt: str = "time_series", interval: str = ""
) -> dict[str, Any]:
    t: dict[str, Any] = {
        "datasource": DS,
        "editorMode": "code",
        "expr": expr,
        "format": fmt,
        "instant": instant,
        "legendFormat": legend or "__auto",
        "range": not instant,
        "refId": ref,
    }
    if interval:
        t["interval"] = interval
    return t


def targets(*items: tuple[str, str]) -> list[dict[str, Any]]:
    return [target(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(items)]


def _field_config(
    unit: str, thresholds: dict[str, Any] | None, custom: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "color": {"mode": "thresholds" if thresholds else "palette-classic"},
        "thresholds": thresholds or NEUTRAL,
        "unit": unit,
    }
    if custom is not None:
        defaults["custom"] = custom
    defaults.update(extra)
    return {"defaults": defaults, "overrides": []}


def timeseries(
    title: str,
    description: str,
    tgts: list[dict[str, Any]],
    unit: str,
    *,
    stack: bool = False,
    bars: bool = False,
    thresholds: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    custom = {
        "drawStyle": "bars" if bars else "line",
        "fillOpacity": 60 if bars else (30 if stack else 10),
        "lineWidth": 1,
        "showPoints": "never",
        "spanNulls": True,
        "stacking": {"group": "A", "mode": "normal" if stack else "none"},
        "thresholdsStyle": {"mode": "dashed" if thresholds else "off"},
    }
    fc = _field_config(unit, thresholds, custom, **extra)
    fc["defaults"]["color"] = {"mode": "palette-classic"}
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DS,
        "fieldConfig": fc,
        "options": {
            "legend": {"calcs": ["lastNotNull"], "displayMode": "table", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": tgts,
    }


def stat(
    title: str,
    description: str,
    tgts: list[dict[str, Any]],
    unit: str,
    thresholds: dict[str, Any] | None = None,
    *,
    mappings: list[dict[str, Any]] | None = None,
    graph: bool = True,
    text_mode: str = "auto",
    **extra: Any,
) -> dict[str, Any]:
    fc = _field_config(unit, thresholds, **extra)
    if mappings:
        fc["defaults"]["mappings"] = mappings
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DS,
        "fieldConfig": fc,
        "options": {
            "colorMode": "background" if thresholds else "value",
            "graphMode": "area" if graph else "none",
            "justifyMode": "auto",
            "orientation": "auto",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "textMode": text_mode,
        },
        "targets": tgts,
    }


def bargauge(
    title: str,
    description: str,
    tgts: list[dict[str, Any]],
    unit: str,
    thresholds: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "type": "bargauge",
        "title": title,
        "description": description,
        "datasource": DS,
        "fieldConfig": _field_config(unit, thresholds, **extra),
        "options": {
            "displayMode": "gradient",
            "orientation": "horizontal",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "showUnfilled": True,
        },
        "targets": tgts,
    }


def heatmap(title: str, description: str, tgts: list[dict[str, Any]], unit: str) -> dict[str, Any]:
    return {
        "type": "heatmap",
        "title": title,
        "description": description,
        "datasource": DS,
        "fieldConfig": {
            "defaults": {"custom": {"hideFrom": {"legend": False, "tooltip": False, "viz": False}}},
            "overrides": [],
        },
        "options": {
            "calculate": False,
            "cellGap": 1,
            "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64},
            "legend": {"show": True},
            "tooltip": {"show": True, "yHistogram": False},
            "yAxis": {"axisPlacement": "left", "unit": unit},
        },
        "targets": tgts,
    }


def barchart(
    title: str,
    description: str,
    tgts: list[dict[str, Any]],
    unit: str,
    transformations: list[dict[str, Any]],
    *,
    overrides: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Bars from an instant table query reshaped by ``transformations``, stacked left to right."""
    fc = _field_config(unit, None, {"fillOpacity": 80, "gradientMode": "none", "lineWidth": 1})
    fc["overrides"] = overrides or []
    return {
        "type": "barchart",
        "title": title,
        "description": description,
        "datasource": DS,
        "fieldConfig": fc,
        "options": {
            "barWidth": 0.8,
            "groupWidth": 0.7,
            "legend": {"calcs": [], "displayMode": "list", "placement": "bottom", "showLegend": True},
            "orientation": "horizontal",
            "showValue": "never",
            "stacking": "normal",
            "tooltip": {"mode": "multi", "sort": "none"},
            "xTickLabelRotation": 0,
        },
        "targets": tgts,
        "transformations": transformations,
    }


def table(
    title: str,
    description: str,
    tgts: list[dict[str, Any]],
    unit: str,
    transformations: list[dict[str, Any]],
    *,
    sort_by: str,
    overrides: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    fc = _field_config(unit, None)
    fc["overrides"] = overrides or []
    return {
        "type": "table",
        "title": title,
        "description": description,
        "datasource": DS,
        "fieldConfig": fc,
        "options": {
            "cellHeight": "sm",
            "footer": {"show": False, "reducer": ["sum"], "fields": ""},
            "showHeader": True,
            "sortBy": [{"desc": True, "displayName": sort_by}],
        },
        "targets": tgts,
        "transformations": transformations,
    }


def layout(rows: list[list[tuple[dict[str, Any], int, int]]]) -> list[dict[str, Any]]:
    """Place rows of (panel, width, height) left to right, top to bottom; number the panels."""
    panels = []
    y = 0
    pid = 1
    for row in rows:
        x = 0
        height = 0
        for panel, w, h in row:
            if x + w > 24:
                raise ValueError(f"row too wide at {panel['title']!r}")
            panel = {"id": pid, "gridPos": {"h": h, "w": w, "x": x, "y": y}, **panel}
            panels.append(panel)
            pid += 1
            x += w
            height = max(height, h)
        y += height
    return panels


def query_var(name: str, label: str, query: str, description: str, *, multi: bool = True) -> dict[str, Any]:
    var: dict[str, Any] = {
        "current": {},
        "datasource": DS,
        "definition": query,
        "description": description,
        "hide": 0,
        "includeAll": multi,
        "label": label,
        "multi": multi,
        "name": name,
        "options": [],
        "query": {"qryType": 1, "query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "refresh": 2,
        "regex": "",
        "skipUrlSync": False,
        "sort": 1,
        "type": "query",
    }
    if multi:
        var["allValue"] = ".*"
        var["current"] = {"selected": True, "text": ["All"], "value": ["$__all"]}
    return var


def template_vars(
    *, service: bool = False, window: bool = False, production_only: bool = False
) -> list[dict[str, Any]]:
    """The dashboards' variables; ``production_only`` lists production environments only (DORA)."""
    prod = ',production="true"' if production_only else ""
    out: list[dict[str, Any]] = [
        {
            "current": {},
            "description": "Prometheus data source that scrapes cycletime-collector",
            "hide": 0,
            "includeAll": False,
            "label": "Data source",
            "multi": False,
            "name": "datasource",
            "options": [],
            "query": "prometheus",
            "refresh": 1,
            "regex": "",
            "skipUrlSync": False,
            "type": "datasource",
        },
        query_var(
            "source",
            "Source",
            "label_values(cycletime_source_up, source)",
            "Configured source (the `name` in the collector config)",
        ),
        query_var(
            "project",
            "Project",
            'label_values(cycletime_work_item_lead_time_seconds_count{source=~"$source"}, project)',
            "Azure DevOps project or GitHub owner/repo",
        ),
        query_var(
            "team",
            "Team",
            'label_values(cycletime_work_item_lead_time_seconds_count{source=~"$source",project=~"$project"}, team)',
            "Team, from the area path, iteration path, a field or a label",
        ),
        query_var(
            "type",
            "Type",
            'label_values(cycletime_work_item_lead_time_seconds_count{source=~"$source",'
            'project=~"$project",team=~"$team"}, type)',
            "Work item type (User Story, Bug, Issue, ...)",
        ),
        query_var(
            "environment",
            "Environment",
            f'label_values(cycletime_deployments_total{{source=~"$source"{prod}}}, environment)',
            "Production environment (the collector's production_environments)"
            if production_only
            else "Deployment environment",
        ),
    ]
    if service:
        out.append(
            query_var(
                "service",
                "Service",
                'label_values(cycletime_deployments_total{source=~"$source",'
                f'environment=~"$environment"{prod}}}, service)',
                "Pipeline or repository that deploys",
            )
        )
    if window:
        out.append(
            query_var(
                "window",
                "Window",
                "label_values(cycletime_work_item_lead_time_window_count, window)",
                "Rolling window of the exact quantile gauges (collector `windows`)",
                multi=False,
            )
        )
    return out


def dashboard(
    uid: str,
    title: str,
    description: str,
    tags: list[str],
    panels: list[dict[str, Any]],
    variables: list[dict[str, Any]],
    time_from: str = "now-90d",
) -> dict[str, Any]:
    return {
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "description": description,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "links": [
            {
                "asDropdown": True,
                "includeVars": True,
                "keepTime": True,
                "tags": ["cycletime"],
                "title": "cycletime dashboards",
                "type": "dashboards",
            }
        ],
        "panels": panels,
        "refresh": "5m",
        "schemaVersion": SCHEMA_VERSION,
        "tags": ["cycletime", *tags],
        "templating": {"list": variables},
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "timezone": "utc",
        "title": title,
        "uid": uid,
        "version": 1,
        "weekStart": "",
    }


def _quantile_targets(metric: str, flt: str, legend_labels: str) -> list[dict[str, Any]]:
    return targets(
        *[
            (f'{metric}{{{flt},window="$window",quantile="{q}"}}', f"p{label} {legend_labels}")
            for q, label in (("0.5", "50"), ("0.85", "85"), ("0.95", "95"))
        ]
    )


QUANTILE_NOTE = (
    " Quantiles are exact over the items whose end event lies in the rolling window (selector "
    "`window`), with linear interpolation between closest ranks; one series per label set, they "
    "cannot be averaged across teams."
)


def request_to_release() -> dict[str, Any]:
    m = "cycletime_request_to_release_window_seconds"
    definition = (
        "Request-to-release time = finish of the first successful production deployment containing a "
        "change linked to the work item - the work item's creation time."
    )
    panels = layout(
        [
            [
                (
                    stat(
                        "p85 request to release (worst matching series)",
                        definition + " Largest p85 among the series that match the filters; narrow the filters "
                        "to one team and type for its figure." + QUANTILE_NOTE,
                        [target(f'max({m}{{{R2R_FILTER},window="$window",quantile="0.85"}})', "p85")],
                        "dtdurations",
                    ),
                    6,
                    6,
                ),
                (
                    stat(
                        "p85 now vs 90 days ago",
                        "Largest matching p85 request-to-release time now, 90 days ago, and the relative "
                        "change (positive = slower). " + definition,
                        [
                            target(f'max({m}{{{R2R_FILTER},window="$window",quantile="0.85"}})', "now", "A"),
                            target(
                                f'max({m}{{{R2R_FILTER},window="$window",quantile="0.85"}} offset 90d)',
                                "90 days ago",
                                "B",
                            ),
                        ],
                        "dtdurations",
                        graph=False,
                    ),
                    6,
                    6,
                ),
                (
                    stat(
                        "p85 change vs 90 days ago",
                        "Relative change of the largest matching p85 request-to-release time against 90 days "
                        "ago: p85(now) / p85(90 days ago) - 1. Red when it got more than 10% slower.",
                        [
                            target(
                                f'max({m}{{{R2R_FILTER},window="$window",quantile="0.85"}})\n/\n'
                                f'max({m}{{{R2R_FILTER},window="$window",quantile="0.85"}} offset 90d)\n- 1',
                                "change",
                            )
                        ],
                        "percentunit",
                        _steps(("green", None), ("yellow", 0), ("red", 0.1)),
                        graph=False,
                    ),
                    6,
                    6,
                ),
                (
                    stat(
                        "Items released in the window",
                        "Number of released work items the quantiles are computed over "
                        "(`cycletime_request_to_release_window_count`). A work item is released once, by the "
                        "first successful production deployment that contains a linked change.",
                        [
                            target(
                                f'sum(cycletime_request_to_release_window_count{{{R2R_FILTER},window="$window"}})',
                                "items",
                            )
                        ],
                        "short",
                    ),
                    6,
                    6,
                ),
            ],
            [
                (
                    timeseries(
                        "Request to release p50 / p85 / p95",
                        definition + QUANTILE_NOTE,
                        _quantile_targets(m, R2R_FILTER, "{{team}} {{type}} {{environment}}"),
                        "s",
                    ),
                    24,
                    10,
                ),
            ],
            [
                (
                    bargauge(
                        "Distribution (every released item in the collector's history)",
                        "How many of the work items released within the collector's `history` fell into each "
                        "request-to-release bucket (histogram `cycletime_request_to_release_seconds`, "
                        "buckets 1h to 365d; the upper bound is shown). Derived from the store, so it is "
                        "complete from the first scrape. " + definition,
                        [
                            target(
                                f"sum by (le) (cycletime_request_to_release_seconds_bucket{{{R2R_FILTER}}})",
                                "{{le}}",
                                instant=True,
                                fmt="heatmap",
                            )
                        ],
                        "short",
                    ),
                    10,
                    10,
                ),
                (
                    heatmap(
                        "Distribution over time",
                        "Work items released per interval, by request-to-release bucket (seconds, upper "
                        "bound). " + definition,
                        [
                            target(
                                f"sum by (le) (increase(cycletime_request_to_release_seconds_bucket"
                                f"{{{R2R_FILTER}}}[$__rate_interval]))",
                                "{{le}}",
                                fmt="heatmap",
                                interval="1d",
                            )
                        ],
                        "s",
                    ),
                    14,
                    10,
                ),
            ],
            [
                (
                    timeseries(
                        "Items released per week",
                        "Work items released in the 7 days up to each point, per team "
                        '(`cycletime_request_to_release_window_count{window="7d"}`: computed by the '
                        "collector, so the latest point is right from the first scrape and backfilled "
                        "history fills the rest; needs the window 7d in the collector's `windows`).",
                        [
                            target(
                                f"sum by (team) (cycletime_request_to_release_window_count"
                                f'{{{R2R_FILTER},window="7d"}})',
                                "{{team}}",
                                interval="1d",
                            )
                        ],
                        "short",
                        bars=True,
                        stack=True,
                    ),
                    24,
                    8,
                ),
            ],
        ]
    )
    return dashboard(
        "cycletime-request-to-release",
        "Request to release",
        "From a work item's creation to the first production deployment of a linked change.",
        ["request-to-release"],
        panels,
        template_vars(window=True),
    )


def _flow_efficiency(window: str) -> str:
    """Flow efficiency over the matching series: each series' window ratio weighted by its items."""
    selector = f'{{{WI_FILTER},window="{window}"}}'
    return (
        f"sum(cycletime_work_item_flow_efficiency_window_ratio{selector}\n"
        f"    * cycletime_work_item_lead_time_window_count{selector})\n/\n"
        f"sum(cycletime_work_item_lead_time_window_count{selector}\n"
        f"    and cycletime_work_item_flow_efficiency_window_ratio{selector})"
    )


def flow() -> dict[str, Any]:
    lead = "cycletime_work_item_lead_time_window_seconds"
    cycle = "cycletime_work_item_cycle_time_window_seconds"
    lead_def = "Lead time = completion time - creation time of a work item (Azure DevOps Analytics' Lead Time)."
    cycle_def = (
        "Cycle time = completion time - first time the item entered In Progress or Resolved; items that "
        "went straight to Completed have none (Azure DevOps Analytics' Cycle Time)."
    )
    panels = layout(
        [
            [
                (
                    stat(
                        "p85 lead time (worst matching series)",
                        lead_def + " Largest p85 among the matching series." + QUANTILE_NOTE,
                        [target(f'max({lead}{{{WI_FILTER},window="$window",quantile="0.85"}})', "p85")],
                        "dtdurations",
                    ),
                    6,
                    5,
                ),
                (
                    stat(
                        "p85 cycle time (worst matching series)",
                        cycle_def + " Largest p85 among the matching series." + QUANTILE_NOTE,
                        [target(f'max({cycle}{{{WI_FILTER},window="$window",quantile="0.85"}})', "p85")],
                        "dtdurations",
                    ),
                    6,
                    5,
                ),
                (
                    stat(
                        "Flow efficiency (window)",
                        "Flow efficiency = time in the In Progress category / lead time, over the items "
                        "completed in the window (`cycletime_work_item_flow_efficiency_window_ratio`); across "
                        "several teams or types, their ratios averaged with their completed items as weights "
                        "(`cycletime_work_item_lead_time_window_count`).",
                        [target(_flow_efficiency("$window"), "flow efficiency")],
                        "percentunit",
                        _steps(("red", None), ("yellow", 0.15), ("green", 0.4)),
                        graph=False,
                        min=0,
                        max=1,
                    ),
                    6,
                    5,
                ),
                (
                    stat(
                        "Work in progress",
                        "Items now in a non-terminal category other than Proposed (In Progress and Resolved).",
                        [
                            target(
                                f'sum(cycletime_work_items_in_progress{{{WI_FILTER},category=~"InProgress|Resolved"}})',
                                "WIP",
                            )
                        ],
                        "short",
                    ),
                    6,
                    5,
                ),
            ],
            [
                (
                    timeseries(
                        "Lead time p50 / p85 / p95",
                        lead_def + QUANTILE_NOTE,
                        _quantile_targets(lead, WI_FILTER, "{{team}} {{type}}"),
                        "s",
                    ),
                    12,
                    9,
                ),
                (
                    timeseries(
                        "Cycle time p50 / p85 / p95",
                        cycle_def + QUANTILE_NOTE,
                        _quantile_targets(cycle, WI_FILTER, "{{team}} {{type}}"),
                        "s",
                    ),
                    12,
                    9,
                ),
            ],
            [
                (
                    bargauge(
                        "Average time in state per completed item",
                        "Time in state = total time the items completed within the collector's `history` "
                        "spent in each state, divided by the number of those items "
                        "(`cycletime_work_item_state_seconds_total` / `cycletime_work_item_lead_time_seconds_count`; "
                        "derived from the store, so complete from the first scrape).",
                        [
                            target(
                                f"sum by (state) (cycletime_work_item_state_seconds_total{{{WI_FILTER}}})\n"
                                "/ on () group_left\n"
                                f"sum(cycletime_work_item_lead_time_seconds_count{{{WI_FILTER}}})",
                                "{{state}}",
                                instant=True,
                            )
                        ],
                        "dtdurations",
                    ),
                    12,
                    9,
                ),
                (
                    timeseries(
                        "Flow efficiency over time",
                        "Flow efficiency = time in the In Progress category / lead time, over the items "
                        "completed in the rolling window before each point "
                        "(`cycletime_work_item_flow_efficiency_window_ratio`, weighted by completed items "
                        "across series).",
                        [target(_flow_efficiency("$window"), "flow efficiency", interval="1d")],
                        "percentunit",
                        min=0,
                        max=1,
                    ),
                    12,
                    9,
                ),
            ],
            [
                (
                    timeseries(
                        "WIP by category",
                        "Work items now in each non-terminal category (Proposed, In Progress, Resolved): "
                        "`cycletime_work_items_in_progress`.",
                        [
                            target(
                                f"sum by (category) (cycletime_work_items_in_progress{{{WI_FILTER}}})", "{{category}}"
                            )
                        ],
                        "short",
                        stack=True,
                    ),
                    12,
                    9,
                ),
                (
                    timeseries(
                        "Throughput per week",
                        "Work items completed in the 7 days up to each point, per type "
                        '(`cycletime_work_item_lead_time_window_count{window="7d"}`; needs the window 7d '
                        "in the collector's `windows`). Removed items are excluded; reopened items count "
                        "once, at their final completion.",
                        [
                            target(
                                f"sum by (type) (cycletime_work_item_lead_time_window_count"
                                f'{{{WI_FILTER},window="7d"}})',
                                "{{type}}",
                                interval="1d",
                            )
                        ],
                        "short",
                        bars=True,
                        stack=True,
                    ),
                    12,
                    9,
                ),
            ],
        ]
    )
    return dashboard(
        "cycletime-flow",
        "Flow: lead time, cycle time, WIP, throughput",
        "Work item flow metrics from Azure Boards and GitHub issues.",
        ["flow"],
        panels,
        template_vars(window=True),
    )


def dora() -> dict[str, Any]:
    win = "cycletime_deployments_window_count"
    clt = "cycletime_change_lead_time_window_seconds"
    rec = "cycletime_failed_deployment_recovery_window_seconds"
    prod = f'{DEP_FILTER},production="true"'
    bands = " Thresholds are the DORA performance bands (State of DevOps 2023): "
    df_def = (
        "Deployment frequency = successful production deployments per day "
        '(`cycletime_deployments_window_count{production="true",status="success"}`: computed by '
        "the collector over its windows, right from the first scrape)."
    )
    clt_def = (
        "Change lead time = finish of the first successful production deployment containing the "
        "change - time of the change's first commit."
    )
    cfr_def = (
        "Change failure rate = failed production deployments / all production deployments "
        '(`cycletime_deployments_window_count{production="true"}`).'
    )
    rec_def = (
        "Failed deployment recovery time = next successful deployment - failed deployment, same "
        "service and production environment."
    )
    prod_note = (
        ' Production is the `production="true"` label, set by each source\'s '
        "`production_environments` in the collector config."
    )
    df_bands = bands + "elite >= 1/day, high >= 1/week, medium >= 1/month, low below."
    clt_bands = bands + "elite < 1 day, high < 1 week, medium < 1 month, low above."
    cfr_bands = bands + "elite <= 5%, high <= 10%, medium <= 15%, low above."
    rec_bands = bands + "elite < 1 hour, high < 1 day, medium < 1 week, low above."

    def cfr(window: str, by: str = "") -> str:
        grouping = f" by ({by})" if by else ""
        return (
            f'(sum{grouping} ({win}{{{prod},status="failure",window="{window}"}})\n'
            f' or 0 * sum{grouping} ({win}{{{prod},window="{window}"}}))\n/\n'
            f'sum{grouping} ({win}{{{prod},status=~"success|failure",window="{window}"}})'
        )

    panels = layout(
        [
            [
                (
                    stat(
                        "Deployment frequency (per day, 30d)",
                        df_def + " Averaged over the last 30 days (needs the window 30d in the collector's "
                        "`windows`)." + prod_note + df_bands,
                        [target(f'sum({win}{{{prod},status="success",window="30d"}}) / 30', "per day")],
                        "short",
                        BANDS_DEPLOY_FREQ,
                        decimals=2,
                    ),
                    6,
                    6,
                ),
                (
                    stat(
                        "Change lead time p50 (worst matching series)",
                        clt_def
                        + " Largest p50 among the matching service/environment series."
                        + QUANTILE_NOTE
                        + clt_bands,
                        [target(f'max({clt}{{{DEP_FILTER},window="$window",quantile="0.5"}})', "p50")],
                        "dtdurations",
                        BANDS_DURATION_LEAD,
                    ),
                    6,
                    6,
                ),
                (
                    stat(
                        "Change failure rate (30d)",
                        cfr_def + " Over the last 30 days." + prod_note + cfr_bands,
                        [target(cfr("30d"), "CFR")],
                        "percentunit",
                        BANDS_CFR,
                    ),
                    6,
                    6,
                ),
                (
                    stat(
                        "Failed deployment recovery time p50 (worst matching series)",
                        rec_def + " Largest p50 among the matching production series, over the failures "
                        "recovered in the window." + QUANTILE_NOTE + rec_bands,
                        [target(f'max({rec}{{{prod},window="$window",quantile="0.5"}})', "p50")],
                        "dtdurations",
                        BANDS_RECOVERY,
                    ),
                    6,
                    6,
                ),
            ],
            [
                (
                    timeseries(
                        "Deployment frequency per service / environment (per day, 7d)",
                        df_def + " Averaged over the 7 days before each point." + prod_note + df_bands,
                        [
                            target(
                                f'sum by (service, environment) ({win}{{{prod},status="success",window="7d"}}) / 7',
                                "{{service}} {{environment}}",
                                interval="1h",
                            )
                        ],
                        "short",
                        thresholds=BANDS_DEPLOY_FREQ,
                    ),
                    12,
                    9,
                ),
                (
                    timeseries(
                        "Change lead time p50 / p85 per service / environment",
                        clt_def + QUANTILE_NOTE + clt_bands,
                        targets(
                            (
                                f'{clt}{{{DEP_FILTER},window="$window",quantile="0.5"}}',
                                "p50 {{service}} {{environment}}",
                            ),
                            (
                                f'{clt}{{{DEP_FILTER},window="$window",quantile="0.85"}}',
                                "p85 {{service}} {{environment}}",
                            ),
                        ),
                        "s",
                        thresholds=BANDS_DURATION_LEAD,
                    ),
                    12,
                    9,
                ),
            ],
            [
                (
                    timeseries(
                        "Change failure rate per service / environment (7d)",
                        cfr_def + " Over the 7 days before each point (recording rule "
                        "`source_service_environment:cycletime_change_failure_rate:ratio_7d`)." + prod_note + cfr_bands,
                        [
                            target(
                                f"source_service_environment:cycletime_change_failure_rate:ratio_7d{{{DEP_FILTER}}}",
                                "{{service}} {{environment}}",
                            )
                        ],
                        "percentunit",
                        thresholds=BANDS_CFR,
                        min=0,
                        max=1,
                    ),
                    12,
                    9,
                ),
                (
                    timeseries(
                        "Failed deployment recovery time p50 / p85 per service / environment",
                        rec_def + QUANTILE_NOTE + rec_bands,
                        targets(
                            (f'{rec}{{{prod},window="$window",quantile="0.5"}}', "p50 {{service}} {{environment}}"),
                            (f'{rec}{{{prod},window="$window",quantile="0.85"}}', "p85 {{service}} {{environment}}"),
                        ),
                        "s",
                        thresholds=BANDS_RECOVERY,
                    ),
                    12,
                    9,
                ),
            ],
            [
                (
                    bargauge(
                        "Production deployments in the window by status",
                        "Production deployments finished in the window per service, environment and status "
                        "(success / failure), from `cycletime_deployments_window_count`." + prod_note,
                        [
                            target(
                                f'sum by (service, environment, status) ({win}{{{prod},window="$window"}})',
                                "{{service}} {{environment}} {{status}}",
                                instant=True,
                            )
                        ],
                        "short",
                    ),
                    12,
                    8,
                ),
                (
                    bargauge(
                        "Change lead time distribution (every deployed change in the collector's history)",
                        "Changes deployed to production within the collector's `history` per change-lead-time "
                        "bucket (histogram `cycletime_change_lead_time_seconds`, upper bound shown; derived "
                        "from the store, so complete from the first scrape). " + clt_def,
                        [
                            target(
                                f"sum by (le) (cycletime_change_lead_time_seconds_bucket{{{DEP_FILTER}}})",
                                "{{le}}",
                                instant=True,
                                fmt="heatmap",
                            )
                        ],
                        "short",
                    ),
                    12,
                    8,
                ),
            ],
        ]
    )
    return dashboard(
        "cycletime-dora",
        "DORA metrics",
        "Deployment frequency, change lead time, change failure rate and failed deployment "
        "recovery time of production deployments per service and environment.",
        ["dora"],
        panels,
        template_vars(service=True, window=True, production_only=True),
    )


def collector_health() -> dict[str, Any]:
    panels = layout(
        [
            [
                (
                    stat(
                        "Source up",
                        "1 when the last poll of the source succeeded (`cycletime_source_up`).",
                        [target(f"cycletime_source_up{{{SRC_FILTER}}}", "{{source}}")],
                        "none",
                        _steps(("red", None), ("green", 1)),
                        graph=False,
                        mappings=[
                            {
                                "options": {
                                    "0": {"color": "red", "index": 0, "text": "DOWN"},
                                    "1": {"color": "green", "index": 1, "text": "UP"},
                                },
                                "type": "value",
                            }
                        ],
                    ),
                    8,
                    6,
                ),
                (
                    stat(
                        "Last successful poll",
                        "Time since the end of the last successful poll of each source "
                        "(`time() - cycletime_source_last_success_timestamp_seconds`). The stale-data alert fires "
                        "after about three poll intervals.",
                        [
                            target(
                                f"time() - cycletime_source_last_success_timestamp_seconds{{{SRC_FILTER}}}",
                                "{{source}}",
                            )
                        ],
                        "dtdurations",
                        _steps(("green", None), ("yellow", 900), ("red", 1200)),
                        graph=False,
                    ),
                    8,
                    6,
                ),
                (
                    stat(
                        "API rate-limit budget",
                        "Last rate-limit budget reported by each source's API "
                        "(`cycletime_api_rate_limit_remaining`): requests left in the current window.",
                        [target(f"cycletime_api_rate_limit_remaining{{{SRC_FILTER}}}", "{{source}}")],
                        "short",
                        _steps(("red", None), ("yellow", 100), ("green", 500)),
                    ),
                    8,
                    6,
                ),
            ],
            [
                (
                    timeseries(
                        "Poll duration p50 / p95",
                        "Duration of the polls of each source, from the histogram "
                        "`cycletime_source_poll_duration_seconds` (quantiles estimated from the buckets).",
                        targets(
                            (
                                "histogram_quantile(0.5, sum by (source, le) (rate("
                                f"cycletime_source_poll_duration_seconds_bucket{{{SRC_FILTER}}}[1h])))",
                                "p50 {{source}}",
                            ),
                            (
                                "histogram_quantile(0.95, sum by (source, le) (rate("
                                f"cycletime_source_poll_duration_seconds_bucket{{{SRC_FILTER}}}[1h])))",
                                "p95 {{source}}",
                            ),
                        ),
                        "s",
                    ),
                    12,
                    8,
                ),
                (
                    timeseries(
                        "API requests by status code",
                        "HTTP requests sent to each source's API per second, by response status code "
                        "(`cycletime_api_requests_total`).",
                        [
                            target(
                                f"sum by (source, code) (rate(cycletime_api_requests_total{{{SRC_FILTER}}}"
                                "[$__rate_interval]))",
                                "{{source}} {{code}}",
                            )
                        ],
                        "reqps",
                        stack=True,
                    ),
                    12,
                    8,
                ),
            ],
            [
                (
                    timeseries(
                        "API rate-limit budget",
                        "Rate-limit budget reported by each source's API over time "
                        "(`cycletime_api_rate_limit_remaining`).",
                        [target(f"cycletime_api_rate_limit_remaining{{{SRC_FILTER}}}", "{{source}}")],
                        "short",
                    ),
                    12,
                    8,
                ),
                (
                    timeseries(
                        "Rejected records",
                        "Input records skipped as invalid per interval, by source and reason "
                        "(`cycletime_records_rejected_total`); they are missing from every figure.",
                        [
                            target(
                                f"sum by (source, reason) (increase(cycletime_records_rejected_total"
                                f"{{{SRC_FILTER}}}[$__rate_interval]))",
                                "{{source}} {{reason}}",
                            )
                        ],
                        "short",
                        bars=True,
                        stack=True,
                    ),
                    12,
                    8,
                ),
            ],
            [
                (
                    timeseries(
                        "Rate budget per API",
                        "Budget left in the current rate-limit window per API, as each pass saw it "
                        "(`cycletime_api_budget_remaining`). A GitHub source never spends below its "
                        "`rate_limit_reserve`: a line resting there is a pass waiting for the reset.",
                        [target(f"cycletime_api_budget_remaining{{{SRC_FILTER}}}", "{{source}} {{api}}")],
                        "short",
                    ),
                    12,
                    8,
                ),
                (
                    timeseries(
                        "Sync backlog",
                        "Work each source's last pass left for later because the rate budget reached its "
                        "reserve (`cycletime_sync_backlog`; GitHub: repository streams). A first sync larger "
                        "than one window steps down to 0 over several passes.",
                        [target(f"cycletime_sync_backlog{{{SRC_FILTER}}}", "{{source}}")],
                        "short",
                    ),
                    12,
                    8,
                ),
            ],
        ]
    )
    return dashboard(
        "cycletime-collector-health",
        "cycletime-collector health",
        "Is the collector polling its sources, how fast, and within the APIs' budgets?",
        ["health"],
        panels,
        template_vars(),
        time_from="now-24h",
    )


REQUEST_STAGES = ("backlog", "development", "review", "release")
CHANGE_STAGES = ("coding", "pickup", "review", "deploy")
#: one colour per stage name, the same in every panel (review is the same stage idea in both)
STAGE_COLORS = {
    "backlog": "purple",
    "development": "blue",
    "coding": "blue",
    "pickup": "yellow",
    "review": "orange",
    "release": "green",
    "deploy": "green",
}
CHANGE_STAGE_FILTER = 'source=~"$source",service=~"$service"'
BANDS_GROWTH = _steps(("green", None), ("yellow", 0.1), ("red", 0.25))


def _stage_colors(stages: tuple[str, ...]) -> list[dict[str, Any]]:
    return [
        {
            "matcher": {"id": "byName", "options": stage},
            "properties": [{"id": "color", "value": {"fixedColor": STAGE_COLORS[stage], "mode": "fixed"}}],
        }
        for stage in stages
    ]


def _stage_growth(metric: str, flt: str, by: str) -> str:
    """p85 over 30d / p85 over 90d - 1 per ``by`` group (largest matching series on each side)."""
    return (
        f'max by ({by}) ({metric}{{{flt},window="30d",quantile="0.85"}})\n/\n'
        f'(max by ({by}) ({metric}{{{flt},window="90d",quantile="0.85"}}) > 0)\n- 1'
    )


def _stages_per(
    title: str, description: str, metric: str, flt: str, row: str, quantile: str, stages: tuple[str, ...]
) -> dict[str, Any]:
    """A horizontal bar per ``row`` label value, stacked by stage: each stage's quantile in the window."""
    return barchart(
        title,
        description,
        [
            target(
                f'max by ({row}, stage) ({metric}{{{flt},window="$window",quantile="{quantile}"}})',
                f"{{{{{row}}}}} {{{{stage}}}}",
                instant=True,
                fmt="table",
            )
        ],
        "s",
        [
            {
                "id": "groupingToMatrix",
                "options": {"columnField": "stage", "rowField": row, "valueField": "Value", "emptyValue": "null"},
            },
            {
                "id": "organize",
                "options": {
                    "excludeByName": {},
                    "indexByName": {f"{row}\\stage": 0, **{stage: i + 1 for i, stage in enumerate(stages)}},
                    "renameByName": {f"{row}\\stage": row},
                },
            },
        ],
        overrides=_stage_colors(stages),
    )


def _growth_table(title: str, description: str, metric: str, flt: str, by: str, sort_by: str) -> dict[str, Any]:
    count = metric.replace("_window_seconds", "_window_count")
    columns = {"Value #A": "p85 30d", "Value #B": "p85 90d", "Value #C": "items 30d", "Value #D": sort_by}
    return table(
        title,
        description,
        [
            target(
                f'max by ({by}) ({metric}{{{flt},window="30d",quantile="0.85"}})', ref="A", instant=True, fmt="table"
            ),
            target(
                f'max by ({by}) ({metric}{{{flt},window="90d",quantile="0.85"}})', ref="B", instant=True, fmt="table"
            ),
            target(f'max by ({by}) ({count}{{{flt},window="30d"}})', ref="C", instant=True, fmt="table"),
            target(_stage_growth(metric, flt, by), ref="D", instant=True, fmt="table"),
        ],
        "dtdurations",
        [
            {"id": "merge", "options": {}},
            {
                "id": "organize",
                "options": {
                    "excludeByName": {"Time": True},
                    "indexByName": {
                        **{label.strip(): i for i, label in enumerate(by.split(","))},
                        **{name: len(by.split(",")) + i for i, name in enumerate(columns.values())},
                    },
                    "renameByName": columns,
                },
            },
        ],
        sort_by=sort_by,
        overrides=[
            {
                "matcher": {"id": "byName", "options": sort_by},
                "properties": [
                    {"id": "unit", "value": "percentunit"},
                    {"id": "thresholds", "value": BANDS_GROWTH},
                    {"id": "custom.cellOptions", "value": {"type": "color-background"}},
                ],
            },
            {"matcher": {"id": "byName", "options": "items 30d"}, "properties": [{"id": "unit", "value": "short"}]},
        ],
    )


class _StagePath(NamedTuple):
    """One of the two paths split into stages, and the words its panels use."""

    name: str  # "request" / "change": the panel titles' first word
    metric: str  # the window-seconds gauge
    flt: str  # its template-variable filter
    row: str  # the label of one bar: team / service
    by: str  # the labels of one row in the growth table
    stages: tuple[str, ...]
    whole: str  # the panel title of the whole path
    items: str  # "work items released" / "changes deployed"
    definition: str
    series: str  # the labels of one series, as the regression alert groups them
    series_legend: str  # which series, in a legend
    min_items: int  # the alert's minimum count over 30 days: fewer make a noisy p85


_REQUEST_PATH = _StagePath(
    "request",
    "cycletime_request_stage_window_seconds",
    WI_FILTER,
    "team",
    "project, team, type, stage",
    REQUEST_STAGES,
    "Request to release",
    "work items released",
    "Request-to-release split into stages (`cycletime_request_stage_seconds`, one observation per stage "
    "per released work item): backlog (created -> first In Progress or Resolved), development (-> first "
    "linked pull request ready for review), review (-> last linked change merged or pushed), release "
    "(-> the first successful production deployment containing it). Boundaries are clamped to be "
    "non-decreasing, so an item's stages add up to its request-to-release time.",
    WI_STAGE,
    "{{stage}}: {{team}} {{type}}",
    THRESHOLDS["requestStageRegressionMinItems"],
)
_CHANGE_PATH = _StagePath(
    "change",
    "cycletime_change_stage_window_seconds",
    CHANGE_STAGE_FILTER,
    "service",
    "service, stage",
    CHANGE_STAGES,
    "Change lead time",
    "changes deployed",
    "Change lead time split into stages (`cycletime_change_stage_seconds`, one observation per stage per "
    "deployed change): coding (first commit -> ready for review), pickup (-> first review by someone "
    "other than the author, or the merge), review (-> merged), deploy (-> the first successful "
    "production deployment containing it). A direct commit has only deploy.",
    CHANGE_STAGE,
    "{{stage}}: {{service}}",
    THRESHOLDS["changeStageRegressionMinChanges"],
)
_STACK_NOTE = (
    " Each segment is that stage's own quantile over the items whose end event lies in the window "
    "(largest matching series per bar and stage); quantiles do not add up, so a bar's length is not "
    "the quantile of the whole path."
)
_GROWTH_NOTE = (
    " Growth = p85 over the last 30 days / p85 over the last 90 days (which include them) - 1, from the "
    "window gauges (needs windows 30d and 90d in the collector config, the defaults), so it is right "
    "from the first scrape. The stage regression alerts watch the same ratio per series."
)


def _series_growth(path: _StagePath) -> str:
    """Each matching series' growth (as the regression alert groups them), if its 30 days hold enough items."""
    count = path.metric.replace("_window_seconds", "_window_count")
    return (
        f"(\n{_stage_growth(path.metric, path.flt, path.series)}\n)\nand\n"
        f'max by ({path.series}) ({count}{{{path.flt},window="30d"}}) >= {path.min_items}'
    )


def _series_note(path: _StagePath) -> str:
    return (
        f" Over the matching series ({path.series.removesuffix(', stage')}) with at least {path.min_items} "
        "items in the last 30 days, as the stage regression alert: fewer make a noisy p85. The table below "
        "lists every series with its count."
    )


def _stage_stats(path: _StagePath, whole_expr: str, whole_def: str) -> list[tuple[dict[str, Any], int, int]]:
    """The path's largest stage, the stage that grew most, and the whole path's p85 beside them."""
    p85 = f'{path.metric}{{{path.flt},window="$window",quantile="0.85"}}'
    Name = path.name.capitalize()
    return [
        (
            stat(
                f"Largest {path.name} stage (p85)",
                f"The stage where the {path.items} in the window spend the most time: the largest p85 of "
                "a stage among the matching series. " + path.definition + QUANTILE_NOTE,
                [target(f"topk(1, max by (stage) ({p85}))", "{{stage}}")],
                "dtdurations",
                graph=False,
                text_mode="value_and_name",
            ),
            4,
            5,
        ),
        (
            stat(
                f"{Name} stage that grew most",
                f"The {path.name} stage that grew most, and whose: the largest growth of a stage's p85 "
                "over 30 days against over 90 days. Red above 25%."
                + _GROWTH_NOTE
                + _series_note(path)
                + " "
                + path.definition,
                [target(f"topk(1,\n{_series_growth(path)}\n)", path.series_legend)],
                "percentunit",
                BANDS_GROWTH,
                graph=False,
                text_mode="value_and_name",
            ),
            4,
            5,
        ),
        (
            stat(
                f"p85 {path.whole.lower()} (whole path)",
                "For comparison with the stages: " + whole_def,
                [target(whole_expr, "p85")],
                "dtdurations",
                graph=False,
            ),
            4,
            5,
        ),
    ]


def _stage_rows(path: _StagePath) -> list[list[tuple[dict[str, Any], int, int]]]:
    """Stacked stages per team / service (p50, p85), the p85 stack over time, and the growth ranking."""
    over_time = timeseries(
        f"{path.name.capitalize()} stages p85 over time",
        f"The p85 of each {path.name} stage over the rolling window before each point (largest matching "
        "series per stage), stacked. " + path.definition + _STACK_NOTE,
        [target(f'max by (stage) ({path.metric}{{{path.flt},window="$window",quantile="0.85"}})', "{{stage}}")],
        "s",
        stack=True,
    )
    over_time["fieldConfig"]["overrides"] = _stage_colors(path.stages)
    return [
        [
            (
                _stages_per(
                    f"{path.whole} by stage per {path.row}: {label}",
                    f"{wording} time per stage of the {path.items} in the window, one bar per {path.row}. "
                    + path.definition
                    + _STACK_NOTE,
                    path.metric,
                    path.flt,
                    path.row,
                    quantile,
                    path.stages,
                ),
                12,
                10,
            )
            for quantile, label, wording in (("0.5", "p50", "Median"), ("0.85", "p85", "85th percentile"))
        ],
        [
            (over_time, 12, 9),
            (
                bargauge(
                    f"{path.name.capitalize()} stage growth: p85 last 30 days vs 90 days",
                    f"Every {path.name} stage's largest growth among the matching series, largest first."
                    + _GROWTH_NOTE
                    + _series_note(path)
                    + " "
                    + path.definition,
                    [target(f"sort_desc(max by (stage) (\n{_series_growth(path)}\n))", "{{stage}}", instant=True)],
                    "percentunit",
                    BANDS_GROWTH,
                ),
                12,
                9,
            ),
        ],
    ]


def _stage_table(path: _StagePath) -> tuple[dict[str, Any], int, int]:
    return (
        _growth_table(
            f"{path.name.capitalize()} stages per {path.row}: p85 last 30 days vs 90 days",
            f"Each {path.by.removesuffix(', stage')} and stage: p85 over 30 and 90 days, how many items "
            "the 30 days hold and the growth, largest growth first (few items make a noisy p85: read "
            "the count)." + _GROWTH_NOTE,
            path.metric,
            path.flt,
            path.by,
            "p85 growth",
        ),
        12,
        10,
    )


def where_the_time_goes() -> dict[str, Any]:
    request_stats = _stage_stats(
        _REQUEST_PATH,
        f'max(cycletime_request_to_release_window_seconds{{{R2R_FILTER},window="$window",quantile="0.85"}})',
        "the largest matching p85 request-to-release time over the window "
        "(`cycletime_request_to_release_window_seconds`, filtered by environment too), from creation to "
        "the first production deployment of a linked change.",
    )
    change_stats = _stage_stats(
        _CHANGE_PATH,
        f'max(cycletime_change_lead_time_window_seconds{{{DEP_FILTER},window="$window",quantile="0.85"}})',
        "the largest matching p85 change lead time over the window "
        "(`cycletime_change_lead_time_window_seconds`), first commit to the first successful production "
        "deployment containing the change.",
    )
    panels = layout(
        [
            request_stats + change_stats,
            *_stage_rows(_REQUEST_PATH),
            *_stage_rows(_CHANGE_PATH),
            [_stage_table(_REQUEST_PATH), _stage_table(_CHANGE_PATH)],
        ]
    )
    return dashboard(
        "cycletime-where-the-time-goes",
        "Where the time goes",
        "Request-to-release and change lead time split into stages: where the months go, per team and "
        "service, and which stage grew against the last 90 days.",
        ["stages"],
        panels,
        template_vars(service=True, window=True),
    )


DASHBOARDS = {
    "request-to-release.json": request_to_release,
    "flow.json": flow,
    "dora.json": dora,
    "collector-health.json": collector_health,
    "where-the-time-goes.json": where_the_time_goes,
}


def dump_json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def outputs() -> dict[Path, str]:
    files: dict[Path, str] = {}
    for name, build in DASHBOARDS.items():
        text = dump_json(build())
        files[GRAFANA_DIR / name] = text
        files[CHART_DASHBOARDS_DIR / name] = text
    files[RULES_FILE] = render_rules_yaml()
    files[RULE_TEMPLATE_FILE] = render_rule_template()
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a generated file is out of date")
    args = parser.parse_args(argv)
    stale = []
    for path, text in outputs().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    # dashboards removed from DASHBOARDS must not linger in the chart
    for directory in (GRAFANA_DIR, CHART_DASHBOARDS_DIR):
        for extra in sorted(directory.glob("*.json")) if directory.exists() else []:
            if extra.name not in DASHBOARDS:
                stale.append(extra)
                if not args.check:
                    extra.unlink()
    for path in stale:
        print(f"{'out of date' if args.check else 'wrote'}: {path.relative_to(ROOT)}")
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
