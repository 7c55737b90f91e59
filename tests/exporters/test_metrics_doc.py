"""docs/metrics.md lists every family the exporter publishes, so the page cannot fall behind."""

from __future__ import annotations

from pathlib import Path

from fixture_data import NOW, load
from prometheus_client.parser import text_string_to_metric_families

from collector.config import parse_config
from collector.figures import FigureCache, Settings
from collector.store import Store
from exporters.prometheus import MetricsCache, with_runtime

ROOT = Path(__file__).resolve().parents[2]


def test_every_published_family_is_documented(tmp_path: Path) -> None:
    config = parse_config(
        f"""
store: sqlite:///{tmp_path}/s.db
sources:
  - {{name: boards, kind: azure_boards, organization_url: "http://127.0.0.1:1/o", project: Fabrikam, token: t}}
  - {{name: pipelines, kind: azure_pipelines, organization_url: "http://127.0.0.1:1/o", project: Fabrikam, token: t}}
""",
        {},
    )
    store = Store(config.store)
    load(store)
    cache = MetricsCache(FigureCache(store, Settings.from_config(config), clock=NOW.timestamp))
    text = with_runtime(cache.exposition(), False).decode()
    families = {f.name for f in text_string_to_metric_families(text)}
    assert len(families) >= 20
    doc = (ROOT / "docs" / "metrics.md").read_text()
    published = {name for name in families if name.startswith("cycletime_")}
    missing = sorted(name for name in published if f"`{name}" not in doc)
    assert not missing, f"docs/metrics.md does not list: {missing}"
    assert "process_" in doc and "python_" in doc
