"""Source kinds register themselves here, as node_exporter's collectors do.

A kind is a module in ``collector/sources/`` that declares its config model and its source class
and calls :func:`register`. :func:`load_kinds` imports every module of the package once, so adding
a kind is adding its module: the config union, ``config/schema.json``, the runner and the CLI all
derive from :data:`KINDS`.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Any

#: kind name → its registration
KINDS: dict[str, Kind] = {}


@dataclass(frozen=True)
class Kind:
    name: str
    config_model: type[Any]
    source_class: type[Any]


def register(source_class: type[Any]) -> type[Any]:
    """Class decorator: ``source_class.kind`` names the kind, ``source_class.config_model`` its config."""
    name = source_class.kind
    existing = KINDS.get(name)
    if existing is not None and existing.source_class is not source_class:
        raise RuntimeError(
            f"source kind {name!r} is registered twice ({existing.source_class.__name__}, {source_class.__name__})"
        )
    KINDS[name] = Kind(name, source_class.config_model, source_class)
    return source_class


def load_kinds() -> dict[str, Kind]:
    """Import every module of ``collector.sources`` so each kind registers itself."""
    import collector.sources as package

    for module in pkgutil.iter_modules(package.__path__):
        if module.name != "registry":
            importlib.import_module(f"{package.__name__}.{module.name}")
    return KINDS
