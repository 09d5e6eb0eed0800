"""`mllib monitoring init [DIR]`: write a project's monitoring set-up, whole or not at all.

    DIR/prometheus.yml       scrape config: every live deployment (file-based service discovery)
    DIR/alerts.yml           alert rules: error rate, p99 over the objective, a replica down,
                             a canary breach
    DIR/grafana/mllib.json   the Grafana dashboard (PromQL panels)
    DIR/promtail.yml         Promtail -> Loki: the deployments' JSON logs with their labels

The targets file the scrape config reads is the project's own (serving/control/targets.py): it
is written now, and rewritten by mllib whenever a deployment changes state.
"""

from __future__ import annotations

import json
import os
import re
import string
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from mllib.errors import UsageError
from mllib.monitoring import grafana
from mllib.schedules.metrics import metrics_file
from mllib.serving.control import targets
from mllib.serving.control.paths import LOG_FILE, serving_dir
from mllib.serving.control.settings import Settings
from mllib.workspace import Workspace

FILES = ("prometheus.yml", "alerts.yml", "grafana/mllib.json", "promtail.yml")
_DURATION = re.compile(r"^[0-9]+(ms|s|m|h)$")


@dataclass(frozen=True)
class Options:
    """What the generated files point at; the defaults suit Prometheus and Loki on this host."""

    scrape_interval: str = "15s"
    loki_url: str = "http://localhost:3100/loki/api/v1/push"
    server: str | None = None  # the team server's host:port, scraped for runs and the queue


class _Template(string.Template):
    delimiter = "@"  # `$` and `{{ }}` belong to PromQL and Prometheus' templates


def init(
    ws: Workspace, folder: Path, options: Options = Options(), force: bool = False
) -> list[Path]:
    """Write the set-up into `folder`; returns the files written. Files already there are
    refused (nothing is written) unless `force`."""
    if not _DURATION.match(options.scrape_interval):
        raise UsageError(
            f"--scrape-interval {options.scrape_interval!r} is not a Prometheus duration",
            hint="Write it as 15s, 1m or 500ms.",
        )
    if options.server is not None:
        server_target(options.server)  # a usage error before anything is written
    folder = folder.resolve()
    paths = [folder / name for name in FILES]
    present = [p for p in paths if p.exists()]
    if present and not force:
        raise UsageError(
            f"{', '.join(str(p) for p in present)} already exist(s)",
            hint="Pass --force to write them again (your edits there are lost), or choose another DIR.",
        )
    texts = render(ws, folder, options)
    targets.refresh(ws.registry)
    for path, text in zip(paths, texts, strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(text)
        os.replace(tmp, path)
    return paths


def render(ws: Workspace, folder: Path, options: Options) -> list[str]:
    """The files' texts, in FILES order."""
    loadtest = Settings.from_config(ws.project.config).loadtest
    name = ws.project.config.name or ws.project.root.name
    values = {
        "project_name": json.dumps(name),
        "config_file": folder / "prometheus.yml",
        "scrape_interval": options.scrape_interval,
        "targets_file": json.dumps(str(targets.targets_file(ws.registry))),
        "server_job": _server_job(options.server or _configured_server(ws)),
        "schedules_file": str(metrics_file(ws.registry)),
        "schedules_dir": str(metrics_file(ws.registry).parent),
        "max_error_rate": f"{loadtest.pass_max_error_rate:g}",
        "max_error_rate_pct": f"{loadtest.pass_max_error_rate * 100:g}%",
        "p99_objective_s": f"{loadtest.pass_max_p99_ms / 1000:g}",
        "p99_objective_ms": f"{loadtest.pass_max_p99_ms:g}",
        "positions_file": json.dumps(str(folder / "promtail-positions.yml")),
        "loki_url": json.dumps(options.loki_url),
        "logs_glob": json.dumps(str(serving_dir(ws) / "deployments" / "*" / LOG_FILE)),
    }
    return [
        _fill("prometheus.yml", values),
        _fill("alerts.yml", values),
        json.dumps(grafana.dashboard(), indent=2) + "\n",
        _fill("promtail.yml", values),
    ]


def _fill(name: str, values: dict[str, object]) -> str:
    text = resources.files("mllib.monitoring").joinpath("files", name).read_text()
    return _Template(text).substitute(values)


def server_target(server: str) -> tuple[str, str]:
    """`--server` (HOST:PORT, or the server's URL) as Prometheus' scheme and target."""
    if server.startswith(("http://", "https://")):
        from urllib.parse import urlsplit

        parts = urlsplit(server)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname
        server, scheme = f"{host}:{port}", parts.scheme
    else:
        scheme = "http"
    if not re.match(r"^[\w.\-\[\]:]+:[0-9]+$", server):
        raise UsageError(
            f"--server {server!r} is not HOST:PORT",
            hint="For example: --server mllib.internal:8750 (or the server's URL).",
        )
    return scheme, server


def _configured_server(ws: Workspace) -> str | None:
    """The team server this project's commands use (MLLIB_SERVER, `[server] url`, the login)."""
    from mllib.credentials import configured_server

    return configured_server(ws.project.config)


def _server_job(server: str | None) -> str:
    if server is None:
        return (
            "  # The team server's runs and queue (`mllib monitoring init --server HOST:PORT`):\n"
            "  # - job_name: mllib-server\n"
            "  #   static_configs: [{targets: [HOST:PORT]}]\n"
        )
    scheme, target = server_target(server)
    return (
        "  # The team server's /metrics: runs by status, queue depth and wait, run durations,\n"
        "  # agents and their slots (aggregates only, so it needs no token).\n"
        "  - job_name: mllib-server\n"
        f"    scheme: {scheme}\n"
        "    static_configs:\n"
        f"      - targets: [{json.dumps(target)}]\n"
    )
