"""History backfill: the figures of every step of a past period, as OpenMetrics with timestamps.

Prometheus only knows what it scraped; the store knows a year. ``cycletime backfill`` computes the
exposition as it stood at each step (``compute(..., as_of=t)``, the same figures as
``cycletime metrics --at t``) and writes them in the form ``promtool tsdb create-blocks-from
openmetrics`` turns into TSDB blocks: every family's samples together, each series' points in
ascending time, ``# EOF`` at the end. The store is read once; each step only recomputes.

Step times are multiples of the step (midnight UTC for ``1d``), so Grafana panels with a matching
minimum interval and ``offset`` queries between steps (``offset 90d``) land on samples.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
from prometheus_client.core import Metric

from collector.compute import Figures, _add_work_item_figures, change_figures
from collector.config import Config, parse_duration
from collector.errors import CycletimeError
from collector.figures import Settings
from collector.linking import ChangeTable
from collector.sharding import Shards
from collector.store import Store
from collector.table import WorkItemTable
from exporters.prometheus import figure_families

log = logging.getLogger(__name__)

#: promtool rounds this down to a block range Prometheus' compactor knows (486h, about 20 days):
#: one block per few weeks of daily samples instead of one per 2 hours (the default).
MAX_BLOCK_DURATION = "744h"


class BackfillError(CycletimeError):
    """promtool is missing or refused the file."""


@dataclass(frozen=True)
class BackfillResult:
    steps: int
    families: int
    series: int
    samples: int
    seconds: float


def step_times(start: float, end: float, step: float) -> list[float]:
    """The multiples of ``step`` in ``[start, end]``, ascending."""
    if step <= 0:
        raise ValueError("step must be positive")
    first = math.ceil(start / step) * step
    return [float(first + i * step) for i in range(int((end - first) // step) + 1)] if first <= end else []


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


class OpenMetricsHistory:
    """Metric points of many steps, written grouped by family, then by series, in time order."""

    def __init__(self) -> None:
        #: family name → (type, help, series key → [(step, sample line)])
        self._families: dict[str, tuple[str, str, dict[tuple[str, ...], list[tuple[int, str]]]]] = {}
        #: (sample name, label values) → (series key, "name{labels} "): formatting labels is the hot path
        self._prefixes: dict[tuple[str, tuple[str, ...]], tuple[tuple[str, ...], str]] = {}

    def add(self, families: Iterable[Metric], step: int, timestamp: float) -> None:
        stamp = _number(timestamp) if timestamp % 1 else str(int(timestamp))
        prefixes = self._prefixes
        for family in families:
            entry = self._families.get(family.name)
            if entry is None:
                entry = self._families[family.name] = (family.type, family.documentation, {})
            series = entry[2]
            for sample in family.samples:
                cache_key = (sample.name, tuple(sample.labels.values()))
                cached = prefixes.get(cache_key)
                if cached is None:
                    # a histogram's point is its buckets, count and sum: one series, keyed without `le`
                    key = tuple(v for k, v in sample.labels.items() if k != "le")
                    cached = prefixes[cache_key] = (key, f"{sample.name}{_labels(sample.labels)} ")
                series.setdefault(cached[0], []).append((step, f"{cached[1]}{_number(sample.value)} {stamp}\n"))

    def merge(self, other: OpenMetricsHistory) -> None:
        for name, (kind, doc, series) in other._families.items():
            entry = self._families.setdefault(name, (kind, doc, {}))
            for key, points in series.items():
                entry[2].setdefault(key, []).extend(points)

    @property
    def family_count(self) -> int:
        return sum(1 for entry in self._families.values() if entry[2])

    @property
    def series(self) -> int:
        return sum(len(entry[2]) for entry in self._families.values())

    @property
    def samples(self) -> int:
        return sum(len(points) for entry in self._families.values() for points in entry[2].values())

    def write(self, out: TextIO) -> None:
        for name, (kind, doc, series) in self._families.items():
            if not series:
                continue
            out.write(f"# HELP {name} {_escape(doc)}\n# TYPE {name} {kind}\n")
            for key in sorted(series):
                points = series[key]
                points.sort(key=lambda point: point[0])  # stable: a histogram point keeps its bucket order
                out.writelines(line for _, line in points)
        out.write("# EOF\n")


class Timeline:
    """The store's data as of any time, for many times: what ``compute(..., as_of=t)`` does per
    call, with everything that does not depend on ``t`` done once.

    The first successful production deployment containing a ref is the earliest one, so the
    deliveries as of ``t`` are the deliveries over all time that finished by ``t``; the same holds
    for releases, change lead times and recoveries (a recovery ends at a success). Work items are
    recomputed at every step (``WorkItemTable.as_of``): a reopened or removed item reads
    differently before and after. tests/e2e/test_backfill.py keeps this equal to compute().
    """

    def __init__(self, table: WorkItemTable, changes: ChangeTable) -> None:
        self.table = table
        self.derived = change_figures(changes)  # every block in ascending end: cut at each step

    def figures(self, at: float) -> Figures:
        figures = Figures()
        derived = self.derived
        _add_work_item_figures(self.table.as_of(at), derived.releases.until(at), figures)
        for labels, block in _until(derived.change_lead_time, at):
            figures.change_lead_time.by_labels[labels] = block
        for labels, block in _until(derived.change_stages, at):
            figures.change_stages.by_labels[labels] = block
        for labels, block in _until(derived.recovery, at):
            figures.recovery.by_labels[labels] = block
        for labels, block in _until(derived.deployment_events, at):
            figures.deployment_events.by_labels[labels] = block
            figures.deployments[labels] = len(block)
        return figures


def _until(blocks: dict[tuple[str, ...], np.ndarray], at: float) -> Iterable[tuple[tuple[str, ...], np.ndarray]]:
    for labels, block in blocks.items():
        n = int(np.searchsorted(block[:, 0], at, side="right"))
        if n:
            yield labels, block[:n]


#: what forked workers compute from: (timeline, settings, times), set before the pool starts
_WORK: tuple[Timeline, Settings, Sequence[float]] | None = None


def _compute_steps(steps: Sequence[int]) -> OpenMetricsHistory:
    assert _WORK is not None
    timeline, settings, times = _WORK
    history = OpenMetricsHistory()
    for i in steps:
        history.add(figure_families(timeline.figures(times[i]), settings, times[i]), i, times[i])
    return history


def _compute_chunk(steps: Sequence[int]) -> tuple[int, OpenMetricsHistory]:
    return len(steps), _compute_steps(steps)


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def backfill(
    store: Store,
    settings: Settings,
    times: Sequence[float],
    out: TextIO,
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
) -> BackfillResult:
    """Write the figure families at each of ``times`` (ascending) to ``out`` as OpenMetrics.

    Steps are independent, so they are computed by ``workers`` forked processes (default: one per
    CPU) in chunks of consecutive steps; the output does not depend on the number of workers.
    """
    global _WORK
    started = time.monotonic()
    changes = store.change_table()
    timeline = Timeline(store.work_item_table(linked=set(changes.items)), changes)
    history = OpenMetricsHistory()
    chunks = [list(range(i, min(i + 8, len(times)))) for i in range(0, len(times), 8)]
    workers = min(workers or default_workers(), len(chunks))
    _WORK = (timeline, settings, times)
    done = 0
    try:
        if workers > 1 and "fork" in multiprocessing.get_all_start_methods():
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                for size, part in pool.imap_unordered(_compute_chunk, chunks):
                    history.merge(part)
                    done += size
                    if progress:
                        progress(done, len(times))
        else:
            for chunk in chunks:
                history.merge(_compute_steps(chunk))
                done += len(chunk)
                if progress:
                    progress(done, len(times))
    finally:
        _WORK = None
    history.write(out)
    return BackfillResult(len(times), history.family_count, history.series, history.samples, time.monotonic() - started)


def create_blocks(openmetrics_file: Path, blocks_dir: Path) -> str:
    """Run ``promtool tsdb create-blocks-from openmetrics``; returns its output."""
    promtool = shutil.which("promtool")
    if not promtool:
        raise BackfillError(
            "promtool is not on PATH: install Prometheus (it ships promtool) or run "
            f"`promtool tsdb create-blocks-from openmetrics {openmetrics_file} {blocks_dir}` "
            "where it is installed"
        )
    blocks_dir.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [
            promtool,
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            f"--max-block-duration={MAX_BLOCK_DURATION}",
            str(openmetrics_file),
            str(blocks_dir),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise BackfillError(
            f"promtool tsdb create-blocks-from openmetrics failed: {(result.stderr or result.stdout).strip()[-2000:]}"
        )
    return result.stdout + result.stderr


def loading_instructions(blocks_dir: Path, retention_days: int) -> str:
    return f"""Blocks written to {blocks_dir}. To load them into Prometheus:
  1. Move or copy every block directory (the ULID-named ones) into Prometheus' data directory
     (--storage.tsdb.path), e.g. cp -r {blocks_dir}/01* /prometheus/ ; Prometheus loads them with its
     next block reload (about a minute) or restart.
  2. Backfilled data is subject to retention: run Prometheus with
     --storage.tsdb.retention.time={retention_days}d or more (the default 15d deletes older blocks).
  3. Prometheus 2.38 and older also need --storage.tsdb.allow-overlapping-blocks when the blocks
     overlap data it already has; 2.39 and newer accept overlapping blocks by default.
  Thanos, Mimir, Cortex: upload the blocks to their object storage instead (Mimir: mimirtool backfill;
  Thanos: copy the block directories into the bucket with the external labels the store expects).
  One sample per series per step: give time-series panels a minimum interval of the step to read them."""


def run(config: Config, since: str, step: str, out: str, blocks_dir: str | None, shards: Shards | None = None) -> int:
    """``cycletime backfill``: write the file, optionally the blocks, and say how to load them.
    ``shards``: a shard writes the series it exports (docs/sharding.md)."""
    from collector.errors import ConfigError

    try:
        span, every = parse_duration(since).total_seconds(), parse_duration(step).total_seconds()
    except (ValueError, TypeError) as exc:
        raise ConfigError([f"--from/--step: {exc}"]) from None
    if every <= 0 or span <= 0:
        raise ConfigError(["--from and --step must be positive durations"])
    now = time.time()
    times = step_times(now - span, now, every)
    store = Store(config.store)
    path = Path(out)

    def progress(done: int, total: int) -> None:
        if done == total or done % max(1, total // 10) == 0:
            log.info("backfill: %d of %d steps computed", done, total)

    try:
        with path.open("w", encoding="utf-8") as handle:
            result = backfill(store, Settings.from_config(config, shards), times, handle, progress)
    finally:
        store.close()
    print(
        f"{path}: {result.samples} samples of {result.series} series in {result.families} families, "
        f"{result.steps} steps from {_iso(times[0]) if times else '-'} to {_iso(times[-1]) if times else '-'} "
        f"({result.seconds:.1f} s)"
    )
    if blocks_dir:
        create_blocks(path, Path(blocks_dir))
        print(loading_instructions(Path(blocks_dir), math.ceil(span / 86400) + 30))
    else:
        print(
            f"Next: promtool tsdb create-blocks-from openmetrics --max-block-duration={MAX_BLOCK_DURATION} "
            f"{path} BLOCKS_DIR (or rerun with --prometheus-blocks BLOCKS_DIR), then copy the blocks into "
            "Prometheus' data directory."
        )
    return 0


def _iso(ts: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
