"""An independent reference: every figure of docs/definitions.md, item by item, from the sandbox's truth.

This module deliberately shares no code with ``collector.compute``, ``collector.linking`` or the
sources: it reads the sandbox's ground truth (plain dicts), applies the written definitions with
plain loops, and returns the figures as the exposition should show them. Where it and
``cycletime metrics --at`` disagree, one of the two is wrong.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

WIP = ("Proposed", "InProgress", "Resolved")
STARTED = ("InProgress", "Resolved")
#: the histogram buckets of docs/metrics.md, written out again on purpose
DAY, HOUR = 86400.0, 3600.0
BOUNDS = [HOUR, 4 * HOUR, 8 * HOUR] + [d * DAY for d in (1, 2, 3, 5, 7, 10, 14, 21, 30, 45, 60, 90, 120, 180, 270, 365)]


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def is_production(environment: str, patterns: list[str]) -> bool:
    for pattern in patterns:
        if len(pattern) > 1 and pattern[0] == "/" and pattern[-1] == "/":
            if re.search(pattern[1:-1], environment):
                return True
        elif pattern.lower() == environment.lower():
            return True
    return False


def quantile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (what NumPy calls ``linear``)."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


@dataclass
class Expected:
    #: histogram base name → labels → [(end event time, value)]
    histograms: dict[str, dict[tuple[str, ...], list[tuple[float, float]]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )
    state_seconds: dict[tuple[str, ...], float] = field(default_factory=lambda: defaultdict(float))
    deployments: Counter[tuple[str, ...]] = field(default_factory=Counter)
    wip: Counter[tuple[str, ...]] = field(default_factory=Counter)
    #: (source, service, environment, production, status) → finish times
    deployment_ends: dict[tuple[str, ...], list[float]] = field(default_factory=lambda: defaultdict(list))
    #: work item labels → [(completed at, seconds in the InProgress category, lead time)]
    active: dict[tuple[str, ...], list[tuple[float, float, float]]] = field(default_factory=lambda: defaultdict(list))
    #: (source, reason) → records the definitions refuse (clock skew)
    rejected: Counter[tuple[str, str]] = field(default_factory=Counter)

    def buckets(self, base: str, labels: tuple[str, ...]) -> list[int]:
        values = [v for _, v in self.histograms[base][labels]]
        return [sum(1 for v in values if v <= bound) for bound in BOUNDS] + [len(values)]

    def window(self, base: str, labels: tuple[str, ...], at: float, seconds: float) -> list[float]:
        return [v for end, v in self.histograms[base][labels] if at - seconds < end <= at]


def _owner_of(repo: str, repositories: list[str]) -> bool:
    owner = repo.split("/")[0]
    return any(r.lower() == repo.lower() or r.lower() == f"{owner.lower()}/*" for r in repositories)


def gather(truth: dict[str, Any], sources: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The truth's records that the configured sources read, each tagged with its source's name."""
    azure, github = truth["azure"], truth["github"]
    out: dict[str, list[dict[str, Any]]] = {"work_items": [], "changes": [], "deployments": [], "links": []}
    for s in sources:
        if s["kind"] == "azure_boards":
            types = s.get("work_item_types", ["User Story", "Bug", "Feature"])
            for item in azure["work_items"]:
                if item["project"] == s["project"] and item["type"] in types:
                    out["work_items"].append({**item, "source": s["name"]})
                    out["links"] += [{"work_item": item["ref"], "target": t} for t in item.get("links", [])]
        elif s["kind"] == "azure_pipelines":
            modes = s.get("deployments_from", ["environments", "releases"])
            prefixes = tuple({"environments": "env:", "releases": "release:"}[m] for m in modes)
            for d in azure["deployments"]:
                if d["project"] == s["project"] and d["native_id"].startswith(prefixes):
                    out["deployments"].append(
                        {
                            **d,
                            "source": s["name"],
                            "production": is_production(
                                d["environment"], s.get("production_environments", ["production"])
                            ),
                        }
                    )
            out["changes"] += [{**c, "source": s["name"]} for c in azure["changes"] if c["project"] == s["project"]]
            out["links"] += [link for link in azure["links"] if link["project"] == s["project"]]
        elif s["kind"] == "azure_repos":
            names = {n.lower() for n in s.get("repositories", ["*"])}
            for pr in azure["pull_requests"]:
                if pr["project"] == s["project"] and ("*" in names or pr["repository"].lower() in names):
                    out["changes"].append({**pr, "source": s["name"]})
                    out["links"] += [{"work_item": item, "target": pr["ref"]} for item in pr["work_items"]]
        elif s["kind"] == "github":
            repos = s["repositories"]
            out["work_items"] += [
                {**w, "source": s["name"]} for w in github["work_items"] if _owner_of(w["project"], repos)
            ]
            out["changes"] += [{**c, "source": s["name"]} for c in github["changes"] if _owner_of(c["service"], repos)]
            for d in github["deployments"]:
                if _owner_of(d["service"], repos):
                    out["deployments"].append(
                        {
                            **d,
                            "source": s["name"],
                            "production": is_production(
                                d["environment"], s.get("production_environments", ["production"])
                            ),
                        }
                    )
    if any(s["kind"] == "github" for s in sources):
        out["links"] += github["links"]
    return out


def reference_figures(truth: dict[str, Any], sources: list[dict[str, Any]], at: float) -> Expected:
    """Every figure as of ``at``, one item at a time."""
    data = gather(truth, sources)
    expected = Expected()
    deployments = [d for d in data["deployments"] if ts(d["finished_at"]) <= at]
    for d in deployments:
        expected.deployments[
            (d["source"], d["service"], d["environment"], str(d["production"]).lower(), d["status"])
        ] += 1
        expected.deployment_ends[
            (d["source"], d["service"], d["environment"], str(d["production"]).lower(), d["status"])
        ].append(ts(d["finished_at"]))

    # the first successful production deployment that delivered each ref
    shipped: dict[str, dict[str, Any]] = {}
    for d in sorted(
        (d for d in deployments if d["production"] and d["status"] == "success"),
        key=lambda d: (ts(d["finished_at"]), d["source"], d["native_id"]),
    ):
        for ref in [*d["contains"], *([f"commit:{d['sha']}"] if d.get("sha") else [])]:
            shipped.setdefault(ref.lower(), d)

    def first_shipped(refs: set[str]) -> dict[str, Any] | None:
        found = [shipped[r.lower()] for r in refs if r.lower() in shipped]
        return min(found, key=lambda d: (ts(d["finished_at"]), d["source"], d["native_id"]), default=None)

    refs_of_change: dict[str, set[str]] = defaultdict(set)
    for c in data["changes"]:
        refs = {c["ref"], *(f"commit:{sha}" for sha in c["commits"])}
        refs_of_change[c["ref"]] |= refs
        d = first_shipped(refs)
        if d is None:
            continue
        lead = ts(d["finished_at"]) - ts(c["first_commit_at"])
        if lead < 0:
            expected.rejected[(c["source"], "end_before_start")] += 1
        else:
            expected.histograms["cycletime_change_lead_time"][(d["source"], d["service"], d["environment"])].append(
                (ts(d["finished_at"]), lead)
            )
            _change_stages(c, ts(d["finished_at"]), expected)

    targets: dict[str, set[str]] = defaultdict(set)
    linked: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for link in data["links"]:
        targets[link["work_item"]] |= refs_of_change.get(link["target"], set()) | {link["target"]}
        for c in data["changes"]:
            named = link["target"].lower() == c["ref"].lower() or any(
                link["target"].lower() == f"commit:{sha}".lower() for sha in c["commits"]
            )
            if named and c not in linked[link["work_item"]]:
                linked[link["work_item"]].append(c)

    for item in data["work_items"]:
        _work_item(item, at, first_shipped(targets.get(item["ref"], set())), expected, linked.get(item["ref"], []))

    streams: dict[tuple[str, str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for d in deployments:
        streams[(d["source"], d["service"], d["environment"], str(d["production"]).lower())].append(d)
    for labels, stream in streams.items():
        failing_since = None
        for d in sorted(stream, key=lambda d: (ts(d["finished_at"]), d["native_id"])):
            if d["status"] == "failure" and failing_since is None:
                failing_since = ts(d["finished_at"])
            elif d["status"] == "success" and failing_since is not None:
                end = ts(d["finished_at"])
                expected.histograms["cycletime_failed_deployment_recovery"][labels].append((end, end - failing_since))
                failing_since = None
    return expected


def _walk(boundaries: list[float | None]) -> list[float]:
    """Stage lengths between boundaries: an unknown one stands for the next known, and each is kept
    between the one before it and the last (docs/definitions.md, "Where the time goes")."""
    end = boundaries[-1]
    assert end is not None
    lengths, at = [], boundaries[0]
    assert at is not None
    for i in range(1, len(boundaries)):
        nxt = next(b for b in boundaries[i:] if b is not None)
        nxt = min(max(nxt, at), end)
        lengths.append(nxt - at)
        at = nxt
    return lengths


def _change_stages(c: dict[str, Any], deployed: float, expected: Expected) -> None:
    labels = (c["source"], c["service"])
    if c["kind"] != "pull_request":
        expected.histograms["cycletime_change_stage"][(*labels, "deploy")].append(
            (deployed, deployed - ts(c["first_commit_at"]))
        )
        return
    merged = ts(c["merged_at"])
    ready = ts(c["ready_at"]) if c.get("ready_at") else ts(c["first_commit_at"])
    review = ts(c["first_review_at"]) if c.get("first_review_at") else merged
    lengths = _walk([ts(c["first_commit_at"]), min(ready, merged), min(review, merged), merged, deployed])
    for stage, seconds in zip(("coding", "pickup", "review", "deploy"), lengths, strict=True):
        expected.histograms["cycletime_change_stage"][(*labels, stage)].append((deployed, seconds))


def _request_stages(
    item: dict[str, Any],
    labels: tuple[str, ...],
    started: float | None,
    changes: list[dict[str, Any]],
    end: float,
    expected: Expected,
) -> None:
    prs = [c for c in changes if c["kind"] == "pull_request"]
    readies = [ts(c["ready_at"]) if c.get("ready_at") else ts(c["first_commit_at"]) for c in prs]
    merges = [ts(c["merged_at"]) for c in changes if c.get("merged_at")]
    lengths = _walk(
        [ts(item["created_at"]), started, min(readies) if readies else None, max(merges) if merges else None, end]
    )
    for stage, seconds in zip(("backlog", "development", "review", "release"), lengths, strict=True):
        expected.histograms["cycletime_request_stage"][(*labels, stage)].append((end, seconds))


def _work_item(
    item: dict[str, Any],
    at: float,
    release: dict[str, Any] | None,
    expected: Expected,
    changes: list[dict[str, Any]],
) -> None:
    created = ts(item["created_at"])
    if created > at:
        return
    history = [h for h in sorted(item["history"], key=lambda h: h["seq"]) if ts(h["at"]) <= at]
    labels = (item["source"], item["project"], item["team"], item["type"])
    previous = created
    for h in history:
        if ts(h["at"]) < previous:
            expected.rejected[(item["source"], "end_before_start")] += 1
            return
        previous = ts(h["at"])
    if release is not None and ts(release["finished_at"]) < created:
        expected.rejected[(item["source"], "end_before_start")] += 1
        return
    if not history or history[-1]["category"] == "Removed":
        return
    stays: list[dict[str, Any]] = []  # state, category, start
    for h in history:
        if not stays or stays[-1]["state"] != h["state"]:
            stays.append({"state": h["state"], "category": h["category"], "start": ts(h["at"])})
    current = stays[-1]
    if current["category"] in WIP:
        expected.wip[(*labels, current["category"])] += 1
    if release is not None:
        end = ts(release["finished_at"])
        expected.histograms["cycletime_request_to_release"][(*labels, release["environment"])].append(
            (end, end - created)
        )
        first_start = next((s["start"] for s in stays if s["category"] in STARTED), None)
        _request_stages(item, labels, first_start, changes, end, expected)
    if current["category"] != "Completed":
        return
    completed_at = current["start"]
    expected.histograms["cycletime_work_item_lead_time"][labels].append((completed_at, completed_at - created))
    started = [s["start"] for s in stays if s["category"] in STARTED]
    if started:
        expected.histograms["cycletime_work_item_cycle_time"][labels].append((completed_at, completed_at - started[0]))
    working = 0.0
    for stay, following in itertools.pairwise(stays):
        expected.state_seconds[(*labels, stay["state"], stay["category"])] += following["start"] - stay["start"]
        if stay["category"] == "InProgress":
            working += following["start"] - stay["start"]
    expected.active[labels].append((completed_at, working, completed_at - created))
