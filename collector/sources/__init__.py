"""Source registry: adding a source is a module in this folder plus one line here."""

from __future__ import annotations

from collector.sources.base import Source

SOURCES: dict[str, type[Source]] = {}
