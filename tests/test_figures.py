"""collector/figures.py: when figures are computed, readiness, the monthly trend and the headline."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from conftest import record_pass
from fixture_data import NOW, a_year_of_releases, load, year_item

import collector.figures as figures_module
from collector.compute import Figures, Observations, compute, window_quantiles
from collector.config import parse_config
from collector.figures import FigureCache, Settings, headline, month_ends, trend
from collector.model import (
    Batch,
    Category,
    Change,
    Deployment,
    Link,
    StateChange,
    WorkItem,
    ado_ref,
    build_ref,
    commit_ref,
    gh_issue_ref,
    gh_pr_ref,
)
from collector.store import Store, meta, work_items

DAY = 86400.0
CONFIG = """
store: sqlite:///unused.db
sources:
  - {name: boards, kind: azure_boards, organization_url: "http://127.0.0.1:1/o", project: Fabrikam, token: t}
  - {name: pipelines, kind: azure_pipelines, organization_url: "http://127.0.0.1:1/o", project: Fabrikam, token: t}
"""


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(f"sqlite:///{tmp_path}/store.db")


def settings() -> Settings:
    return Settings.from_config(parse_config(CONFIG, {}))


def synced(store: Store, name: str) -> None:
    record_pass(store, name, started_at=NOW.timestamp(), items=1)


def test_ready_only_once_the_figures_include_every_sources_first_pass(store: Store) -> None:
    figures = FigureCache(store, settings(), clock=NOW.timestamp)
    figures.refresh()
    assert figures.ready(store.statuses()) == (False, "not synced yet: boards, pipelines")
    load(store)  # boards' pass commits its data, then its status
    synced(store, "boards")
    figures.refresh()
    ready, why = figures.ready(store.statuses())
    assert not ready and why == "not synced yet: pipelines"
    synced(store, "pipelines")  # every source synced, but the published figures predate that
    ready, why = figures.ready(store.statuses())
    assert not ready and "figures not computed" in why
    snapshot = figures.refresh()
    assert figures.ready(store.statuses()) == (True, "ready")
    assert snapshot.figures.deployments  # ...and they hold what the passes brought


def test_a_pass_that_brought_nothing_new_still_completes_the_figures(store: Store) -> None:
    load(store)
    figures = FigureCache(store, settings(), clock=NOW.timestamp)
    before = figures.refresh()
    synced(store, "boards")
    synced(store, "pipelines")
    after = figures.refresh()
    assert after.figures is before.figures  # nothing recomputed: the data version did not move
    assert figures.ready(store.statuses()) == (True, "ready")


def test_windows_slide_only_after_max_age_and_data_loads_only_when_it_changed(store: Store) -> None:
    load(store)
    clock = [NOW.timestamp()]
    figures = FigureCache(store, settings(), clock=lambda: clock[0], max_age=60)
    first = figures.refresh()
    clock[0] += 30
    assert figures.refresh().now == first.now
    clock[0] += 60
    slid = figures.refresh()
    assert slid.now == clock[0] and slid.figures is first.figures
    store.commit("boards", Batch(work_items=[year_item("99", NOW - timedelta(days=3), NOW - timedelta(days=1))]))
    assert figures.refresh().figures is not first.figures


def test_month_ends_are_month_starts_and_now() -> None:
    now = datetime(2026, 3, 10, 12, tzinfo=UTC).timestamp()
    ends = month_ends(now, 4)
    assert [m for m, _ in ends] == ["2025-12", "2026-01", "2026-02", "2026-03"]
    assert ends[0][1] == datetime(2026, 1, 1, tzinfo=UTC).timestamp() and ends[-1][1] == now


def test_the_trend_is_the_30_day_window_at_each_month_end(store: Store) -> None:
    now = NOW
    a_year_of_releases(store, now)
    links = store.links()
    table = store.work_item_table({link.work_item for link in links})
    figures = compute(table, store.changes(), store.deployments(), links)
    points = trend(figures, now.timestamp())
    assert len(points) == 12 and points[-1].end == now.timestamp()
    assert all(p.request_to_release is not None and p.cycle_time is not None for p in points[1:])
    for point in points:
        # the --at reading: every figure as it stood at the month's end, then its 30-day window
        then = compute(table, store.changes(), store.deployments(), links, as_of=point.end)
        r2r = np.vstack(list(then.request_to_release.by_labels.values()))
        expected = window_quantiles(r2r, point.end, 30 * DAY, [0.85])
        assert point.request_to_release == expected.quantiles.get(0.85)
        assert point.request_to_release_count == expected.count


def test_the_headline_pools_a_projects_teams_and_counts_production_deployments(store: Store) -> None:
    a_year_of_releases(store, NOW)
    links = store.links()
    figures = compute(
        store.work_item_table({link.work_item for link in links}), store.changes(), store.deployments(), links
    )
    top = headline(figures, NOW.timestamp())
    assert {p.project for p in top.projects} == {"Fabrikam", "Tailspin"}
    values = [p.p85 for p in top.projects]
    assert values == sorted(values, reverse=True)
    # deployments 2 days after completions every 3.5 days: those finished in (now - 30d, now]
    finished = [NOW - timedelta(days=3.5 * n - 2) for n in range(1, 105)]
    recent = [n for n, t in zip(range(1, 105), finished, strict=True) if NOW - timedelta(days=30) < t <= NOW]
    assert top.deployments_failed == sum(1 for n in recent if n % 10 == 0)
    assert top.deployments_succeeded == len(recent) - top.deployments_failed


# -- incremental refresh: what a full load would give ---------------------------------------------

STATES = (
    ("New", Category.PROPOSED),
    ("Active", Category.IN_PROGRESS),
    ("Resolved", Category.RESOLVED),
    ("Closed", Category.COMPLETED),
    ("Removed", Category.REMOVED),
)


def assert_same_figures(got: Figures, expected: Figures) -> None:
    for name in (f.name for f in dataclasses.fields(Figures)):
        a, b = getattr(got, name), getattr(expected, name)
        if isinstance(a, Observations):
            assert a.by_labels.keys() == b.by_labels.keys(), name
            for labels, block in a.by_labels.items():
                np.testing.assert_array_equal(block, b.by_labels[labels], err_msg=f"{name} {labels}")
        else:
            assert a == b, name


class RandomChanges:
    """Random passes of two sources: new items and revisions, rewritten histories, links,
    changes and deployments, including records that change (a deployment's status, a relink)."""

    def __init__(self, store: Store, seed: int) -> None:
        self.store, self.rng = store, random.Random(seed)
        self.histories: dict[tuple[str, str], list[StateChange]] = {}
        self.items: dict[tuple[str, str], WorkItem] = {}
        self.shas: list[str] = []
        self.deployments: list[Deployment] = []
        self.changes: list[Change] = []
        self.next_id = 0

    def _when(self, days: float) -> datetime:
        return NOW - timedelta(days=days)

    def _revision(self, key: tuple[str, str], after: datetime) -> StateChange:
        history = self.histories.setdefault(key, [])
        state, category = self.rng.choice(STATES)
        skew = -25 if self.rng.random() < 0.1 else 0  # now and then dated before the one it follows
        at = min(after + timedelta(days=self.rng.uniform(0, 20) + skew), NOW)
        change = StateChange(key[1], len(history) + 1, at, state, category)
        history.append(change)
        return change

    def _new_item(self) -> WorkItem:
        self.next_id += 1
        source = self.rng.choice(("boards", "github"))
        native = str(self.next_id) if source == "boards" else f"contoso/web#{self.next_id}"
        ref = ado_ref(self.next_id) if source == "boards" else gh_issue_ref("contoso/web", self.next_id)
        team, type_ = self.rng.choice(("Web", "Payments")), self.rng.choice(("Bug", "User Story"))
        created = self._when(self.rng.uniform(30, 300))
        item = WorkItem(source, native, ref, "Fabrikam", team, type_, created)
        self.items[(source, native)] = item
        at = created
        for _ in range(self.rng.randint(0, 4)):
            at = self._revision((source, native), at).at
        return dataclasses.replace(item, history=tuple(self.histories.get((source, native), ())))

    def one_pass(self) -> None:
        rng, by_source = self.rng, {"boards": Batch(), "github": Batch()}
        for _ in range(rng.randint(1, 6)):
            item = self._new_item()
            by_source[item.source].work_items.append(item)
        for key in rng.sample(sorted(self.items), min(len(self.items), rng.randint(0, 5))):
            history = self.histories.get(key, [])
            latest = self._revision(key, history[-1].at if history else self.items[key].created_at)
            # only the new revision, as an incremental source hands it over
            by_source[key[0]].work_items.append(dataclasses.replace(self.items[key], history=(latest,)))
        for source, batch in by_source.items():
            for work_item in rng.sample(batch.work_items, min(len(batch.work_items), 2)):
                sha = f"{rng.getrandbits(64):016x}"
                self.shas.append(sha)
                batch.links.append(Link(source, work_item.ref, commit_ref(sha)))
            if self.items and rng.random() < 0.5:  # a relink: an older item gains a link
                key = rng.choice(sorted(self.items))
                batch.links.append(Link(source, self.items[key].ref, commit_ref(rng.choice(self.shas or ["0"]))))
        if self.shas and rng.random() < 0.7:
            sha = rng.choice(self.shas)
            number = rng.randint(1, 10**6)
            by_source["github"].changes.append(
                Change(
                    "github",
                    f"contoso/web#pr{number}",
                    gh_pr_ref("contoso/web", number),
                    "contoso/web",
                    "pull_request",
                    self._when(rng.uniform(10, 60)),
                    self._when(rng.uniform(1, 10)),
                    (sha,),
                    rng.choice([None, self._when(rng.uniform(5, 50))]),
                    rng.choice([None, self._when(rng.uniform(1, 30))]),
                )
            )
        for _ in range(rng.randint(0, 3)):
            contains = tuple(commit_ref(s) for s in rng.sample(self.shas, min(len(self.shas), 3)))
            deployment = Deployment(
                "github",
                f"run-{len(self.deployments)}",
                "web",
                rng.choice(("production", "staging")),
                rng.random() < 0.7,
                rng.choice(("success", "failure", "failure")),
                None,
                self._when(rng.uniform(0, 40)),
                None,
                contains,
            )
            self.deployments.append(deployment)
            by_source["github"].deployments.append(deployment)
        if self.changes and rng.random() < 0.3:  # a change read again: another commit, another merge
            changed_pr = rng.choice(self.changes)
            changed_pr = dataclasses.replace(
                changed_pr,
                commits=(*changed_pr.commits, rng.choice(self.shas)),
                merged_at=self._when(rng.uniform(0, 9)),
            )
            by_source["github"].changes.append(changed_pr)
        self.changes.extend(by_source["github"].changes)
        if self.deployments and rng.random() < 0.5:  # a rerun: a failed deployment now succeeded
            changed = rng.choice(self.deployments)
            by_source["github"].deployments.append(dataclasses.replace(changed, status="success"))
        for source, batch in by_source.items():
            self.store.commit(source, batch)
        if self.items and rng.random() < 0.4:  # a timeline re-read in full: history rewritten
            key = rng.choice(sorted(self.items))
            self.histories[key] = []
            at = self.items[key].created_at
            for _ in range(rng.randint(0, 3)):
                at = self._revision(key, at).at
            rewritten = dataclasses.replace(self.items[key], history=tuple(self.histories[key]))
            self.store.commit(key[0], Batch(work_items=[rewritten], replace_history=True))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_an_incremental_refresh_gives_the_figures_of_a_full_load(
    store_url: str, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(store_url)
    full_loads = counting_full_loads(store, monkeypatch)
    changes = RandomChanges(store, seed)
    cache = FigureCache(store, settings(), clock=NOW.timestamp)
    seen: Counter[str] = Counter()
    for _ in range(10):
        changes.one_pass()
        kept = cache.refresh()
        fresh = FigureCache(Store(store_url), settings(), clock=NOW.timestamp).refresh()
        assert kept.version == fresh.version
        assert_same_figures(kept.figures, fresh.figures)
        assert kept.trend == fresh.trend and kept.headline == fresh.headline
        seen.update(
            name
            for name in ("lead_time", "request_to_release", "recovery", "change_stages", "request_stages")
            if getattr(kept.figures, name).count()
        )
        seen["rejected"] += bool(kept.figures.rejected)
    assert len(full_loads) == 1, "every refresh after the first reads only what changed"
    # (change stages come with change lead times, which seed 1 never deploys)
    assert set(seen) >= {"lead_time", "request_to_release", "recovery", "request_stages", "rejected"}


def test_a_ref_two_items_share_falls_back_to_a_full_load(store: Store) -> None:
    store.commit("boards", Batch(work_items=[year_item("1", NOW - timedelta(days=20), NOW - timedelta(days=5))]))
    cache = FigureCache(store, settings(), clock=NOW.timestamp)
    cache.refresh()
    twin = dataclasses.replace(year_item("1", NOW - timedelta(days=9), NOW - timedelta(days=2)), source="boards-2")
    sha = "ab" * 20
    store.commit(
        "boards-2",
        Batch(
            work_items=[twin],
            links=[Link("boards-2", twin.ref, commit_ref(sha))],
            deployments=[
                Deployment("pipelines", "1", "web", "prod", True, "success", None, NOW - timedelta(days=1), sha)
            ],
        ),
    )
    kept = cache.refresh()
    fresh = FigureCache(store, settings(), clock=NOW.timestamp).refresh()
    assert_same_figures(kept.figures, fresh.figures)
    assert kept.figures.request_to_release.count() == 1


def counting_full_loads(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    loads: list[int] = []
    full_load = store.work_item_table
    monkeypatch.setattr(store, "work_item_table", lambda linked=None: loads.append(1) or full_load(linked))
    return loads


def test_records_without_work_items_are_taken_in_without_reading_the_items(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    a_year_of_releases(store, NOW)
    loads = counting_full_loads(store, monkeypatch)
    cache = FigureCache(store, settings(), clock=NOW.timestamp)
    before = cache.refresh()
    late = Deployment("pipelines", "late", "web", "prod", True, "failure", None, NOW - timedelta(hours=1))
    store.commit("pipelines", Batch(deployments=[late]))
    after = cache.refresh()
    assert loads == [1] and after.version == before.version + 1
    assert after.headline.deployments_failed == before.headline.deployments_failed + 1
    assert_same_figures(after.figures, FigureCache(store, settings(), clock=NOW.timestamp).refresh().figures)


def test_work_items_alone_keep_what_changes_deployments_and_links_gave(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Changes, deployments and links are read whole once, then only as written since; what they
    give is derived again only when one of them was written; the figures are those of a full load."""
    a_year_of_releases(store, NOW)
    reads: list[int | None] = []
    read = store.change_table
    monkeypatch.setattr(
        store, "change_table", lambda since=None, extends=None: reads.append(since) or read(since, extends)
    )
    derived: list[float | None] = []
    derive = figures_module.change_figures
    monkeypatch.setattr(
        figures_module, "change_figures", lambda t, as_of=None: derived.append(as_of) or derive(t, as_of)
    )
    cache = FigureCache(store, settings(), clock=NOW.timestamp)
    first = cache.refresh()
    assert reads == [None] and len(derived) == 1
    store.commit("boards", Batch(work_items=[year_item("998", NOW - timedelta(days=9), NOW - timedelta(days=1))]))
    items_only = cache.refresh()
    assert reads == [None, first.version] and len(derived) == 1
    assert items_only.figures.change_lead_time.by_labels == first.figures.change_lead_time.by_labels
    assert_same_figures(items_only.figures, FigureCache(store, settings(), clock=NOW.timestamp).refresh().figures)
    store.commit("boards", Batch(links=[Link("boards", ado_ref(998), build_ref(1))]))
    before = len(derived)  # the full load just above derived its own
    relinked = cache.refresh()
    assert reads[-1] == items_only.version and len(derived) == before + 1
    assert_same_figures(relinked.figures, FigureCache(store, settings(), clock=NOW.timestamp).refresh().figures)


def test_states_past_what_two_bytes_hold_are_merged_as_a_full_load_reads_them(store: Store) -> None:
    """State codes are int16 while they fit; an update that brings the 32,768th state widens them."""

    def items(first: int, n: int, tag: str) -> list[WorkItem]:
        created = NOW - timedelta(days=30)
        return [
            WorkItem(
                "boards",
                str(i),
                ado_ref(i),
                "Fabrikam",
                "Web",
                "Bug",
                created,
                (
                    StateChange(str(i), 1, created, f"{tag} {i}", Category.PROPOSED),
                    StateChange(str(i), 2, created + timedelta(days=1 + i % 7), "Closed", Category.COMPLETED),
                ),
            )
            for i in range(first, first + n)
        ]

    store.commit("boards", Batch(work_items=items(0, 30_000, "waiting")))
    cache = FigureCache(store, settings(), clock=NOW.timestamp)
    cache.refresh()
    assert cache._loaded is not None and cache._loaded.table.h_state.dtype == np.int16
    store.commit("boards", Batch(work_items=items(30_000, 5_000, "queued")))
    kept = cache.refresh()
    assert cache._loaded is not None and cache._loaded.table.h_state.dtype == np.int32
    fresh = FigureCache(Store(store.url), settings(), clock=NOW.timestamp).refresh()
    assert_same_figures(kept.figures, fresh.figures)
    assert len(kept.figures.state_seconds) == 35_000


def test_another_store_at_the_same_place_is_read_in_full(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    a_year_of_releases(store, NOW)
    loads = counting_full_loads(store, monkeypatch)
    cache = FigureCache(store, settings(), clock=NOW.timestamp)
    cache.refresh()
    with store.engine.begin() as conn:  # a restored backup of another store: its own id and sequences
        conn.execute(sa.update(meta).where(meta.c.key == "store_id").values(value="restored"))
    store.commit("boards", Batch(work_items=[year_item("999", NOW - timedelta(days=9), NOW - timedelta(days=1))]))
    kept = cache.refresh()
    assert loads == [1, 1]
    assert_same_figures(kept.figures, FigureCache(store, settings(), clock=NOW.timestamp).refresh().figures)


def test_items_written_around_the_store_without_numbers_are_read_in_full(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    a_year_of_releases(store, NOW)
    with store.engine.begin() as conn:  # a bulk insert that left item_no at its default
        conn.execute(sa.update(work_items).values(item_no=0))
    loads = counting_full_loads(store, monkeypatch)
    cache = FigureCache(store, settings(), clock=NOW.timestamp)
    cache.refresh()
    reopened = sorted(store.work_items(), key=lambda w: w.native_id)[-1]
    active = StateChange(reopened.native_id, len(reopened.history) + 1, NOW, "Active", Category.IN_PROGRESS)
    store.commit(reopened.source, Batch(work_items=[dataclasses.replace(reopened, history=(active,))]))
    kept = cache.refresh()
    assert loads == [1, 1]
    assert_same_figures(kept.figures, FigureCache(store, settings(), clock=NOW.timestamp).refresh().figures)


def test_the_headline_names_the_stage_that_held_most_of_each_projects_time() -> None:
    """Fabrikam: 20 days waiting in the backlog against 6 of development, review and release; Tailspin:
    released 30 days after the last merge. Items released before the 30-day window do not count."""
    now = NOW.timestamp()

    def at(days_before: float) -> datetime:
        return NOW - timedelta(days=days_before)

    def item(n: int, project: str, created: float, started: float) -> WorkItem:
        history = (
            StateChange(str(n), 1, at(created), "New", Category.PROPOSED),
            StateChange(str(n), 2, at(started), "Active", Category.IN_PROGRESS),
        )
        return WorkItem("boards", str(n), ado_ref(n), project, "Web", "Bug", at(created), history)

    sha = {n: f"{n:040x}" for n in range(1, 4)}
    changes = [
        Change("gh", "1", "ghpr:o/r#1", "o/r", "pull_request", at(8), at(5), (sha[1],), at(7), at(6)),
        Change("gh", "2", "ghpr:o/r#2", "o/r", "pull_request", at(39), at(38), (sha[2],), at(39), at(38)),
        Change("gh", "3", "ghpr:o/r#3", "o/r", "pull_request", at(90), at(89), (sha[3],), at(90), at(89)),
    ]
    items = [item(1, "Fabrikam", 26, 6), item(2, "Tailspin", 40, 39), item(3, "Tailspin", 100, 91)]
    deployments = [
        Deployment("p", f"d{n}", "web", "production", True, "success", None, at(days), None, (commit_ref(sha[n]),))
        for n, days in ((1, 2), (2, 8), (3, 60))
    ]
    links = [Link("gh", ado_ref(n), f"ghpr:o/r#{n}") for n in range(1, 4)]
    figures = compute(items, changes, deployments, links)
    top = {p.project: p for p in headline(figures, now).projects}
    # Fabrikam: created 26 days ago, started 6, ready 7 (clamped to 6), merged 5, released 2
    assert (top["Fabrikam"].largest_stage, top["Fabrikam"].largest_stage_share) == ("backlog", pytest.approx(20 / 24))
    # Tailspin: only item 2 is in the window: backlog 1, development 0, review 1, release 30
    assert (top["Tailspin"].largest_stage, top["Tailspin"].largest_stage_share) == ("release", pytest.approx(30 / 32))
