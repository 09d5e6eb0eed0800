"""Monitoring set-ups for what a team runs: `mllib monitoring init` writes a Prometheus
configuration that discovers every live deployment (serving/control/targets.py keeps its targets
file current), alert rules, a Grafana dashboard and a Promtail configuration for Loki.

    from mllib.monitoring.setup import init
    written = init(Workspace.find(), Path("monitoring"))
"""
