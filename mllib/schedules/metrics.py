"""The scheduled evaluations' latest results as a Prometheus text file, rewritten after each run
of a schedule: node_exporter's textfile collector (`--collector.textfile.directory` pointed at
the folder) serves it, and `mllib monitoring init`'s alert rules fire on a breached gate or a
schedule that stopped running.

    mllib_scheduled_evaluation_metric{schedule, model, version, env, metric}   evaluate()'s value
    mllib_scheduled_evaluation_gate_passed{schedule, model, env}                1, or 0 on a breach
    mllib_scheduled_evaluation_succeeded{schedule, model, env}                 1 when the run did
    mllib_scheduled_evaluation_last_run_timestamp_seconds{schedule, model, env}
    mllib_scheduled_evaluation_period_seconds{schedule, model, env}
"""

from __future__ import annotations

import math
import os
from datetime import datetime
from pathlib import Path

from mllib.registry.db import Registry
from mllib.registry.metrics import get_eval_metrics

METRICS_DIR = "schedules"  # beside the registry: .mllib/schedules/
METRICS_FILE = "evaluations.prom"
PREFIX = "mllib_scheduled_evaluation"
_HELP = {
    "metric": "The latest scheduled evaluation's value of each metric evaluate() returned.",
    "gate_passed": "1 when the latest scheduled evaluation passed every --fail-under gate, else 0.",
    "succeeded": "1 when the latest scheduled evaluation's run succeeded, else 0.",
    "last_run_timestamp_seconds": "When the schedule last ran (Unix time).",
    "period_seconds": "How often the schedule runs (--every), in seconds.",
}


def metrics_file(reg: Registry) -> Path:
    """Where the file is written, for the registry at `reg.path`."""
    return reg.path.parent / METRICS_DIR / METRICS_FILE


def render(reg: Registry) -> str:
    """The file's text: every schedule's latest run, in Prometheus' text exposition format."""
    rows = reg.query(
        "SELECT s.id, s.every_s, r.run_id, r.model, r.version, r.env, r.status, r.started_at"
        " FROM schedules s JOIN schedule_runs r ON r.rowid = ("
        "   SELECT rowid FROM schedule_runs WHERE schedule_id = s.id"
        "   ORDER BY started_at DESC, rowid DESC LIMIT 1)"
        " ORDER BY s.created_at"
    )
    samples: dict[str, list[str]] = {name: [] for name in _HELP}
    for row in rows:
        labels = {"schedule": row["id"], "model": row["model"] or "", "env": row["env"] or ""}
        when = datetime.fromisoformat(row["started_at"].replace("Z", "+00:00")).timestamp()
        samples["gate_passed"].append(_line(labels, 0 if row["status"] == "breached" else 1))
        samples["succeeded"].append(
            _line(labels, 1 if row["status"] in ("succeeded", "breached") else 0)
        )
        samples["last_run_timestamp_seconds"].append(_line(labels, when))
        samples["period_seconds"].append(_line(labels, row["every_s"]))
        values = get_eval_metrics(reg, row["run_id"]) if row["run_id"] else {}
        for metric, value in values.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                version = str(row["version"] or "")
                detailed = labels | {"version": version, "metric": metric}
                samples["metric"].append(_line(detailed, value))
    lines = []
    for name, help_text in _HELP.items():
        lines += [f"# HELP {PREFIX}_{name} {help_text}", f"# TYPE {PREFIX}_{name} gauge"]
        lines += [f"{PREFIX}_{name}{sample}" for sample in samples[name]]
    return "\n".join(lines) + "\n"


def write(reg: Registry) -> Path:
    """Rewrite the file whole, renamed into place so a collector never reads half of it."""
    path = metrics_file(reg)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(render(reg))
    os.replace(tmp, path)
    return path


def _line(labels: dict[str, str], value: float) -> str:
    text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    number = float(value)
    shown = "NaN" if math.isnan(number) else repr(number) if math.isfinite(number) else _inf(number)
    return f"{{{text}}} {shown}"


def _inf(number: float) -> str:
    return "+Inf" if number > 0 else "-Inf"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
