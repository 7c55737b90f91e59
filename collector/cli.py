"""``cycletime`` command line (see README "Command line"). Exit codes: 0 ok, 1 runtime failure, 2 usage or config."""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from collector.config import Config, load_config
from collector.errors import ConfigError, CycletimeError, StoreError
from collector.http import REDACT
from collector.logs import setup_logging

log = logging.getLogger("cycletime")

#: on SIGTERM, how long running passes get to reach a batch boundary before the process exits anyway
STOP_GRACE_SECONDS = 3.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cycletime", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--log-format",
        choices=["auto", "json", "text"],
        default=None,
        help="log as JSON lines or text (default: text on a terminal, JSON otherwise)",
    )
    common.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in (
        ("serve", "poll on schedule and serve /metrics"),
        ("sync", "one pass over every source"),
        ("metrics", "print the exposition computed from the store"),
        ("check-config", "validate the configuration"),
    ):
        p = sub.add_parser(name, help=text, parents=[common], formatter_class=_Help)
        p.add_argument("--config", required=True, metavar="FILE", help="the YAML configuration")
        _shard_arguments(p)
        if name in ("sync", "serve"):
            p.add_argument(
                "--wait",
                action="store_true",
                help="wait for another process writing to the same store to finish (default: refuse)",
            )
        if name == "metrics":
            p.add_argument(
                "--at",
                metavar="TIME",
                type=_parse_at,
                help="compute every figure as of TIME: ISO 8601 (2026-06-30T00:00Z) or a duration "
                "before now (-30d); default: now",
            )
    bf = sub.add_parser(
        "backfill",
        help="the figures of past days as OpenMetrics for promtool (history in Prometheus)",
        parents=[common],
        formatter_class=_Help,
    )
    bf.add_argument("--config", required=True, metavar="FILE", help="the YAML configuration")
    _shard_arguments(bf)
    bf.add_argument("--from", dest="since", default="365d", metavar="DURATION", help="how far back (default 365d)")
    bf.add_argument("--step", default="1d", metavar="DURATION", help="one sample per series per step (default 1d)")
    bf.add_argument("--out", required=True, metavar="FILE", help="OpenMetrics file to write")
    bf.add_argument(
        "--prometheus-blocks", metavar="DIR", help="also run `promtool tsdb create-blocks-from openmetrics` into DIR"
    )
    sb = sub.add_parser(
        "sandbox",
        help="local Azure DevOps + GitHub API server with a seeded organisation",
        parents=[common],
        formatter_class=_Help,
    )
    sb.add_argument("--host", default="127.0.0.1", help="address to listen on")
    sb.add_argument("--port", type=int, default=8089, help="port to listen on")
    sb.add_argument("--seed", type=int, default=7, help="seed of the generated organisation")
    sb.add_argument("--work-items", type=int, default=600, help="work items per half (Azure Boards, GitHub)")
    sb.add_argument("--fault-rate", type=float, default=0.0, help="fraction of API requests answered with a fault")
    sb.add_argument("--malformed", type=int, default=0, help="malformed records mixed into each API's data")
    sb.add_argument(
        "--latency",
        type=_latency,
        default=0.0,
        metavar="DURATION",
        help="added to every API answer, ±20%% jitter (seeded), like a network round trip: e.g. 50ms; default none",
    )
    sb.add_argument(
        "--github-repos",
        type=int,
        default=0,
        help="GitHub: this many more repositories in the organisation (mostly empty, archived or forks)",
    )
    sb.add_argument("--truth", metavar="FILE", help="write the ground truth as JSON and keep serving")
    sb.add_argument(
        "--activity",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="add live activity (new items, changes, deployments) every SECONDS; 0: none",
    )
    return parser


def _shard_arguments(parser: argparse.ArgumentParser) -> None:
    """``--shard``/``--total-shards`` (docs/sharding.md); the defaults come from the environment."""
    parser.add_argument(
        "--shard",
        type=int,
        metavar="I",
        help="this replica's shard, 0 … N-1; default: CYCLETIME_SHARD, else the -<n> ending "
        "CYCLETIME_POD_NAME or HOSTNAME (a StatefulSet pod's ordinal)",
    )
    parser.add_argument(
        "--total-shards",
        type=int,
        metavar="N",
        help="how many shards share the (PostgreSQL) store; default: CYCLETIME_TOTAL_SHARDS, else 1",
    )


class _Help(argparse.HelpFormatter):
    """Every option shows its default, unless its text already says it or there is none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            "default" in text
            or action.default is None
            or action.default is False
            or action.default == argparse.SUPPRESS
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)".strip()


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("cycletime-collector")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _parse_at(value: str) -> float:
    """``--at``: an ISO 8601 time (UTC when it has no offset) or ``-<duration>`` before now."""
    from datetime import UTC, datetime

    from collector.config import parse_duration

    text = value.strip()
    try:
        if text.startswith("-"):
            return datetime.now(UTC).timestamp() - parse_duration(text[1:]).total_seconds()
        when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except (ValueError, TypeError) as exc:
        raise argparse.ArgumentTypeError(
            f"{value!r} is neither an ISO 8601 time nor -<duration> (e.g. -30d): {exc}"
        ) from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _latency(value: str) -> float:
    """``--latency``: a duration (``50ms``, ``0.2s``) or 0, in seconds."""
    from collector.config import parse_duration

    if value.strip() in ("0", "0s", "0ms"):
        return 0.0
    try:
        return parse_duration(value).total_seconds()
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ConfigError as exc:
        print(f"{getattr(args, 'config', 'config')}: configuration is invalid:", file=sys.stderr)
        for err in exc.errors:
            print(f"  {REDACT(err)}", file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"cycletime: store: {REDACT(exc)}", file=sys.stderr)
        return 1
    except CycletimeError as exc:
        print(f"cycletime: {REDACT(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "sandbox":
        setup_logging(args.log_format or "auto", logging.DEBUG if args.verbose else logging.INFO)
        return _sandbox(args)
    config = load_config(args.config)
    from collector.http import REDACT as redactor

    for secret in config.secrets():
        redactor.add(secret)
    setup_logging(args.log_format or config.log_format, logging.DEBUG if args.verbose else logging.INFO)
    shards = _shards(args, config)
    if args.command == "check-config":
        print(
            f"{args.config}: ok ({len(config.sources)} sources: "
            + ", ".join(f"{s.name} ({s.kind})" for s in config.sources)
            + ")"
            + (f"; {shards}" if shards.sharded else "")
        )
        return 0
    if args.command == "metrics":
        return _metrics(config, args.at, args.config, shards)
    if args.command == "backfill":
        from collector.backfill import run

        return run(config, args.since, args.step, args.out, args.prometheus_blocks, shards)
    if args.command == "sync":
        return _sync(config, args.wait, shards)
    return _serve(config, args.wait, shards)


def _shards(args: argparse.Namespace, config: Config) -> Any:
    """This process's shard (flags, else the environment); more than one needs PostgreSQL."""
    import os

    from collector.sharding import check_store, resolve

    shards = resolve(args.shard, args.total_shards, os.environ)
    check_store(shards, config.store)
    return shards


def _open_store(config: Config) -> Any:
    from collector.store import Store

    return Store(config.store)


def _sqlite_path(url: str) -> Path | None:
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        return Path(url.removeprefix("sqlite:///"))
    return None


def _metrics(config: Config, at: float | None = None, config_file: str = "FILE", shards: Any = None) -> int:
    from collector.figures import FigureCache, Settings
    from exporters.prometheus import MetricsCache

    nothing = f"cycletime: nothing synced yet: run cycletime sync --config {config_file}"
    path = _sqlite_path(config.store)
    if path is not None and (not path.is_file() or path.stat().st_size == 0):
        print(nothing, file=sys.stderr)  # opening it would create an empty store
        return 1
    store = _open_store(config)
    if not store.statuses() and not store.record_counts():
        print(nothing, file=sys.stderr)
        return 1
    figures = FigureCache(store, Settings.from_config(config, shards), as_of=at)
    sys.stdout.buffer.write(MetricsCache(figures).exposition())
    return 0


def _sync(config: Config, wait: bool = False, shards: Any = None) -> int:
    from collector.progress import Progress
    from collector.runner import Runner
    from collector.sharding import Shards

    shards = shards or Shards()
    store = _open_store(config)
    store.acquire_writer(_purpose("cycletime sync", shards), wait=wait, shared=shards.sharded)
    with Progress([s.name for s in config.sources]) as progress:
        runner = Runner(config, store, progress=progress.advance, plan=progress.plan, shards=shards)
        freeze_startup_heap()
        results = runner.run_all(progress.start, lambda result: progress.finish(result.source, result.ok))
    failed = [r for r in results if not r.ok]
    for r in failed:
        print(f"cycletime sync: source {r.source} failed: {r.error}", file=sys.stderr)
    return 1 if failed else 0


def freeze_startup_heap() -> None:
    """Keep what startup built (modules, the config, the store's tables, the sources) out of the
    garbage collector's full collections: it lives as long as the process, yet each full
    collection walked all of it again. A sync decoding thousands of pages sets off a few full
    collections per source: at 10,000 work items they cost ~1.2 CPU s with the startup heap and
    ~0.4 s without it (``bench_throughput.py``). Objects made later are collected as before.

    The youngest generation is collected every 10,000 new container objects instead of 700: a
    decoded page is thousands of dicts that live until the page is stored, so most young
    collections found nothing to free. GC during a 10k sync replayed offline 0.27-0.36 ->
    0.10-0.13 CPU s (``benchmarks/replay_sync.py``); the cycles it frees wait a little longer."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(10_000, older, oldest)


def _purpose(command: str, shards: Any) -> str:
    return f"{command}, {shards}" if shards.sharded else command


def _serve(config: Config, wait: bool = False, shards: Any = None) -> int:
    from collector.figures import FigureCache, Settings
    from collector.runner import Runner
    from collector.scheduler import build_scheduler
    from collector.sharding import Shards
    from exporters.prometheus import MetricsCache, shard_families
    from exporters.web import ExporterApp, serve_http

    shards = shards or Shards()
    store = _open_store(config)
    store.acquire_writer(_purpose("cycletime serve", shards), wait=wait, shared=shards.sharded)
    stop = threading.Event()
    runner = Runner(config, store, stop=stop, shards=shards)
    freeze_startup_heap()
    cache = MetricsCache(
        FigureCache(store, Settings.from_config(config, shards)),
        lambda: shard_families(shards, runner.skipped_scopes),
    )
    if shards.sharded:
        log.info("running as %s: polling and exporting the scopes it owns", shards)
    cache.refresh(force=True)
    app = ExporterApp(cache, store, config)
    tls = (config.web.tls.cert_file, config.web.tls.key_file) if config.web.tls else None
    server = serve_http(app, config.listen, tls)
    scheme = "https" if tls else "http"
    log.info("serving %s://%s/metrics with %d sources", scheme, config.listen, len(config.sources))

    def after_pass(_result: object) -> None:
        cache.refresh()

    scheduler = build_scheduler(runner, after_pass)
    scheduler.add_job(cache.refresh, "interval", seconds=60, id="refresh", max_instances=1, coalesce=True)

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s; stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    scheduler.start()
    try:
        while not stop.wait(1.0):
            pass
    finally:
        # Sources check the stop flag between batches and each batch commits in one transaction.
        # A pass still blocked in a network call after the grace period is abandoned with the
        # process: its batch was never committed, so the store holds nothing half-written.
        still_running = scheduler.stop(grace=STOP_GRACE_SECONDS)
        server.shutdown()
        if still_running:
            log.warning(
                "stopped without waiting for %s (blocked in a network call; its uncommitted batch is "
                "discarded and read again next time)",
                ", ".join(still_running),
            )
        else:
            store.close()
            log.info("stopped")
    return 0


def _live_activity(sandbox: Any, every: float, stop: threading.Event) -> None:
    """One step of new work, changes and deployments every ``every`` seconds, until stopped."""
    while not stop.wait(every):
        added = sandbox.add_activity(1)
        counts = {
            f"{api} {what}": len(ids) for api in ("azure", "github") for what, ids in added[api][0].items() if ids
        }
        log.info("sandbox activity: %s", ", ".join(f"{n} {what}" for what, n in counts.items()))


def _sandbox(args: argparse.Namespace) -> int:
    from pathlib import Path

    try:
        from sandbox.app import Sandbox, SandboxOptions
    except ImportError:
        print(
            "cycletime sandbox: the sandbox is a development tool, not part of this installation; from a "
            "source checkout: pip install -e ./sandbox (make demo and make test do)",
            file=sys.stderr,
        )
        return 2

    options = SandboxOptions(
        seed=args.seed,
        work_items=args.work_items,
        fault_rate=args.fault_rate,
        malformed=args.malformed,
        latency=args.latency,
        github_repos=args.github_repos,
    )
    sandbox = Sandbox(options, host=args.host, port=args.port)
    if args.truth:
        sandbox.write_truth(Path(args.truth))
    print(f"sandbox listening on {sandbox.url}", flush=True)
    print(f"  azure devops organization_url: {sandbox.azure_url}", flush=True)
    print(f"  github base_url:               {sandbox.github_url}", flush=True)
    if args.latency > 0:
        print(f"  latency:                       {args.latency * 1000:g} ms ±20% per request", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    sandbox.start()
    if args.activity > 0:
        threading.Thread(
            target=_live_activity, args=(sandbox, args.activity, stop), name="activity", daemon=True
        ).start()
        print(f"  live activity:                 one step every {args.activity:g} s", flush=True)
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()
    return 0
