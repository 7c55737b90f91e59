"""helm/cycletime-collector: lint, render variants, Kubernetes schema validation, concrete properties."""

from __future__ import annotations

import base64
import json
import shutil
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml

from .promql import CHART_DIR, GRAFANA_DIR, load_rules, run_promtool

RELEASE = "ct"
NAMESPACE = "monitoring"
FULLNAME = "ct-cycletime-collector"
CORE_KINDS = {
    "Deployment",
    "StatefulSet",
    "PodDisruptionBudget",
    "Service",
    "ConfigMap",
    "Secret",
    "PersistentVolumeClaim",
    "ServiceAccount",
    "Job",
}
HEADLESS = f"{FULLNAME}-headless"
PG_URL = "postgresql://ct:pw@db:5432/cycletime"
#: oldest supported (Chart.yaml kubeVersion) and newest schemas shipped with kubernetes-validate
KUBE_VERSIONS = ["1.25.0", kubernetes_validate.latest_version()]

SOURCES = [
    {
        "name": "boards",
        "kind": "azure_boards",
        "organization_url": "https://dev.azure.com/contoso",
        "project": "Fabrikam",
        "token": "${AZURE_DEVOPS_TOKEN}",
        "team_from": "area_path",
    },
    {"name": "github", "kind": "github", "token": "${GITHUB_TOKEN}", "repositories": ["contoso/web", "contoso/api"]},
]
TOKENS = {"AZURE_DEVOPS_TOKEN": "azdo-secret-value", "GITHUB_TOKEN": "ghp_secret_value"}
WITH_SOURCES = {"config": {"sources": SOURCES}, "secret": {"tokens": TOKENS}}
#: the chart's defaults plus the one thing it cannot default: a source
MINIMAL = {"config": {"sources": [SOURCES[1]]}}

VARIANTS: dict[str, dict[str, Any]] = {
    "default": MINIMAL,
    "sources+tokens": WITH_SOURCES,
    "existingSecret": {"config": {"sources": SOURCES}, "secret": {"existingSecret": "my-tokens"}},
    "postgresql-url": {**WITH_SOURCES, "postgresql": {"url": PG_URL}},
    "postgresql-existingSecret": {
        "config": {"sources": SOURCES},
        "secret": {"existingSecret": "my-tokens"},
        "postgresql": {"existingSecret": "db", "existingSecretKey": "dsn"},
    },
    "no-persistence": {**WITH_SOURCES, "persistence": {"enabled": False}},
    "existingClaim": {**WITH_SOURCES, "persistence": {"existingClaim": "old-data"}},
    "rule-only": {**MINIMAL, "prometheusRule": {"enabled": True}},
    "tls": {
        "config": {
            "sources": SOURCES,
            "web": {"tls": {"cert_file": "/etc/cycletime-tls/tls.crt", "key_file": "/etc/cycletime-tls/tls.key"}},
        },
        "secret": {"tokens": TOKENS},
        "extraVolumes": [{"name": "tls", "secret": {"secretName": "cycletime-tls"}}],
        "extraVolumeMounts": [{"name": "tls", "mountPath": "/etc/cycletime-tls", "readOnly": True}],
        "serviceMonitor": {"enabled": True, "endpointConfig": {"tlsConfig": {"insecureSkipVerify": True}}},
    },
    "extra-volumes": {
        **WITH_SOURCES,
        "extraVolumes": [
            {"name": "ca-bundle", "configMap": {"name": "corporate-ca"}},
            {"name": "tls", "secret": {"secretName": "cycletime-tls"}},
        ],
        "extraVolumeMounts": [
            {"name": "ca-bundle", "mountPath": "/etc/ssl/corporate", "readOnly": True},
            {"name": "tls", "mountPath": "/etc/cycletime-tls", "readOnly": True},
        ],
        "extraEnv": [{"name": "REQUESTS_CA_BUNDLE", "value": "/etc/ssl/corporate/ca.crt"}],
    },
    "backfill": {**WITH_SOURCES, "backfill": {"enabled": True, "from": "180d", "ttlSecondsAfterFinished": 3600}},
    "backfill-postgresql": {
        **WITH_SOURCES,
        "postgresql": {"url": "postgresql://ct:pw@db:5432/cycletime"},
        "backfill": {"enabled": True, "persistence": {"existingClaim": "prom-backfill"}},
    },
    "monitoring-on": {
        **WITH_SOURCES,
        "serviceMonitor": {"enabled": True, "additionalLabels": {"release": "kps"}},
        "prometheusRule": {"enabled": True},
        "dashboards": {"enabled": True},
    },
    "monitoring-on-custom": {
        **WITH_SOURCES,
        "serviceMonitor": {
            "enabled": True,
            "stableInstanceLabel": False,
            "endpointConfig": {
                "basicAuth": {"username": {"name": "a", "key": "u"}, "password": {"name": "a", "key": "p"}}
            },
        },
        "prometheusRule": {
            "enabled": True,
            "thresholds": {"changeFailureRate": 0.25, "staleAfterSeconds": 3900, "sourceDownFor": "30m"},
        },
        "dashboards": {"enabled": True, "namespace": "grafana", "annotations": {"grafana_folder": "Delivery"}},
    },
    "sharded": {
        **WITH_SOURCES,
        "postgresql": {"url": PG_URL},
        "sharding": {"enabled": True, "replicas": 3},
        "serviceMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
    },
    "sharded-existingSecret-backfill": {
        "config": {"sources": SOURCES},
        "secret": {"existingSecret": "my-tokens"},
        "postgresql": {"existingSecret": "db", "existingSecretKey": "dsn"},
        "sharding": {"enabled": True, "podDisruptionBudget": {"maxUnavailable": "50%"}},
        "backfill": {"enabled": True},
    },
}


@cache
def render(variant: str) -> tuple[dict[str, Any], ...]:
    with helm_python.Chart.load(CHART_DIR) as chart:
        manifests = chart.render(VARIANTS[variant], name=RELEASE, namespace=NAMESPACE)
    docs = []
    for path, text in sorted(manifests.items()):
        if path.endswith(".txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return tuple(docs)


def notes(values: dict[str, Any]) -> str:
    with helm_python.Chart.load(CHART_DIR) as chart:
        manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE)
    return next(v for k, v in manifests.items() if k.endswith("NOTES.txt"))


def by_kind(variant: str, kind: str) -> list[dict[str, Any]]:
    return [d for d in render(variant) if d["kind"] == kind]


def one(variant: str, kind: str) -> dict[str, Any]:
    found = by_kind(variant, kind)
    assert len(found) == 1, f"{variant}: expected one {kind}, got {len(found)}"
    return found[0]


def workload(variant: str) -> dict[str, Any]:
    """The collector's Deployment, or its StatefulSet when sharded: exactly one of them."""
    found = [d for d in render(variant) if d["kind"] in {"Deployment", "StatefulSet"}]
    assert len(found) == 1, f"{variant}: expected a Deployment or a StatefulSet, got {[d['kind'] for d in found]}"
    return found[0]


def container(variant: str) -> dict[str, Any]:
    return workload(variant)["spec"]["template"]["spec"]["containers"][0]


def config_of(variant: str) -> dict[str, Any]:
    return yaml.safe_load(one(variant, "ConfigMap")["data"]["config.yaml"]) if variant else {}


def env(variant: str) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container(variant).get("env", [])}


def volumes(variant: str) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in workload(variant)["spec"]["template"]["spec"]["volumes"]}


# --------------------------------------------------------------------------- lint and schemas


def test_lint_strict() -> None:
    report = helm_python.lint(CHART_DIR, MINIMAL, strict=True)
    assert report["errors"] == [], report
    assert not [m for m in report["messages"] if m["severity"] >= 2], report


@pytest.mark.parametrize("values", [{}, {"config": {"sources": []}}, {"config": {"sources": None}}])
def test_without_a_source_the_chart_fails_fast(values: dict[str, Any]) -> None:
    """`helm install` stops at the schema, naming the key, instead of deploying a pod that crash-loops."""
    with (
        helm_python.Chart.load(CHART_DIR) as chart,
        pytest.raises(helm_python.HelmValuesError, match=r"/config(/sources)?'.*(minItems|'sources')"),
    ):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)
    assert helm_python.lint(CHART_DIR, values, strict=True)["errors"]


def test_without_a_source_and_schema_validation_skipped_the_template_says_what_to_do(tmp_path: Path) -> None:
    unchecked = tmp_path / "chart"
    shutil.copytree(CHART_DIR, unchecked)
    (unchecked / "values.schema.json").unlink()  # as `helm install --skip-schema-validation` would
    with (
        helm_python.Chart.load(unchecked) as chart,
        pytest.raises(helm_python.HelmError, match=r"config\.sources is empty.*chart README"),
    ):
        chart.render({"config": {"sources": []}}, name=RELEASE, namespace=NAMESPACE)


def test_lint_strict_with_every_variant() -> None:
    for name, values in VARIANTS.items():
        report = helm_python.lint(CHART_DIR, values, strict=True)
        assert report["errors"] == [] and not [m for m in report["messages"] if m["severity"] >= 2], (name, report)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_core_resources_match_kubernetes_schemas(variant: str, kube_version: str) -> None:
    docs = render(variant)
    kinds = {d["kind"] for d in docs}
    assert {"Service", "ConfigMap"} <= kinds and len(kinds & {"Deployment", "StatefulSet"}) == 1
    for doc in docs:
        if doc["kind"] in CORE_KINDS:
            kubernetes_validate.validate(doc, kube_version, strict=True)
        else:
            assert doc["apiVersion"] == "monitoring.coreos.com/v1", doc["kind"]
        assert doc["metadata"]["namespace"] in {NAMESPACE, "grafana"}


def test_every_resource_has_the_common_labels() -> None:
    for variant in VARIANTS:
        for doc in render(variant):
            labels = doc["metadata"]["labels"]
            assert labels["app.kubernetes.io/instance"] == RELEASE
            assert labels["app.kubernetes.io/name"] == "cycletime-collector"


def test_schema_rejects_bad_values() -> None:
    with helm_python.Chart.load(CHART_DIR) as chart:
        chart.validate_schema(VARIANTS["monitoring-on-custom"])
        for bad in (
            {"config": {"store": "sqlite:///x"}},
            {"config": {"listen": ":1"}},
            {"typo": 1},
            {"prometheusRule": {"thresholds": {"changeFailureRate": 1.5}}},
            {"config": {"sources": [{"name": "x", "kind": "jira"}]}},
            {"postgresql": {"url": "mysql://x"}},
            {"persistence": {"size": "lots"}},
        ):
            with pytest.raises(helm_python.HelmValuesError):
                chart.validate_schema(bad)


def with_http(http: dict[str, Any]) -> dict[str, Any]:
    return {**WITH_SOURCES, "config": {**WITH_SOURCES["config"], "http": http}}


def test_schema_checks_the_http_bounds_as_the_collector_does() -> None:
    with helm_python.Chart.load(CHART_DIR) as chart:
        for good in ({"request_deadline": "90s", "max_response_bytes": "128MiB"}, {"max_response_bytes": 1048576}):
            chart.validate_schema(with_http(good))
        for bad in (
            {"request_deadline": 120},
            {"max_response_bytes": "64 parsecs"},
            {"max_response_bytes": 100},
            {"timeout": "5s"},
        ):
            with pytest.raises(helm_python.HelmValuesError):
                chart.validate_schema(with_http(bad))


# --------------------------------------------------------------------------- Deployment


def test_deployment_defaults() -> None:
    dep = one("default", "Deployment")
    spec = dep["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}  # SQLite on the ReadWriteOnce PVC
    pod = spec["template"]["spec"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    c = container("default")
    assert c["args"] == ["serve", "--config", "/etc/cycletime/config.yaml"]
    assert c["image"] == "ghcr.io/cycletime-collector/cycletime-collector:0.1.0"
    assert c["ports"] == [{"name": "metrics", "containerPort": 9184, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    # security
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    # volumes: config, /tmp emptyDir, data on the PVC
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts == {"config": "/etc/cycletime", "tmp": "/tmp", "data": "/var/lib/cycletime"}
    vols = volumes("default")
    assert "emptyDir" in vols["tmp"]
    assert vols["config"]["configMap"]["name"] == f"{FULLNAME}-config"
    assert vols["data"]["persistentVolumeClaim"]["claimName"] == f"{FULLNAME}-data"
    pvc = one("default", "PersistentVolumeClaim")
    assert pvc["metadata"]["name"] == f"{FULLNAME}-data"
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    # no tokens configured: no Secret, no envFrom
    assert by_kind("default", "Secret") == []
    assert "envFrom" not in c
    assert dep["spec"]["template"]["metadata"]["annotations"]["checksum/config"]


def test_extra_volumes_for_certificates_on_a_read_only_root() -> None:
    """A CA bundle and the serving certificate come from a ConfigMap and a Secret, beside the chart's own."""
    v = "extra-volumes"
    vols = volumes(v)
    assert vols["ca-bundle"] == {"name": "ca-bundle", "configMap": {"name": "corporate-ca"}}
    assert vols["tls"] == {"name": "tls", "secret": {"secretName": "cycletime-tls"}}
    assert {"config", "tmp", "data"} <= vols.keys()
    mounts = {m["name"]: m for m in container(v)["volumeMounts"]}
    assert mounts["ca-bundle"] == {"name": "ca-bundle", "mountPath": "/etc/ssl/corporate", "readOnly": True}
    assert mounts["tls"]["mountPath"] == "/etc/cycletime-tls"
    assert {"config", "tmp", "data"} <= mounts.keys()
    assert env(v)["REQUESTS_CA_BUNDLE"] == {"name": "REQUESTS_CA_BUNDLE", "value": "/etc/ssl/corporate/ca.crt"}
    assert env(v)["TMPDIR"]["value"] == "/tmp"


def test_probes_and_scrapes_switch_to_https_with_web_tls() -> None:
    c = container("tls")
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics", "scheme": "HTTPS"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics", "scheme": "HTTPS"}
    assert c["livenessProbe"]["periodSeconds"] == 20  # the rest of the probe is the values' own
    assert config_of("tls")["web"]["tls"]["cert_file"] == "/etc/cycletime-tls/tls.crt"
    (endpoint,) = one("tls", "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["scheme"] == "https" and endpoint["tlsConfig"] == {"insecureSkipVerify": True}
    # without TLS the probes and the scrape stay plain HTTP
    assert "scheme" not in container("sources+tokens")["livenessProbe"]["httpGet"]
    assert "scheme" not in one("monitoring-on", "ServiceMonitor")["spec"]["endpoints"][0]


def test_an_explicit_probe_scheme_wins() -> None:
    values = {**VARIANTS["tls"], "livenessProbe": {"httpGet": {"path": "/healthz", "port": 9185, "scheme": "HTTP"}}}
    with helm_python.Chart.load(CHART_DIR) as chart:
        manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE)
    deployment = yaml.safe_load(manifests["cycletime-collector/templates/deployment.yaml"])
    probe = deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]
    assert probe["httpGet"] == {"path": "/healthz", "port": 9185, "scheme": "HTTP"}


def test_schema_rejects_web_tls_without_its_files() -> None:
    tls = {"tls": {"cert_file": "/x.crt"}}
    with helm_python.Chart.load(CHART_DIR) as chart, pytest.raises(helm_python.HelmValuesError, match="key_file"):
        chart.validate_schema({"config": {"sources": SOURCES, "web": tls}})


def test_schema_rejects_malformed_extra_volumes() -> None:
    with helm_python.Chart.load(CHART_DIR) as chart:
        for bad in (
            {"extraVolumes": [{"configMap": {"name": "x"}}]},
            {"extraVolumeMounts": [{"name": "x"}]},
            {"extraVolumes": {"name": "x"}},
            {"extraVolumes": [{"name": "tmp", "emptyDir": {}}]},
        ):
            with pytest.raises(helm_python.HelmValuesError):
                chart.validate_schema({**WITH_SOURCES, **bad})


def test_recreate_comment_explains_why() -> None:
    text = (CHART_DIR / "templates" / "deployment.yaml").read_text(encoding="utf-8")
    assert "Recreate" in text and "ReadWriteOnce" in text and "SQLite" in text


def test_service() -> None:
    svc = one("default", "Service")
    assert svc["metadata"]["name"] == FULLNAME
    assert svc["spec"]["ports"] == [{"name": "metrics", "port": 9184, "targetPort": "metrics", "protocol": "TCP"}]
    pod_labels = one("default", "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()


# --------------------------------------------------------------------------- config and secrets


def test_config_default() -> None:
    config = config_of("default")
    assert config["listen"] == "0.0.0.0:9184"
    assert config["store"] == "sqlite:////var/lib/cycletime/cycletime.db"
    assert config["windows"] == ["7d", "30d", "90d"] and config["quantiles"] == [0.5, 0.85, 0.95]
    assert config["sources"] == MINIMAL["config"]["sources"]


def test_config_has_the_sources_from_values_and_no_secret() -> None:
    cm = one("sources+tokens", "ConfigMap")
    config = yaml.safe_load(cm["data"]["config.yaml"])
    assert config["sources"] == SOURCES
    for token in TOKENS.values():
        assert token not in json.dumps(cm)


def test_rendered_config_is_accepted_by_the_collector() -> None:
    from collector.config import parse_config

    for variant in ("sources+tokens", "postgresql-url", "no-persistence", "sharded"):
        text = one(variant, "ConfigMap")["data"]["config.yaml"]
        env = {**TOKENS, "CYCLETIME_STORE_URL": "postgresql://ct:pw@db:5432/cycletime"}
        config = parse_config(text, env)
        assert [s.name for s in config.sources] == ["boards", "github"]


def test_notes_remind_that_the_default_image_repository_is_a_placeholder() -> None:
    assert "image.repository is the chart's placeholder" in notes(MINIMAL)
    mine = {**MINIMAL, "image": {"repository": "registry.example.com/platform/cycletime-collector"}}
    assert "placeholder" not in notes(mine)


LITERAL_WARNING = "WARNING: literal secrets in config"


def test_notes_warn_about_a_literal_token_without_repeating_it() -> None:
    literal = [
        {**SOURCES[0], "token": "azdo-pat-0123456789"},
        SOURCES[1],
        {"name": "gh2", "kind": "github", "token": "${GH2_TOKEN:-ghp_fallback}", "repositories": ["a/b"]},
    ]
    text = notes(
        {
            "config": {"sources": literal, "web": {"basic_auth": {"username": "prom", "password": "hunter2"}}},
            "secret": {"tokens": TOKENS},
        }
    )
    assert LITERAL_WARNING in text
    assert "config.sources[0].token (source boards)" in text
    assert "config.sources[2].token (source gh2)" in text  # a literal default is a literal too
    assert "config.web.basic_auth.password" in text
    assert "config.sources[1]" not in text
    assert "${ENV_NAME}" in text and "secret.tokens" in text
    for secret in ("azdo-pat-0123456789", "hunter2", "ghp_fallback"):
        assert secret not in text


def test_notes_stay_quiet_when_every_token_is_a_reference() -> None:
    web = {"basic_auth": {"username": "prom", "password": "${METRICS_PASSWORD}"}}
    assert LITERAL_WARNING not in notes({"config": {"sources": SOURCES, "web": web}, "secret": {"tokens": TOKENS}})


def test_tokens_secret() -> None:
    secret = one("sources+tokens", "Secret")
    assert secret["metadata"]["name"] == f"{FULLNAME}-secrets"
    assert {k: base64.b64decode(v).decode() for k, v in secret["data"].items()} == TOKENS
    assert container("sources+tokens")["envFrom"] == [{"secretRef": {"name": f"{FULLNAME}-secrets"}}]


def test_existing_secret() -> None:
    assert by_kind("existingSecret", "Secret") == []
    assert container("existingSecret")["envFrom"] == [{"secretRef": {"name": "my-tokens"}}]


def test_external_postgresql_url() -> None:
    v = "postgresql-url"
    assert by_kind(v, "PersistentVolumeClaim") == []
    assert config_of(v)["store"] == "${CYCLETIME_STORE_URL}"
    secret = one(v, "Secret")
    assert base64.b64decode(secret["data"]["CYCLETIME_STORE_URL"]).decode() == "postgresql://ct:pw@db:5432/cycletime"
    assert env(v)["CYCLETIME_STORE_URL"]["valueFrom"] == {
        "secretKeyRef": {"name": f"{FULLNAME}-secrets", "key": "CYCLETIME_STORE_URL"}
    }
    assert "pw@db" not in json.dumps(one(v, "ConfigMap")) + json.dumps(one(v, "Deployment"))
    assert "data" not in volumes(v)
    assert "data" not in {m["name"] for m in container(v)["volumeMounts"]}
    assert one(v, "Deployment")["spec"]["strategy"]["type"] == "RollingUpdate"


def test_external_postgresql_existing_secret() -> None:
    v = "postgresql-existingSecret"
    assert by_kind(v, "PersistentVolumeClaim") == []
    assert by_kind(v, "Secret") == []
    assert config_of(v)["store"] == "${CYCLETIME_STORE_URL}"
    assert env(v)["CYCLETIME_STORE_URL"]["valueFrom"] == {"secretKeyRef": {"name": "db", "key": "dsn"}}


def test_persistence_disabled_and_existing_claim() -> None:
    assert by_kind("no-persistence", "PersistentVolumeClaim") == []
    assert volumes("no-persistence")["data"] == {"name": "data", "emptyDir": {}}
    assert one("no-persistence", "Deployment")["spec"]["strategy"]["type"] == "RollingUpdate"
    assert by_kind("existingClaim", "PersistentVolumeClaim") == []
    assert volumes("existingClaim")["data"]["persistentVolumeClaim"] == {"claimName": "old-data"}
    assert one("existingClaim", "Deployment")["spec"]["strategy"] == {"type": "Recreate"}


# --------------------------------------------------------------------------- monitoring


def test_monitoring_off_by_default() -> None:
    kinds = {d["kind"] for d in render("default")}
    assert not kinds & {"ServiceMonitor", "PrometheusRule"}
    assert [cm["metadata"]["name"] for cm in by_kind("default", "ConfigMap")] == [f"{FULLNAME}-config"]


def test_service_monitor() -> None:
    sm = one("monitoring-on", "ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "kps"
    svc_labels = one("monitoring-on", "Service")["metadata"]["labels"]
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc_labels.items()
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    assert {"action": "replace", "targetLabel": "instance", "replacement": FULLNAME} in endpoint["relabelings"]
    custom = one("monitoring-on-custom", "ServiceMonitor")["spec"]["endpoints"][0]
    assert "relabelings" not in custom and custom["basicAuth"]["username"] == {"name": "a", "key": "u"}


def test_prometheus_rule_defaults_equal_rules_yaml() -> None:
    """Default thresholds render exactly config/prometheus/rules.yaml."""
    assert one("rule-only", "PrometheusRule")["spec"]["groups"] == load_rules()["groups"]
    assert one("monitoring-on", "PrometheusRule")["spec"]["groups"] == load_rules()["groups"]


def _promtool_check(groups: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rules.yaml"
        path.write_text(yaml.safe_dump({"groups": groups}), encoding="utf-8")
        result = run_promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("variant", ["monitoring-on", "monitoring-on-custom"])
def test_prometheus_rule_passes_promtool(variant: str) -> None:
    _promtool_check(one(variant, "PrometheusRule")["spec"]["groups"])


def test_prometheus_rule_thresholds_come_from_values() -> None:
    rules = {
        r.get("alert") or r["record"]: r
        for g in one("monitoring-on-custom", "PrometheusRule")["spec"]["groups"]
        for r in g["rules"]
    }
    assert "ratio_7d > 0.25\n" in rules["ChangeFailureRateHigh"]["expr"]
    assert "threshold 0.25" in rules["ChangeFailureRateHigh"]["annotations"]["description"]
    assert "> 3900\n" in rules["CycletimeSourceStale"]["expr"]
    assert rules["CycletimeSourceDown"]["for"] == "30m"
    assert "{{ $labels.source }}" in rules["CycletimeSourceDown"]["annotations"]["summary"]


def dashboards_cms(variant: str) -> list[dict[str, Any]]:
    return [cm for cm in by_kind(variant, "ConfigMap") if cm["metadata"]["name"] == f"{FULLNAME}-dashboards"]


def test_dashboards_configmap() -> None:
    (cm,) = dashboards_cms("monitoring-on")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    originals = {p.name: json.loads(p.read_text(encoding="utf-8")) for p in GRAFANA_DIR.glob("*.json")}
    assert len(originals) == 5
    assert {k: json.loads(v) for k, v in cm["data"].items()} == originals
    (custom,) = dashboards_cms("monitoring-on-custom")
    assert custom["metadata"]["namespace"] == "grafana"
    assert custom["metadata"]["annotations"] == {"grafana_folder": "Delivery"}


def test_dockerfile() -> None:
    """The image cannot be built here; check the parts the chart relies on."""
    text = (CHART_DIR.parents[1] / "Dockerfile").read_text(encoding="utf-8")
    lines = [line.strip() for line in text.splitlines()]
    assert [line for line in lines if line.startswith("FROM ")] == ["FROM python:3.11-slim"]
    assert "USER 10001:10001" in lines
    assert "EXPOSE 9184" in lines
    assert 'ENTRYPOINT ["cycletime"]' in lines
    assert any(line.startswith('RUN pip install ".') for line in lines)
    assert "useradd --system --uid 10001" in text


def test_backfill_job_off_by_default() -> None:
    assert not [d for d in render("sources+tokens") if d["kind"] == "Job"]


def test_backfill_job_waits_for_the_first_sync_then_writes_blocks() -> None:
    job = one("backfill", "Job")
    pod = job["spec"]["template"]["spec"]
    wait, backfill = pod["initContainers"]
    assert f"http://{FULLNAME}.{NAMESPACE}.svc:9184/readyz" in wait["command"][-1]
    assert backfill["args"][:3] == ["backfill", "--config", "/etc/cycletime/config.yaml"]
    assert backfill["args"][3:] == ["--from", "180d", "--step", "1d", "--out", "/backfill/history.om"]
    mounts = {m["name"]: m["mountPath"] for m in backfill["volumeMounts"]}
    assert mounts["data"] == "/var/lib/cycletime" and mounts["backfill"] == "/backfill"
    promtool = pod["containers"][0]
    assert "promtool tsdb create-blocks-from openmetrics" in promtool["command"][-1]
    assert "/backfill/history.om /backfill/blocks" in promtool["command"][-1]
    # the SQLite volume is ReadWriteOnce: the Job runs on the collector's node
    affinity = pod["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert affinity["topologyKey"] == "kubernetes.io/hostname"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["backfill"]["persistentVolumeClaim"]["claimName"] == f"{FULLNAME}-backfill"
    assert job["spec"]["ttlSecondsAfterFinished"] == 3600
    assert f"{FULLNAME}-backfill" in {c["metadata"]["name"] for c in by_kind("backfill", "PersistentVolumeClaim")}
    for container in [*pod["initContainers"], *pod["containers"]]:
        assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_backfill_job_with_postgresql_and_an_existing_claim() -> None:
    pod = one("backfill-postgresql", "Job")["spec"]["template"]["spec"]
    assert "affinity" not in pod
    env = {e["name"] for e in pod["initContainers"][1]["env"]}
    assert "CYCLETIME_STORE_URL" in env
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["backfill"]["persistentVolumeClaim"]["claimName"] == "prom-backfill" and "data" not in volumes
    assert f"{FULLNAME}-backfill" not in {
        c["metadata"]["name"] for c in by_kind("backfill-postgresql", "PersistentVolumeClaim")
    }


# --------------------------------------------------------------------------- sharding


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


def test_single_replica_deployment_stays_the_default() -> None:
    kinds = [d["kind"] for d in render("default")]
    assert "Deployment" in kinds
    assert not {"StatefulSet", "PodDisruptionBudget"} & set(kinds)
    assert [s["metadata"]["name"] for s in by_kind("default", "Service")] == [FULLNAME]
    assert not {"CYCLETIME_TOTAL_SHARDS", "CYCLETIME_POD_NAME"} & env("default").keys()
    assert config_of("default")["store"].startswith("sqlite:")


def test_sharding_renders_a_statefulset_of_shards_on_postgresql() -> None:
    v = "sharded"
    assert by_kind(v, "Deployment") == []
    sts = one(v, "StatefulSet")
    spec = sts["spec"]
    assert sts["metadata"]["name"] == FULLNAME  # pods ct-cycletime-collector-0 .. -2: the ordinal is the shard
    assert spec["replicas"] == 3
    assert spec["serviceName"] == HEADLESS
    assert spec["podManagementPolicy"] == "Parallel"
    assert "volumeClaimTemplates" not in spec
    assert _matches(spec["selector"]["matchLabels"], spec["template"]["metadata"]["labels"])
    # the interface the collector reads: N from the chart, its own pod name from the downward API
    e = env(v)
    assert e["CYCLETIME_TOTAL_SHARDS"] == {"name": "CYCLETIME_TOTAL_SHARDS", "value": "3"}
    assert e["CYCLETIME_POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert "CYCLETIME_SHARD" not in e
    assert e["CYCLETIME_STORE_URL"]["valueFrom"] == {
        "secretKeyRef": {"name": f"{FULLNAME}-secrets", "key": "CYCLETIME_STORE_URL"}
    }
    assert config_of(v)["store"] == "${CYCLETIME_STORE_URL}"
    # no volume for the store: no PVC, no data volume, no data mount
    assert by_kind(v, "PersistentVolumeClaim") == []
    assert "data" not in volumes(v)
    assert {m["name"] for m in container(v)["volumeMounts"]} == {"config", "tmp"}
    # the same hardened pod as the Deployment's
    assert container(v)["securityContext"]["readOnlyRootFilesystem"] is True
    assert container(v)["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_sharding_with_an_existing_postgresql_secret_defaults_to_two_shards() -> None:
    v = "sharded-existingSecret-backfill"
    assert one(v, "StatefulSet")["spec"]["replicas"] == 2
    assert env(v)["CYCLETIME_TOTAL_SHARDS"]["value"] == "2"
    assert env(v)["CYCLETIME_STORE_URL"]["valueFrom"] == {"secretKeyRef": {"name": "db", "key": "dsn"}}
    assert by_kind(v, "Secret") == [] and by_kind(v, "PersistentVolumeClaim")[0]["metadata"]["name"].endswith(
        "-backfill"
    )


def test_sharding_headless_service_and_one_service_monitor_for_every_shard() -> None:
    v = "sharded"
    services = {s["metadata"]["name"]: s for s in by_kind(v, "Service")}
    assert set(services) == {FULLNAME, HEADLESS}
    headless = services[HEADLESS]
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert headless["spec"]["ports"] == [{"name": "metrics", "port": 9184, "targetPort": "metrics", "protocol": "TCP"}]
    pod_labels = one(v, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    assert _matches(headless["spec"]["selector"], pod_labels)
    # one ServiceMonitor; it selects the headless Service (whose endpoints are every shard) and not the
    # ClusterIP one, which would scrape the same pods a second time
    sm = one(v, "ServiceMonitor")
    selector = sm["spec"]["selector"]["matchLabels"]
    assert _matches(selector, headless["metadata"]["labels"])
    assert not _matches(selector, services[FULLNAME]["metadata"]["labels"])
    (endpoint,) = sm["spec"]["endpoints"]
    # each shard its own instance, stable across restarts (the StatefulSet's pod name)
    assert {
        "action": "replace",
        "sourceLabels": ["__meta_kubernetes_pod_name"],
        "targetLabel": "instance",
    } in endpoint["relabelings"]
    assert not [r for r in endpoint["relabelings"] if r.get("replacement") == FULLNAME]


def test_sharding_pod_disruption_budget() -> None:
    pdb = one("sharded", "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    pod_labels = one("sharded", "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    assert _matches(pdb["spec"]["selector"]["matchLabels"], pod_labels)
    assert one("sharded-existingSecret-backfill", "PodDisruptionBudget")["spec"]["maxUnavailable"] == "50%"
    # the backfill Job's pod is no shard: neither the budget nor the headless Service selects it
    job_labels = one("sharded-existingSecret-backfill", "Job")["spec"]["template"]["metadata"]["labels"]
    assert not _matches(
        one("sharded-existingSecret-backfill", "PodDisruptionBudget")["spec"]["selector"]["matchLabels"], job_labels
    )
    headless = next(
        s for s in by_kind("sharded-existingSecret-backfill", "Service") if s["metadata"]["name"] == HEADLESS
    )
    assert not _matches(headless["spec"]["selector"], job_labels)


def test_sharding_backfill_waits_for_every_shard() -> None:
    wait = one("sharded-existingSecret-backfill", "Job")["spec"]["template"]["spec"]["initContainers"][0]
    script = wait["command"][-1]
    assert f"http://{FULLNAME}-{{i}}.{HEADLESS}.{NAMESPACE}.svc:9184/readyz" in script
    assert "for i in range(2)" in script
    compile(script, "wait-for-first-sync", "exec")  # valid Python after rendering
    compile(one("backfill", "Job")["spec"]["template"]["spec"]["initContainers"][0]["command"][-1], "w", "exec")


@pytest.mark.parametrize(
    "values",
    [
        {"sharding": {"enabled": True}},  # SQLite default: refused
        {"sharding": {"enabled": True}, "postgresql": {"url": "sqlite:////var/lib/cycletime/cycletime.db"}},
        {"sharding": {"enabled": True}, "config": {"sources": SOURCES, "store": "sqlite:///x.db"}},
        {"sharding": {"enabled": True, "replicas": 0}, "postgresql": {"url": PG_URL}},
        {"sharding": {"enabled": True, "replicas": "3"}, "postgresql": {"url": PG_URL}},
        {"sharding": {"enabled": True, "podDisruptionBudget": {"maxUnavailable": 0}}, "postgresql": {"url": PG_URL}},
        {"sharding": {"enabled": True, "shards": 3}, "postgresql": {"url": PG_URL}},
    ],
)
def test_schema_requires_postgresql_for_sharding(values: dict[str, Any]) -> None:
    with helm_python.Chart.load(CHART_DIR) as chart, pytest.raises(helm_python.HelmValuesError):
        chart.validate_schema({**WITH_SOURCES, **values})


def test_schema_accepts_sharding_on_postgresql() -> None:
    with helm_python.Chart.load(CHART_DIR) as chart:
        chart.validate_schema(VARIANTS["sharded"])
        chart.validate_schema(VARIANTS["sharded-existingSecret-backfill"])
        chart.validate_schema({**WITH_SOURCES, "sharding": {"enabled": False, "replicas": 4}})


def test_sharding_without_postgresql_and_schema_validation_skipped_fails_with_a_reason(tmp_path: Path) -> None:
    unchecked = tmp_path / "chart"
    shutil.copytree(CHART_DIR, unchecked)
    (unchecked / "values.schema.json").unlink()
    with (
        helm_python.Chart.load(unchecked) as chart,
        pytest.raises(helm_python.HelmError, match=r"sharding\.enabled needs a PostgreSQL store"),
    ):
        chart.render({**WITH_SOURCES, "sharding": {"enabled": True}}, name=RELEASE, namespace=NAMESPACE)


def test_sharding_notes_name_the_shards() -> None:
    text = notes(VARIANTS["sharded"])
    assert f"pods {FULLNAME}-0 .. {FULLNAME}-2" in text
    assert f"port-forward pod/{FULLNAME}-0" in text
    assert HEADLESS in text
    assert "Sharded" not in notes(MINIMAL)
