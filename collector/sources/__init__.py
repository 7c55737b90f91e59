"""Source kinds: one module each, registered by itself (see ``registry.py``)."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "SOURCES":  # kind name → source class, for the runner
        from collector.sources.registry import load_kinds

        return {kind.name: kind.source_class for kind in load_kinds().values()}
    raise AttributeError(name)
