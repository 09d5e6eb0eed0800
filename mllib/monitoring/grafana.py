"""The Grafana dashboard `mllib monitoring init` writes: PromQL panels over the deployments'
metrics (requests/s, latency percentiles and error rate per env, model, version and variant;
replicas up), the team server's (training runs by status, queue depth, run durations, queue
wait, agents' slots) and the scheduled evaluations' (their metrics and gates, from
mllib.schedules.metrics' file).

Panels query a data source chosen on the dashboard (the `datasource` variable) and filter by the
`env` and `model` variables; users edit any panel's PromQL in Grafana. `queries()` lists every
panel's expression, for checking them against a real Prometheus.
"""

from __future__ import annotations

from typing import Any

UID = "mllib-overview"
SCHEMA_VERSION = 39
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
DEPLOYMENT = 'env=~"$env", model=~"$model"'
BY = "env, model, version, variant"
LEGEND = "{{env}} {{model}} v{{version}} {{variant}}"


def _quantile(q: float, metric: str) -> str:
    return (
        f"histogram_quantile({q}, sum by (le, {BY}) "
        f"(rate({metric}_bucket{{{DEPLOYMENT}}}[$__rate_interval])))"
    )


# (title, description, unit, [(expr, legend)]): one timeseries panel each, two to a row.
PANELS: list[tuple[str, str, str, list[tuple[str, str]]]] = [
    (
        "Requests/s",
        "POST /predict requests per second, every status.",
        "reqps",
        [(f"sum by ({BY}) (rate(mllib_requests_total{{{DEPLOYMENT}}}[$__rate_interval]))", LEGEND)],
    ),
    (
        "Error rate",
        "Share of /predict requests answered 5xx.",
        "percentunit",
        [
            (
                f'sum by ({BY}) (rate(mllib_requests_total{{{DEPLOYMENT}, status=~"5.."}}'
                f"[$__rate_interval])) / sum by ({BY}) "
                f"(rate(mllib_requests_total{{{DEPLOYMENT}}}[$__rate_interval]))",
                LEGEND,
            )
        ],
    ),
    (
        "Latency p50 / p90 / p99",
        "Time from a /predict request's arrival to its response, at the server.",
        "s",
        [
            (_quantile(q, "mllib_request_duration_seconds"), f"p{int(q * 100)} {LEGEND}")
            for q in (0.5, 0.9, 0.99)
        ],
    ),
    (
        "predict() time p99",
        "Time in the model's predict() (or the predict_batch() call a request was part of).",
        "s",
        [(_quantile(0.99, "mllib_predict_duration_seconds"), LEGEND)],
    ),
    (
        "Replicas up",
        "Deployment servers answering Prometheus' scrapes, per env, model and version.",
        "short",
        [
            (
                f'count by (env, model, version) (up{{job="mllib-deployments", {DEPLOYMENT}}} == 1)',
                "{{env}} {{model}} v{{version}}",
            )
        ],
    ),
    (
        "Errors by reason",
        "Requests that did not succeed, per reason (bad input, timeouts, predict() raised...).",
        "reqps",
        [
            (
                f"sum by (env, model, reason) "
                f"(rate(mllib_request_errors_total{{{DEPLOYMENT}}}[$__rate_interval]))",
                "{{env}} {{model}} {{reason}}",
            )
        ],
    ),
    (
        "Training runs by status",
        "Runs known to the team server, per status (its /metrics).",
        "short",
        [("sum by (status) (mllib_runs)", "{{status}}")],
    ),
    (
        "Queue depth",
        "Runs waiting for a GPU slot on the team server, per priority.",
        "short",
        [("sum by (priority) (mllib_queue_depth)", "priority {{priority}}")],
    ),
    (
        "Run duration p50 / p90",
        "Time from start to end of the runs that finished lately on the team server.",
        "s",
        [
            (
                f"histogram_quantile({q}, sum by (le) "
                "(rate(mllib_run_duration_seconds_bucket[$__rate_interval])))",
                f"p{round(q * 100)}",
            )
            for q in (0.5, 0.9)
        ],
    ),
    (
        "Queue wait p50 / p90",
        "Time from submission to an agent's claim, for the runs claimed lately on the team server.",
        "s",
        [
            (
                f"histogram_quantile({q}, sum by (le) "
                "(rate(mllib_queue_wait_seconds_bucket[$__rate_interval])))",
                f"p{round(q * 100)}",
            )
            for q in (0.5, 0.9)
        ],
    ),
    (
        "Agents' slots",
        "The team server's agents' run slots (GPUs), busy and free, and its agents reachable.",
        "short",
        [
            ("sum by (state) (mllib_agent_slots)", "slots {{state}}"),
            ('sum(mllib_agents{state="reachable"})', "agents reachable"),
        ],
    ),
    (
        "Scheduled evaluations",
        "The latest value of each metric evaluate() returned in a scheduled evaluation "
        "(`mllib evaluate --every`; node_exporter's textfile collector serves them).",
        "short",
        [
            (
                'max by (model, version, env, metric) (mllib_scheduled_evaluation_metric{model=~"$model"})',
                "{{model}} v{{version}} {{env}} {{metric}}",
            )
        ],
    ),
    (
        "Evaluation gates passed",
        "1 while a schedule's latest evaluation passes its --fail-under gates, 0 once one breaks.",
        "short",
        [
            (
                'min by (schedule, model, env) (mllib_scheduled_evaluation_gate_passed{model=~"$model"})',
                "{{schedule}} {{model}} {{env}}",
            )
        ],
    ),
]


def dashboard() -> dict[str, Any]:
    """The dashboard as Grafana's JSON model (import it, or provision it from a file)."""
    panels = []
    for index, (title, description, unit, targets) in enumerate(PANELS):
        panels.append(
            {
                "id": index + 1,
                "type": "timeseries",
                "title": title,
                "description": description,
                "datasource": DATASOURCE,
                "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
                "targets": [
                    {
                        "refId": chr(ord("A") + n),
                        "datasource": DATASOURCE,
                        "expr": expr,
                        "legendFormat": legend,
                        "range": True,
                    }
                    for n, (expr, legend) in enumerate(targets)
                ],
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "options": {
                    "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "desc"},
                },
            }
        )
    return {
        "uid": UID,
        "title": "mllib: deployments and training",
        "description": "Written by `mllib monitoring init`: edit the panels' PromQL as you like.",
        "tags": ["mllib"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": _variables()},
        "annotations": {"list": []},
        "panels": panels,
    }


def _variables() -> list[dict[str, Any]]:
    def label(name: str, query: str) -> dict[str, Any]:
        return {
            "type": "query",
            "name": name,
            "label": name,
            "datasource": DATASOURCE,
            "query": query,
            "refresh": 2,
            "includeAll": True,
            "allValue": ".*",
            "multi": True,
            "current": {"text": "All", "value": "$__all"},
            "sort": 1,
        }

    return [
        {
            "type": "datasource",
            "name": "datasource",
            "label": "Prometheus",
            "query": "prometheus",
            "current": {"text": "default", "value": "default"},
        },
        label("env", "label_values(mllib_requests_total, env)"),
        label("model", 'label_values(mllib_requests_total{env=~"$env"}, model)'),
    ]


def queries(board: dict[str, Any]) -> list[str]:
    """Every panel's PromQL, in panel order."""
    return [t["expr"] for panel in board["panels"] for t in panel.get("targets", [])]
