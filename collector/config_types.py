"""The building blocks of configuration models, shared by the top-level config and every source kind.

Each source kind declares its own config model (in its module under ``collector/sources/``) from
these pieces; ``collector.config`` assembles the union of all registered kinds.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w|y)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def parse_duration(value: Any) -> timedelta:
    """``5m``, ``30d``, ``1.5h`` (Prometheus-style units) or a number of seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("expected a duration like 5m or 30d")
    if isinstance(value, int | float):
        if value <= 0:
            raise ValueError("duration must be positive")
        return timedelta(seconds=value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
            if seconds <= 0:
                raise ValueError("duration must be positive")
            return timedelta(seconds=seconds)
    raise ValueError(f"expected a duration like 5m or 30d, got {value!r}")


def format_duration(value: timedelta) -> str:
    """The shortest exact unit form, used for the ``window`` label (``7d``, ``12h``)."""
    seconds = value.total_seconds()
    for unit in ("y", "w", "d", "h", "m", "s"):
        size = _UNIT_SECONDS[unit]
        if unit in ("y", "w"):
            continue  # windows read best in days: 90d, not 12w6d
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _config_duration(value: Any) -> timedelta:
    """In a config file a bare number is a mistake waiting to happen (``poll_interval: 5``): ask for the unit."""
    bare: object = value if isinstance(value, int | float) and not isinstance(value, bool) else None
    if isinstance(value, str) and re.fullmatch(r"\s*\d+(\.\d+)?\s*", value):
        bare = value.strip()
    if bare is not None:
        raise ValueError(f"{bare} has no unit: {bare} seconds? write {bare}s, {bare}m, {bare}h or {bare}d")
    return parse_duration(value)


Duration = Annotated[
    timedelta,
    BeforeValidator(_config_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^\d+(\.\d+)?(ms|s|m|h|d|w|y)$",
            "description": "duration: number + unit (ms, s, m, h, d, w, y), e.g. 5m, 30d",
        }
    ),
]

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$")
_SIZE_UNITS = {"B": 1, "KB": 10**3, "KiB": 2**10, "MB": 10**6, "MiB": 2**20, "GB": 10**9, "GiB": 2**30}


def parse_size(value: Any) -> int:
    """A number of bytes: an integer, or a number with a unit (``64MiB``, ``500KB``, ``1GiB``)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected a size like 64MiB or a number of bytes, got {value!r}")
    if isinstance(value, str):
        m = _SIZE.match(value)
        if not m:
            raise ValueError(f"expected a size like 64MiB (units B, KB, KiB, MB, MiB, GB, GiB), got {value!r}")
        size = float(m.group(1)) * _SIZE_UNITS[m.group(2) or "B"]
    else:
        size = float(value)
    if size <= 0:
        raise ValueError("size must be positive")
    if size != int(size):
        raise ValueError(f"{value!r} is not a whole number of bytes")
    return int(size)


ByteSize = Annotated[
    int,
    BeforeValidator(parse_size),
    WithJsonSchema(
        {
            "oneOf": [
                {"type": "integer", "minimum": 1},
                {"type": "string", "pattern": r"^\d+(\.\d+)?(B|KB|KiB|MB|MiB|GB|GiB)?$"},
            ],
            "description": "size: bytes, or a number + unit (B, KB, KiB, MB, MiB, GB, GiB), e.g. 64MiB",
        }
    ),
]

Name = Annotated[str, Field(pattern=r"^[a-zA-Z_][a-zA-Z0-9_-]*$", max_length=64)]


def _environment_patterns(value: list[str]) -> list[str]:
    """``/regex/`` entries must compile: a typo must fail at check-config, not match nothing."""
    for pattern in value:
        if len(pattern) >= 2 and pattern.startswith("/") and pattern.endswith("/"):
            try:
                re.compile(pattern[1:-1])
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a valid regular expression: {exc}") from None
    return value


EnvironmentPatterns = Annotated[list[str], AfterValidator(_environment_patterns)]


class ConfigModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfigBase(ConfigModel):
    kind: str
    name: Name = Field(description="Unique name; the `source` label of every metric.")
    poll_interval: Duration | None = Field(None, description="Overrides the global poll_interval.")
    token: str = Field(min_length=1, description="API token; use ${ENV_VAR}, never a literal secret.")

    def secrets(self) -> list[str]:
        """The secret values of this source, for the redactor."""
        return [self.token] if self.token else []

    def credential(self) -> str | None:
        """Whom the API counts this source's requests against: sources of one server with the same
        credential spend one rate budget (the runner gives them one). None: nothing to share."""
        return self.token or None
