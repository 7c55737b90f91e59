"""Which successful production deployment first delivered each change and each work item.

Links are refs (see ``collector.model``): a work item links to commits, pull requests or builds;
a deployment *contains* commit and build refs. A pull request ref is expanded to its commits
through the change that carries it, so ``Fixes #12`` on a PR releases issue 12 with the first
production deployment containing any of the PR's commits. Pure functions: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from collector.model import Change, Deployment, Link, commit_ref


def first_deliveries(deployments: Iterable[Deployment]) -> dict[str, Deployment]:
    """ref → the earliest-finishing successful production deployment containing it.

    Ties on finish time are broken by (source, native_id) so the answer does not depend on
    the order the store returned rows in.
    """
    delivered: dict[str, Deployment] = {}
    ordered = sorted(
        (d for d in deployments if d.production and d.status == "success"),
        key=lambda d: (d.finished_at, d.source, d.native_id),
    )
    for deployment in ordered:
        for ref in deployment.contains:
            delivered.setdefault(ref, deployment)
        if deployment.sha:
            delivered.setdefault(commit_ref(deployment.sha), deployment)
    return delivered


def change_refs(change: Change) -> set[str]:
    """Everything whose delivery delivers the change: its own ref and its commits."""
    return {change.ref, *(commit_ref(sha) for sha in change.commits)}


def _key(d: Deployment) -> tuple[datetime, str, str]:
    return (d.finished_at, d.source, d.native_id)


def earliest(refs: Iterable[str], delivered: dict[str, Deployment]) -> Deployment | None:
    best: Deployment | None = None
    for ref in refs:
        found = delivered.get(ref)
        if found is not None and (best is None or _key(found) < _key(best)):
            best = found
    return best


def change_deliveries(
    changes: Iterable[Change], delivered: dict[str, Deployment], refs: Iterable[Iterable[str]] | None = None
) -> dict[tuple[str, str], Deployment]:
    """(source, native_id) of each change → the first production deployment that shipped it.
    ``refs``: each change's :func:`change_refs`, when the caller has them already."""
    changes = list(changes)
    out: dict[tuple[str, str], Deployment] = {}
    for change, own in zip(changes, refs if refs is not None else map(change_refs, changes), strict=True):
        found = earliest(own, delivered)
        if found is not None:
            out[(change.source, change.native_id)] = found
    return out


def work_item_deliveries(
    links: Iterable[Link],
    changes: Iterable[Change],
    delivered: dict[str, Deployment],
    shipped: dict[tuple[str, str], Deployment] | None = None,
) -> dict[str, Deployment]:
    """work item ref → the first production deployment containing anything linked to it.

    A link may come from any source (a GitHub PR mentioning ``AB#123`` links an Azure Boards
    item), so this works on refs, never on source names. A link to a change's ref is delivered
    when any of the change's commits is (``shipped``: :func:`change_deliveries`, when the caller
    has it already); any other link target (a commit, a build) when it is itself.
    """
    changes = list(changes)
    if shipped is None:
        shipped = change_deliveries(changes, delivered)
    by_ref: dict[str, Deployment] = {}  # change ref → the earliest delivery of the changes carrying it
    for change in changes:
        found = shipped.get((change.source, change.native_id))
        if found is not None:
            best = by_ref.get(change.ref)
            if best is None or _key(found) < _key(best):
                by_ref[change.ref] = found
    out: dict[str, Deployment] = {}
    for link in links:
        for found in (by_ref.get(link.target), delivered.get(link.target)):
            if found is not None:
                best = out.get(link.work_item)
                if best is None or _key(found) < _key(best):
                    out[link.work_item] = found
    return out


def linked_change_times(
    links: Iterable[Link], changes: Iterable[Change], refs: Iterable[Iterable[str]] | None = None
) -> dict[str, tuple[float, float]]:
    """work item ref → (first linked pull request ready for review, last linked change merged),
    NaN where there is none: the request stages' middle boundaries (docs/definitions.md).

    A link names a change by the change's own ref (a PR, a pushed commit) or by one of its commits
    (``AB#12`` in a commit message of a PR); a build link names no change. A PR whose source cannot
    tell readiness counts as ready at its first commit. ``refs``: each change's :func:`change_refs`,
    when the caller has them already.
    """
    nan = float("nan")
    links = list(links)
    changes = list(changes)
    targets = {link.target for link in links}
    times: dict[str, list[tuple[float, float]]] = {}
    for change, own in zip(changes, refs if refs is not None else map(change_refs, changes), strict=True):
        linked = targets.intersection(own)
        if not linked:
            continue
        ready = (change.ready_at or change.first_commit_at).timestamp() if change.kind == "pull_request" else nan
        merged = change.merged_at.timestamp() if change.merged_at is not None else nan
        for ref in linked:
            times.setdefault(ref, []).append((ready, merged))
    out: dict[str, tuple[float, float]] = {}
    for link in links:
        for ready, merged in times.get(link.target, ()):
            first, last = out.get(link.work_item, (nan, nan))
            # min/max that skip NaN: "no such change" never wins
            out[link.work_item] = (
                ready if first != first or ready < first else first,
                merged if last != last or merged > last else last,
            )
    return out
