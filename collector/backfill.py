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
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from prometheus_client.core import Metric

from collector.compute import compute
from collector.config import Config, parse_duration
from collector.errors import CycletimeError
from collector.store import Store
from exporters.prometheus import Settings, figure_families

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
    """Metric points of many timestamps, grouped by family, then by series, in time order."""

    def __init__(self) -> None:
        #: family name → (type, help, series key → lines in time order)
        self._families: dict[str, tuple[str, str, dict[tuple[tuple[str, str], ...], list[str]]]] = {}

    def add(self, families: Iterable[Metric], timestamp: float) -> None:
        stamp = _number(timestamp) if timestamp % 1 else str(int(timestamp))
        for family in families:
            entry = self._families.get(family.name)
            if entry is None:
                entry = self._families[family.name] = (family.type, family.documentation, {})
            series = entry[2]
            for sample in family.samples:
                # a histogram's point is its buckets, count and sum: one series key without `le`
                key = tuple((k, v) for k, v in sample.labels.items() if k != "le")
                series.setdefault(key, []).append(
                    f"{sample.name}{_labels(sample.labels)} {_number(sample.value)} {stamp}\n")

    @property
    def series(self) -> int:
        return sum(len(entry[2]) for entry in self._families.values())

    @property
    def samples(self) -> int:
        return sum(len(lines) for entry in self._families.values() for lines in entry[2].values())

    def write(self, out: TextIO) -> None:
        for name, (kind, doc, series) in self._families.items():
            if not series:
                continue
            out.write(f"# HELP {name} {_escape(doc)}\n# TYPE {name} {kind}\n")
            for lines in series.values():
                out.writelines(lines)
        out.write("# EOF\n")


def backfill(store: Store, settings: Settings, times: Sequence[float], out: TextIO,
             progress: Callable[[int, int], None] | None = None) -> BackfillResult:
    """Write the figure families at each of ``times`` (ascending) to ``out`` as OpenMetrics."""
    started = time.monotonic()
    links = store.links()
    table = store.work_item_table(linked={link.work_item for link in links})
    changes, deployments = store.changes(), store.deployments()
    history = OpenMetricsHistory()
    for i, at in enumerate(times):
        figures = compute(table, changes, deployments, links, as_of=at)
        history.add(figure_families(figures, settings, at), at)
        if progress:
            progress(i + 1, len(times))
    history.write(out)
    return BackfillResult(len(times), len(history._families), history.series, history.samples,
                          time.monotonic() - started)


def create_blocks(openmetrics_file: Path, blocks_dir: Path) -> str:
    """Run ``promtool tsdb create-blocks-from openmetrics``; returns its output."""
    promtool = shutil.which("promtool")
    if not promtool:
        raise BackfillError("promtool is not on PATH: install Prometheus (it ships promtool) or run "
                            f"`promtool tsdb create-blocks-from openmetrics {openmetrics_file} {blocks_dir}` "
                            "where it is installed")
    blocks_dir.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics",
                             f"--max-block-duration={MAX_BLOCK_DURATION}", str(openmetrics_file), str(blocks_dir)],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BackfillError(f"promtool tsdb create-blocks-from openmetrics failed: "
                            f"{(result.stderr or result.stdout).strip()[-2000:]}")
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


def run(config: Config, since: str, step: str, out: str, blocks_dir: str | None) -> int:
    """``cycletime backfill``: write the file, optionally the blocks, and say how to load them."""
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
            result = backfill(store, Settings.from_config(config), times, handle, progress)
    finally:
        store.close()
    print(f"{path}: {result.samples} samples of {result.series} series in {result.families} families, "
          f"{result.steps} steps from {_iso(times[0]) if times else '-'} to {_iso(times[-1]) if times else '-'} "
          f"({result.seconds:.1f} s)")
    if blocks_dir:
        create_blocks(path, Path(blocks_dir))
        print(loading_instructions(Path(blocks_dir), math.ceil(span / 86400) + 30))
    else:
        print(f"Next: promtool tsdb create-blocks-from openmetrics --max-block-duration={MAX_BLOCK_DURATION} "
              f"{path} BLOCKS_DIR (or rerun with --prometheus-blocks BLOCKS_DIR), then copy the blocks into "
              "Prometheus' data directory.")
    return 0


def _iso(ts: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
