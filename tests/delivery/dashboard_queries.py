"""Every PromQL query of the shipped Grafana dashboards, with the template variables substituted.

``iter_panel_queries()`` yields ``PanelQuery(dashboard, panel, expr)`` for every target of every
panel in ``config/grafana/*.json``; the expressions are plain PromQL that Prometheus (or promtool)
accepts: multi-value variables match everything (``.*``), ``$window`` is ``30d``, and Grafana's
interval variables get fixed durations (override any of them with ``substitutions=``).

Standard library only; import it as ``tests.delivery.dashboard_queries`` / ``delivery.dashboard_queries``
or load it by path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

GRAFANA_DIR = Path(__file__).resolve().parents[2] / "config" / "grafana"

#: variable name -> substituted text
DEFAULT_SUBSTITUTIONS: dict[str, str] = {
    "source": ".*",
    "project": ".*",
    "team": ".*",
    "type": ".*",
    "environment": ".*",
    "service": ".*",
    "window": "30d",
    "__rate_interval": "5m",
    "__interval": "1m",
    "__range": "1h",
}

_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


class PanelQuery(NamedTuple):
    dashboard: str  # file name, e.g. "dora.json"
    panel: str  # panel title
    expr: str  # PromQL with the template variables substituted


class VariableQuery(NamedTuple):
    dashboard: str
    variable: str
    expr: str  # the selector inside label_values(...), substituted


def substitute(expr: str, substitutions: Mapping[str, str] | None = None) -> str:
    """Replace Grafana template variables; an unknown variable raises KeyError (a broken query)."""
    values = {**DEFAULT_SUBSTITUTIONS, **(substitutions or {})}

    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in values:
            raise KeyError(f"unknown template variable ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(repl, expr)


def load_dashboards(directory: Path = GRAFANA_DIR) -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(directory.glob("*.json"))}


def iter_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # collapsed rows


def iter_panel_queries(
    directory: Path = GRAFANA_DIR, substitutions: Mapping[str, str] | None = None
) -> Iterator[PanelQuery]:
    for name, dashboard in load_dashboards(directory).items():
        for panel in iter_panels(dashboard):
            for target in panel.get("targets", []):
                if target.get("expr"):
                    yield PanelQuery(name, panel["title"], substitute(target["expr"], substitutions))


def iter_variable_queries(
    directory: Path = GRAFANA_DIR, substitutions: Mapping[str, str] | None = None
) -> Iterator[VariableQuery]:
    """The series selectors of the dashboards' `label_values(selector, label)` query variables."""
    for name, dashboard in load_dashboards(directory).items():
        for var in dashboard.get("templating", {}).get("list", []):
            if var.get("type") != "query":
                continue
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\)\s*", query)
            if not m:
                raise ValueError(f"{name}: variable {var['name']}: unsupported query {query!r}")
            yield VariableQuery(name, var["name"], substitute(m.group(1), substitutions))
