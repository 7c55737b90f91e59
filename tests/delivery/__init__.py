"""Tests of the delivery artefacts: Prometheus rules, Grafana dashboards, Helm chart."""
