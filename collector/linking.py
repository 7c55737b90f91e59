"""Which successful production deployment first delivered each change and each work item.

Links are refs (see ``collector.model``): a work item links to commits, pull requests or builds;
a deployment *contains* commit and build refs. A pull request ref is expanded to its commits
through the change that carries it, so ``Fixes #12`` on a PR releases issue 12 with the first
production deployment containing any of the PR's commits. Pure functions: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable

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


def earliest(refs: Iterable[str], delivered: dict[str, Deployment]) -> Deployment | None:
    best: Deployment | None = None
    for ref in refs:
        found = delivered.get(ref)
        if found is not None and (
            best is None
            or (found.finished_at, found.source, found.native_id) < (best.finished_at, best.source, best.native_id)
        ):
            best = found
    return best


def change_deliveries(changes: Iterable[Change], delivered: dict[str, Deployment]) -> dict[tuple[str, str], Deployment]:
    """(source, native_id) of each change → the first production deployment that shipped it."""
    out: dict[tuple[str, str], Deployment] = {}
    for change in changes:
        found = earliest(change_refs(change), delivered)
        if found is not None:
            out[(change.source, change.native_id)] = found
    return out


def work_item_deliveries(
    links: Iterable[Link], changes: Iterable[Change], delivered: dict[str, Deployment]
) -> dict[str, Deployment]:
    """work item ref → the first production deployment containing anything linked to it.

    A link may come from any source (a GitHub PR mentioning ``AB#123`` links an Azure Boards
    item), so this works on refs, never on source names.
    """
    by_ref: dict[str, set[str]] = {}
    for change in changes:
        by_ref.setdefault(change.ref, set()).update(change_refs(change))
    targets: dict[str, set[str]] = {}
    for link in links:
        expanded = by_ref.get(link.target, {link.target})
        targets.setdefault(link.work_item, set()).update(expanded | {link.target})
    out: dict[str, Deployment] = {}
    for item, refs in targets.items():
        found = earliest(refs, delivered)
        if found is not None:
            out[item] = found
    return out


def linked_change_times(links: Iterable[Link], changes: Iterable[Change]) -> dict[str, tuple[float, float]]:
    """work item ref → (first linked pull request ready for review, last linked change merged),
    NaN where there is none: the request stages' middle boundaries (docs/definitions.md).

    A link names a change by the change's own ref (a PR, a pushed commit) or by one of its commits
    (``AB#12`` in a commit message of a PR); a build link names no change. A PR whose source cannot
    tell readiness counts as ready at its first commit.
    """
    nan = float("nan")
    links = list(links)
    targets = {link.target for link in links}
    times: dict[str, list[tuple[float, float]]] = {}
    for change in changes:
        refs = [ref for ref in (change.ref, *("commit:" + sha.lower() for sha in change.commits)) if ref in targets]
        if not refs:
            continue
        ready = (change.ready_at or change.first_commit_at).timestamp() if change.kind == "pull_request" else nan
        merged = change.merged_at.timestamp() if change.merged_at is not None else nan
        for ref in refs:
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
