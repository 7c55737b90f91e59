"""Configuration: YAML with ``${ENV}`` substitution, validated with the key path in every error.

pydantic gives us typed objects, unknown-key errors (``extra="forbid"``) and a JSON schema
(``config/schema.json`` is generated from these models and checked by a test), so the schema, the
validation and the code cannot drift apart.
"""

from __future__ import annotations

import functools
import operator
import os
import re
import ssl
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import (
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from collector.config_types import (
    ByteSize,
    ConfigModel,
    Duration,
    SourceConfigBase,
)
from collector.config_types import format_duration as format_duration  # re-exported for callers
from collector.config_types import parse_duration as parse_duration
from collector.errors import ConfigError
from collector.sources.registry import KINDS, load_kinds

load_kinds()

# every registered source kind's config model, told apart by ``kind`` (to a type checker: their base)
if TYPE_CHECKING:
    SourceConfig = SourceConfigBase
else:
    SourceConfig = Annotated[
        functools.reduce(operator.or_, (k.config_model for k in KINDS.values())), Field(discriminator="kind")
    ]


class BasicAuthConfig(ConfigModel):
    username: str = Field(min_length=1)
    password: str = Field(min_length=1, description="Use ${ENV_VAR}.")


def _pem_blocks(path: str) -> set[str]:
    """The kinds of PEM block in a file (``CERTIFICATE``, ``PRIVATE KEY``…); ValueError if unreadable."""
    try:
        text = Path(path).read_bytes().decode("ascii", errors="replace")
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    return {m.group(1) for m in re.finditer(r"-----BEGIN ([A-Z0-9 ]+)-----", text)}


class TLSConfig(ConfigModel):
    """Checked when the config is loaded, so check-config catches a missing, swapped or broken file."""

    cert_file: str = Field(min_length=1, description="PEM certificate (chain) served on `listen`.")
    key_file: str = Field(min_length=1, description="PEM private key of cert_file.")

    @field_validator("cert_file")
    @classmethod
    def _certificate(cls, path: str) -> str:
        blocks = _pem_blocks(path)
        if "CERTIFICATE" in blocks:
            return path
        if any(b.endswith("PRIVATE KEY") for b in blocks):
            raise ValueError(f"{path} holds a private key, not a certificate: are cert_file and key_file swapped?")
        raise ValueError(f"{path} is not a PEM certificate (no -----BEGIN CERTIFICATE----- block)")

    @field_validator("key_file")
    @classmethod
    def _key(cls, path: str, info: ValidationInfo) -> str:
        blocks = _pem_blocks(path)
        if not any(b.endswith("PRIVATE KEY") for b in blocks):
            if "CERTIFICATE" in blocks:
                raise ValueError(f"{path} holds a certificate, not a private key: are cert_file and key_file swapped?")
            raise ValueError(f"{path} is not a PEM private key (no -----BEGIN PRIVATE KEY----- block)")
        cert = info.data.get("cert_file")
        if cert:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)

            def encrypted() -> bytes:  # without this OpenSSL would prompt on the terminal
                raise ValueError(f"{path} is encrypted: the server needs an unencrypted key")

            try:
                context.load_cert_chain(cert, path, password=encrypted)
            except ssl.SSLError as exc:
                problem = "does not match the certificate" if "KEY_VALUES_MISMATCH" in str(exc) else "cannot be used"
                raise ValueError(f"{path} {problem} in {cert}: {exc.reason or exc}") from None
            except OSError as exc:
                raise ValueError(f"cannot load {path}: {exc.strerror}") from None
        return path


class WebConfig(ConfigModel):
    """Protects /metrics and / the way Prometheus exporters' web config does; probes stay open."""

    basic_auth: BasicAuthConfig | None = None
    tls: TLSConfig | None = None


MIN_POLL_INTERVAL = timedelta(seconds=30)


class HttpConfig(ConfigModel):
    """Bounds on every answer a source API sends, so a hostile or broken server cannot hold a pass
    or the memory; the defaults are far above any real page (a few MB, seconds)."""

    request_deadline: Duration = Field(
        default=timedelta(seconds=120),
        description=(
            "The whole answer to one request must arrive within this (the 30s timeout is per read, so "
            "a server trickling a byte at a time is cut here); at least 1s."
        ),
    )
    max_response_bytes: ByteSize = Field(
        default=64 * 2**20,
        description="The largest answer read (decompressed); a bigger one fails its request. At least 1KiB.",
    )

    max_rate_limit_wait: Duration = Field(
        default=timedelta(hours=1),
        description=(
            "The longest a pass waits for a rate-limit window to reset (GitHub's is an hour); a longer "
            "wait ends the pass early, and the next pass resumes where it stopped."
        ),
    )

    @field_validator("request_deadline")
    @classmethod
    def _deadline(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=1):
            raise ValueError(f"{format_duration(value)} is under the minimum of 1s")
        return value

    @field_validator("max_response_bytes")
    @classmethod
    def _cap(cls, value: int) -> int:
        if value < 1024:
            raise ValueError(f"{value} bytes is under the minimum of 1KiB (1024): no real answer fits")
        return value


class Config(ConfigModel):
    listen: str = Field("0.0.0.0:9184", pattern=r"^\[?[\w.:-]*\]?:\d{1,5}$")
    store: str = Field(
        "sqlite:///var/lib/cycletime/cycletime.db",
        pattern=r"^(sqlite|postgresql)[+\w]*://",
        description="sqlite:///PATH or postgresql://USER:PASS@HOST/DB",
    )
    poll_interval: Duration = Field(
        timedelta(minutes=5),
        description="How often each source is polled; at least 30s unless allow_short_poll_interval is set.",
    )
    allow_short_poll_interval: bool = Field(
        False, description="Accept poll intervals under 30s (sandboxes and tests; real APIs' rate limits need minutes)."
    )
    history: Duration = timedelta(days=365)
    windows: list[Duration] = Field(default=[timedelta(days=7), timedelta(days=30), timedelta(days=90)], min_length=1)
    quantiles: list[Annotated[float, Field(gt=0, lt=1)]] = Field(default=[0.5, 0.85, 0.95], min_length=1)
    log_format: Literal["auto", "json", "text"] = "auto"
    max_label_values: int = Field(
        200,
        ge=1,
        le=100_000,
        description=(
            "Distinct values per label per source that /metrics publishes; the rarest beyond it fold into "
            "'other' (counted in cycletime_label_values_capped_total), so 10,000 area paths cannot blow up "
            "Prometheus."
        ),
    )
    web: WebConfig = WebConfig()
    http: HttpConfig = HttpConfig()
    sources: list[SourceConfig] = Field(min_length=1)

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, value: list[Any]) -> list[Any]:
        seen: set[str] = set()
        for source in value:
            if source.name in seen:
                raise ValueError(f"source name {source.name!r} is used twice")
            seen.add(source.name)
        return value

    def short_intervals(self) -> list[str]:
        """Poll intervals under the minimum, as config errors, unless explicitly allowed."""
        if self.allow_short_poll_interval:
            return []
        found = [("poll_interval", self.poll_interval)] + [
            (f"sources[{i}].poll_interval", s.poll_interval) for i, s in enumerate(self.sources) if s.poll_interval
        ]
        return [
            f"{path}: {format_duration(value)} is under the minimum of {format_duration(MIN_POLL_INTERVAL)} "
            "(every poll spends API rate limit); use a longer interval or set allow_short_poll_interval: true"
            for path, value in found
            if value < MIN_POLL_INTERVAL
        ]

    def interval_of(self, source: SourceConfigBase) -> timedelta:
        return source.poll_interval or self.poll_interval

    def secrets(self) -> list[str]:
        """Every secret value in the config, for the redactor."""
        values = [secret for s in self.sources for secret in s.secrets()]
        if self.web.basic_auth:
            values.append(self.web.basic_auth.password)
        values += re.findall(r"://[^:/@]+:([^@/]+)@", self.store)
        return values


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _substitute(node: Any, path: str, env: dict[str, str], errors: list[str]) -> Any:
    """Replace ${VAR} (or ${VAR:-default}) in every string, recording each missing variable."""
    if isinstance(node, dict):
        return {k: _substitute(v, f"{path}.{k}" if path else str(k), env, errors) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, f"{path}[{i}]", env, errors) for i, v in enumerate(node)]
    if isinstance(node, str):

        def replace(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            errors.append(f"{path or '<root>'}: environment variable {name} is not set")
            return ""

        return _ENV.sub(replace, node)
    return node


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in KINDS or part == "function-after[_repo_names(), list[str]]":
            continue  # pydantic's discriminator tag in the location is noise for users
        else:
            out += f".{part}" if out else str(part)
    return out or "<root>"


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML silently keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` then explicit keys is YAML's way of overriding, not a mistake
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in first_line:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"duplicate key {key!r}: first at line {first_line[key]}, again at line {line}",
                        key_node.start_mark,
                    )
                first_line[key] = line
            except TypeError:
                continue  # an unhashable key: the base constructor reports it
        return super().construct_mapping(node, deep=deep)


def parse_config(text: str, env: dict[str, str] | None = None) -> Config:
    """Validate a YAML document; raises ConfigError listing every problem with its key path."""
    env = dict(os.environ) if env is None else env
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError([f"<root>: invalid YAML{at}: {problem}"]) from None
    if raw is None:
        raise ConfigError(["<root>: the configuration is empty"])
    if not isinstance(raw, dict):
        raise ConfigError([f"<root>: expected a mapping of settings, got {type(raw).__name__}"])
    errors: list[str] = []
    raw = _substitute(raw, "", env, errors)
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        unset = {e.split(": ", 1)[0] for e in errors}  # an unset variable explains its key's other errors
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            if _loc(err["loc"]) not in unset:
                errors.append(f"{_loc(err['loc'])}: {msg}")
        raise ConfigError(errors) from None
    errors += config.short_intervals()
    if errors:
        raise ConfigError(errors)
    return config


def load_config(path: str | Path, env: dict[str, str] | None = None) -> Config:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"<file>: cannot read {path}: {exc.strerror}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"<file>: {path} is not UTF-8 text"]) from None
    return parse_config(text, env)


def json_schema() -> dict[str, Any]:
    schema = Config.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "cycletime-collector configuration"
    return schema


def __getattr__(name: str) -> Any:
    """Source kinds' config models by class name (``collector.config.GitHubConfig``), for callers
    that predate per-kind modules; the models themselves live beside their sources."""
    for kind in KINDS.values():
        if kind.config_model.__name__ == name:
            return kind.config_model
    raise AttributeError(name)
