"""Configuration: every error names its key path; check-config lists them all and exits 2."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import self_signed
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.config import format_duration, json_schema, load_config, parse_config, parse_duration
from collector.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]

MINIMAL = """
sources:
  - name: gh
    kind: github
    token: ${GH_TOKEN}
    repositories: [contoso/web]
"""


def errors_of(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        parse_config(text, env or {})
    return exc.value.errors


def test_example_and_demo_configs_are_valid() -> None:
    for name in ("example.yaml", "demo.yaml"):
        config = load_config(ROOT / "config" / name, env={})
        assert config.sources, name
    example = load_config(ROOT / "config" / "example.yaml", env={"GITHUB_TOKEN": "ghp_x"})
    assert [s.kind for s in example.sources] == ["azure_boards", "azure_pipelines", "github", "azure_repos"]
    assert example.interval_of(example.sources[1]) == timedelta(minutes=10)
    assert example.interval_of(example.sources[0]) == timedelta(minutes=5)
    assert example.sources[2].token == "ghp_x"


def test_defaults_follow_the_contract() -> None:
    config = parse_config(MINIMAL, {"GH_TOKEN": "t0ken"})
    assert config.listen == "0.0.0.0:9184"
    assert config.store == "sqlite:///var/lib/cycletime/cycletime.db"
    assert config.poll_interval == timedelta(minutes=5) and config.history == timedelta(days=365)
    assert [format_duration(w) for w in config.windows] == ["7d", "30d", "90d"]
    assert config.quantiles == [0.5, 0.85, 0.95]
    assert config.sources[0].token == "t0ken" and config.secrets() == ["t0ken"]


def test_missing_environment_variable_names_the_key_path() -> None:
    assert errors_of(MINIMAL) == ["sources[0].token: environment variable GH_TOKEN is not set"]
    assert parse_config(MINIMAL.replace("${GH_TOKEN}", "${GH_TOKEN:-fallback}"), {}).sources[0].token == "fallback"


def test_every_error_is_listed_with_its_path() -> None:
    errors = errors_of("""
listen: nowhere
windows: [7d, soon]
quantiles: [0.5, 1.5]
colour: blue
sources:
  - name: a
    kind: github
    token: x
    repositories: [not-a-repo]
    deployments_from: carrier-pigeon
  - name: a
    kind: azure_boards
    organization_url: ftp://example
    project: P
    token: x
    team_from: astrology
  - name: c
    kind: jira
    token: x
""")
    joined = "\n".join(errors)
    for expected in (
        "listen:",
        "windows[1]: expected a duration",
        "quantiles[1]:",
        "colour: unknown key",
        "sources[0].repositories: 'not-a-repo' is not owner/repo",
        "sources[0].deployments_from:",
        "sources[1].organization_url:",
        "sources[1].team_from:",
        "sources[2]:",
    ):
        assert expected in joined, (expected, errors)
    assert len(errors) >= 9


def test_production_environment_regexes_must_compile() -> None:
    text = MINIMAL + "    production_environments: [production, '/prod-(eu/']\n"
    (error,) = errors_of(text, {"GH_TOKEN": "x"})
    assert error.startswith("sources[0].production_environments:") and "not a valid regular expression" in error
    ok = parse_config(MINIMAL + "    production_environments: ['/^prod-(eu|us)$/']\n", {"GH_TOKEN": "x"})
    assert ok.sources[0].production_environments == ["/^prod-(eu|us)$/"]


def test_duplicate_source_names_are_an_error() -> None:
    text = (
        MINIMAL
        + """
  - name: gh
    kind: github
    token: y
    repositories: [contoso/api]
"""
    )
    assert any("used twice" in e for e in errors_of(text, {"GH_TOKEN": "x"}))


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5m", 300), ("30d", 2592000), ("1.5h", 5400), ("90s", 90), ("250ms", 0.25), ("2w", 1209600), (60, 60)],
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("bad", ["5", "m5", "-3d", "0s", "", "five minutes", True])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("[1, 2]", "expected a mapping"),
        ("a: [unclosed", "invalid YAML at line"),
        ("just a string", "mapping"),
    ],
)
def test_not_a_config_at_all(text: str, message: str) -> None:
    (error,) = errors_of(text)
    assert message in error


def test_schema_json_is_generated_from_the_models() -> None:
    checked_in = json.loads((ROOT / "config" / "schema.json").read_text())
    assert checked_in == json.loads(json.dumps(json_schema())), "run `make schema`"
    assert checked_in["additionalProperties"] is False
    assert {"listen", "store", "poll_interval", "history", "windows", "quantiles", "sources"} <= set(
        checked_in["properties"]
    )


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "collector", *args], capture_output=True, text=True, env=env, timeout=60, cwd=ROOT
    )


def test_check_config_cli_exits_2_and_lists_every_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "windows: [soon]\nsources:\n  - name: x\n    kind: github\n    token: ${NOPE_NOT_SET}\n"
        "    repositories: [bad]\n"
    )
    result = run_cli("check-config", "--config", str(bad), env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert "windows[0]:" in result.stderr
    assert "sources[0].token: environment variable NOPE_NOT_SET is not set" in result.stderr
    assert "sources[0].repositories:" in result.stderr
    assert "Traceback" not in result.stderr
    ok = run_cli("check-config", "--config", str(ROOT / "config" / "example.yaml"))
    assert ok.returncode == 0 and "4 sources" in ok.stdout


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    result = run_cli("check-config", "--config", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2 and "cannot read" in result.stderr and "Traceback" not in result.stderr


yaml_ish = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20) | st.floats(allow_nan=True),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=200), yaml_ish.map(lambda v: json.dumps(v))))
def test_fuzzed_configs_fail_with_messages_not_tracebacks(text: str) -> None:
    try:
        parse_config(text, {})
    except ConfigError as exc:
        assert exc.errors and all(isinstance(e, str) and ": " in e for e in exc.errors)


@pytest.mark.parametrize("bare", ["5", "'5'", "300", "1.5"])
def test_a_duration_without_a_unit_asks_for_one(bare: str) -> None:
    (error,) = errors_of(f"poll_interval: {bare}\n" + MINIMAL, {"GH_TOKEN": "x"})
    number = bare.strip("'")
    assert (
        error == f"poll_interval: {number} has no unit: {number} seconds? write {number}s, {number}m, "
        f"{number}h or {number}d"
    )


def test_poll_intervals_under_30s_are_refused_unless_allowed() -> None:
    text = "poll_interval: 10s\n" + MINIMAL + "    poll_interval: 5s\n"
    errors = errors_of(text, {"GH_TOKEN": "x"})
    assert [e.split(":")[0] for e in errors] == ["poll_interval", "sources[0].poll_interval"]
    assert "10s is under the minimum of 30s" in errors[0] and "allow_short_poll_interval: true" in errors[0]
    allowed = parse_config("allow_short_poll_interval: true\n" + text, {"GH_TOKEN": "x"})
    assert allowed.interval_of(allowed.sources[0]).total_seconds() == 5
    assert parse_config("poll_interval: 30s\n" + MINIMAL, {"GH_TOKEN": "x"}).poll_interval == timedelta(seconds=30)
    assert "allow_short_poll_interval" in json_schema()["properties"]


def test_http_bounds_default_far_above_a_real_page_and_take_units() -> None:
    default = parse_config(MINIMAL, {"GH_TOKEN": "x"}).http
    assert default.request_deadline == timedelta(minutes=2) and default.max_response_bytes == 64 * 2**20
    text = "http: {request_deadline: 90s, max_response_bytes: %s}\n" + MINIMAL
    for size, expected in [("64MiB", 64 * 2**20), ("500KB", 500_000), ("1.5GiB", 3 * 2**29), (2048, 2048)]:
        http = parse_config(text % size, {"GH_TOKEN": "x"}).http
        assert http.max_response_bytes == expected and http.request_deadline == timedelta(seconds=90)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("request_deadline: 0s", "http.request_deadline: duration must be positive"),
        ("request_deadline: -5s", "http.request_deadline: expected a duration like 5m or 30d, got '-5s'"),
        ("request_deadline: 500ms", "http.request_deadline: 0.5s is under the minimum of 1s"),
        ("request_deadline: 120", "http.request_deadline: 120 has no unit: 120 seconds? write 120s"),
        ("request_deadline: 2 fortnights", "http.request_deadline: expected a duration like 5m or 30d"),
        ("max_response_bytes: 0", "http.max_response_bytes: size must be positive"),
        ("max_response_bytes: -1", "http.max_response_bytes: size must be positive"),
        ("max_response_bytes: 64Mb", "http.max_response_bytes: expected a size like 64MiB (units B, KB, KiB"),
        ("max_response_bytes: 64 MiB/s", "http.max_response_bytes: expected a size like 64MiB"),
        ("max_response_bytes: 100", "http.max_response_bytes: 100 bytes is under the minimum of 1KiB"),
        ("max_response_bytes: 1KB", "http.max_response_bytes: 1000 bytes is under the minimum of 1KiB"),
        ("max_response_bytes: 2.5", "http.max_response_bytes: 2.5 is not a whole number of bytes"),
        ("max_response_bytes: true", "http.max_response_bytes: expected a size like 64MiB or a number of bytes"),
        ("timeout: 5s", "http.timeout: unknown key"),
    ],
)
def test_http_bounds_are_validated(setting: str, message: str) -> None:
    errors = errors_of(f"http: {{{setting}}}\n" + MINIMAL, {"GH_TOKEN": "x"})
    assert len(errors) == 1 and errors[0].startswith(message), errors


def test_a_key_given_twice_is_an_error_naming_both_lines() -> None:
    (error,) = errors_of("listen: 127.0.0.1:9184\n" + MINIMAL + "    token: literal\n")
    assert "duplicate key 'token': first at line 6, again at line 8" in error
    (error,) = errors_of(MINIMAL + "listen: 0.0.0.0:1\nlisten: 0.0.0.0:2\n")
    assert error.startswith("<root>:") and "duplicate key 'listen': first at line 7, again at line 8" in error
    merged = parse_config(
        "sources:\n  - &gh {name: a, kind: github, token: x, repositories: [a/b]}\n  - <<: *gh\n    name: b\n", {}
    )
    assert [s.name for s in merged.sources] == ["a", "b"]  # a merge key then an override is not a duplicate


def tls_files(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = self_signed(folder)
    return Path(cert), Path(key)


def tls_config(cert: Path | str, key: Path | str) -> str:
    return MINIMAL.replace("${GH_TOKEN}", "x") + f"web:\n  tls:\n    cert_file: {cert}\n    key_file: {key}\n"


def test_tls_files_are_loaded_when_the_config_is(tmp_path: Path) -> None:
    cert, key = tls_files(tmp_path)
    assert parse_config(tls_config(cert, key), {}).web.tls is not None
    (error,) = errors_of(tls_config(tmp_path / "missing.pem", key))
    assert error == f"web.tls.cert_file: cannot read {tmp_path}/missing.pem: No such file or directory"
    errors = errors_of(tls_config(key, cert))
    assert errors[0].startswith(f"web.tls.cert_file: {key} holds a private key") and "swapped" in errors[0]
    assert errors[1].startswith(f"web.tls.key_file: {cert} holds a certificate") and "swapped" in errors[1]
    junk = tmp_path / "junk.pem"
    junk.write_text("not pem at all\n")
    (error,) = errors_of(tls_config(cert, junk))
    assert error.startswith(f"web.tls.key_file: {junk} is not a PEM private key")
    (tmp_path / "other").mkdir()
    _, other_key = tls_files(tmp_path / "other")
    (error,) = errors_of(tls_config(cert, other_key))
    assert error.startswith(f"web.tls.key_file: {other_key} does not match the certificate in {cert}")
    encrypted = tmp_path / "encrypted.pem"
    subprocess.run(
        ["openssl", "pkey", "-in", str(key), "-aes256", "-passout", "pass:secret", "-out", str(encrypted)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    (error,) = errors_of(tls_config(cert, encrypted))  # must not prompt for a passphrase on the terminal
    assert error == f"web.tls.key_file: {encrypted} is encrypted: the server needs an unencrypted key"


def test_check_config_and_serve_name_a_bad_tls_file_and_exit_2(tmp_path: Path) -> None:
    cert, key = tls_files(tmp_path)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(tls_config(key, cert))
    for command in ("check-config", "serve"):
        result = run_cli(command, "--config", str(cfg))
        assert result.returncode == 2, (command, result.stderr)
        assert f"web.tls.cert_file: {key} holds a private key" in result.stderr
        assert "Traceback" not in result.stderr


def test_source_kinds_come_from_their_modules_and_the_chart_knows_every_one() -> None:
    import json
    from pathlib import Path

    from collector.config import Config
    from collector.sources import SOURCES
    from collector.sources.registry import KINDS, load_kinds

    kinds = set(load_kinds())
    assert kinds == {"azure_boards", "azure_pipelines", "azure_repos", "github"} == set(SOURCES)
    for kind in KINDS.values():  # each kind's config model lives beside its source
        assert kind.config_model.__module__ == kind.source_class.__module__
    union = Config.model_json_schema()["$defs"]
    assert {name for name in union if name.endswith("Config")} >= {k.config_model.__name__ for k in KINDS.values()}
    chart = json.loads(
        (Path(__file__).resolve().parents[1] / "helm/cycletime-collector/values.schema.json").read_text()
    )
    enum = chart["properties"]["config"]["properties"]["sources"]["items"]["properties"]["kind"]["enum"]
    assert set(enum) == kinds
