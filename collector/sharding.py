"""Which shard owns what (docs/sharding.md): pure functions, no I/O.

A *scope* is what one shard polls and exports as a whole: (source, repository) for GitHub,
(source, project) for Azure Boards and Pipelines; each source kind says how its records and series
fall into scopes (``Source.scope_of``). Shard ``i`` of ``N`` owns the scopes whose stable hash is
``i`` mod ``N``: the first 8 bytes of SHA-1 of ``source/scope``, big-endian, the same in every
process and release, so a restart or a rolling update never moves a scope. The same hash keys the
scope's PostgreSQL advisory lock, held while the scope is polled.

Series labelled by the source alone (its health, its API requests) belong to the source's own
scope, :data:`SOURCE_SCOPE`, so exactly one shard exports them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from collector.errors import ConfigError

if TYPE_CHECKING:  # compute (and NumPy) is the exporter's; the sync path never loads it
    from collector.compute import Figures

#: the scope of what is labelled by the source alone (its self-metrics)
SOURCE_SCOPE = ""

#: figures keyed (source, …) by something other than a project or service: the source's own scope
SOURCE_KEYED = frozenset({"rejected"})

#: environment variables read when no flag is given (the Helm chart sets them)
SHARD_ENV, TOTAL_ENV = "CYCLETIME_SHARD", "CYCLETIME_TOTAL_SHARDS"
#: a StatefulSet pod's name ends with its ordinal: ``cycletime-3`` is shard 3
POD_NAME_ENVS = ("CYCLETIME_POD_NAME", "HOSTNAME")


def scope_hash(source: str, scope: str) -> int:
    """The scope's stable 64-bit hash (unsigned): first 8 bytes of SHA-1 of ``source/scope``."""
    return int.from_bytes(hashlib.sha1(f"{source}/{scope}".encode()).digest()[:8], "big")


def owner(source: str, scope: str, total: int) -> int:
    """The shard (0 … total-1) owning the scope."""
    return scope_hash(source, scope) % total


def lock_key(source: str, scope: str) -> int:
    """The scope's PostgreSQL advisory lock key: its hash as the signed 64-bit integer ``bigint`` holds."""
    value = scope_hash(source, scope)
    return value - (1 << 64) if value >= 1 << 63 else value


@dataclass(frozen=True)
class Shards:
    """This process's place among the shards; the default (0 of 1) owns everything."""

    shard: int = 0
    total: int = 1

    @property
    def sharded(self) -> bool:
        return self.total > 1

    def owns(self, source: str, scope: str) -> bool:
        return self.total == 1 or owner(source, scope, self.total) == self.shard

    def __str__(self) -> str:
        return f"shard {self.shard} of {self.total}"


def resolve(shard: int | None, total: int | None, environ: Mapping[str, str]) -> Shards:
    """``--shard``/``--total-shards``, else ``CYCLETIME_SHARD``/``CYCLETIME_TOTAL_SHARDS``; with more
    than one shard and no shard number, the trailing ``-<n>`` of ``CYCLETIME_POD_NAME`` (else
    ``HOSTNAME``), as a StatefulSet names its pods. Raises ConfigError on anything else."""
    if total is None:
        total = _number(environ, TOTAL_ENV)
    total = 1 if total is None else total
    if total < 1:
        raise ConfigError([f"total shards: {total} is not a positive number"])
    if shard is None:
        shard = _number(environ, SHARD_ENV)
    if shard is None and total > 1:
        for name in POD_NAME_ENVS:
            found = re.search(r"-(\d+)$", environ.get(name, ""))
            if found:
                shard = int(found.group(1))
                break
        else:
            raise ConfigError(
                [
                    f"total shards {total}: which shard is this? Give --shard, {SHARD_ENV}, or a pod "
                    f"name ending in -<ordinal> in {' or '.join(POD_NAME_ENVS)}"
                ]
            )
    shard = 0 if shard is None else shard
    if not 0 <= shard < total:
        raise ConfigError([f"shard {shard} is not one of 0 … {total - 1} (total shards {total})"])
    return Shards(shard, total)


def _number(environ: Mapping[str, str], name: str) -> int | None:
    text = environ.get(name, "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise ConfigError([f"{name}: {text!r} is not a whole number"]) from None


def check_store(shards: Shards, store_url: str) -> None:
    """More than one shard needs a store every shard reaches and that locks scopes: PostgreSQL."""
    if shards.sharded and not store_url.startswith(("postgresql", "postgres:")):
        scheme = store_url.split(":", 1)[0]
        raise ConfigError([f"store: {shards.total} shards need one shared PostgreSQL store, not {scheme}"])


@dataclass(frozen=True)
class Partition:
    """Which series this shard exports: those of the scopes it owns (every series is some scope's).

    ``scope_of``: source name → the scope a series' ``project`` or ``service`` label value belongs
    to (the source kind's ``scope_of``); a source not in it (no longer configured) has its own
    scope only.
    """

    shards: Shards = field(default_factory=Shards)
    scope_of: Mapping[str, Callable[[str], str]] = field(default_factory=dict)

    def owns_series(self, source: str, value: str) -> bool:
        if not self.shards.sharded:
            return True
        scope = self.scope_of.get(source)
        return self.shards.owns(source, scope(value) if scope else SOURCE_SCOPE)

    def owns_source(self, source: str) -> bool:
        """Series labelled by the source alone (self-metrics)."""
        return self.shards.owns(source, SOURCE_SCOPE)

    def figures(self, figures: Figures) -> Figures:
        """The figures of the series this shard exports; every value as computed from the whole
        store. Every label set starts (source, project) or (source, service)."""
        if not self.shards.sharded:
            return figures
        from collector.compute import Figures, Observations

        def mine(labels: tuple[str, ...]) -> bool:
            return self.owns_series(labels[0], labels[1])

        kept: dict[str, Any] = {}
        for f in dataclasses.fields(figures):
            value = getattr(figures, f.name)
            if isinstance(value, Observations):
                at = _scope_label(value.label_names)
                kept[f.name] = Observations(
                    value.label_names,
                    {k: v for k, v in value.by_labels.items() if self.owns_series(k[0], k[at])},
                )
            elif f.name in SOURCE_KEYED:
                kept[f.name] = type(value)({k: v for k, v in value.items() if self.owns_source(k[0])})
            else:
                kept[f.name] = type(value)({k: v for k, v in value.items() if mine(k)})
        return Figures(**kept)


def _scope_label(names: tuple[str, ...]) -> int:
    """Where a family's ``project`` or ``service`` label is (after ``source``)."""
    for i, name in enumerate(names):
        if name in ("project", "service"):
            return i
    raise ValueError(f"a series labelled {names} belongs to no scope")
