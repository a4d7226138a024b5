"""Grafana dashboards (generated from code), provisioning files and Prometheus rules."""
