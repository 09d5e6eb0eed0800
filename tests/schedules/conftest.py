"""Scheduled evaluations' fixtures: promtool, Prometheus and node_exporter, as the monitoring tests
have them (Debian's packages, which scripts/test.sh installs)."""

from tests.monitoring.conftest import node_exporter_bin, prometheus_bin, promtool, start_prometheus

__all__ = ["node_exporter_bin", "prometheus_bin", "promtool", "start_prometheus"]
