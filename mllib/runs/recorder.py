"""Turns a run's event stream into registry rows, in batches, while the run goes on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mllib.metric_values import to_stored
from mllib.protocol import events
from mllib.protocol.events import EventReader
from mllib.registry import Registry
from mllib.registry.environments import set_environment
from mllib.registry.metrics import insert_points, set_eval_metrics
from mllib.registry.runs import set_params, update_run


class Recorder:
    """Reads new events on each poll(); remembers the error and model events for the final status."""

    def __init__(self, registry: Registry, run_id: str, events_path: Path) -> None:
        self.registry = registry
        self.run_id = run_id
        self.reader = EventReader(events_path)
        self.error: dict[str, Any] | None = None
        self.model_saved = False
        self.cancelled = False
        self.eval_metrics: dict[str, float] = {}

    def poll(self) -> None:
        points = []
        for event in self.reader.read():
            kind = event.get("type")
            if kind == events.METRIC:
                value = to_stored(event["value"])
                points.append((event["seq"], event["name"], event["step"], value, event["ts"]))
                continue
            insert_points(self.registry, self.run_id, points)  # keep order with other events
            points = []
            if kind == events.PARAMS:
                set_params(
                    self.registry,
                    self.run_id,
                    event["values"],
                    event.get("sources", {}),
                    event.get("secret", ()),
                )
            elif kind == events.PHASE:
                update_run(self.registry, self.run_id, phase=event["phase"])
            elif kind == events.EVAL_METRICS:
                self.eval_metrics = {k: to_stored(v) for k, v in event["metrics"].items()}
                set_eval_metrics(self.registry, self.run_id, self.eval_metrics)
            elif kind == events.MODEL_SAVED:
                self.model_saved = True
            elif kind == events.ERROR:
                self.error = event
            elif kind == events.CANCELLED:
                self.cancelled = True
            elif kind == events.ENVIRONMENT:
                fields = {k: v for k, v in event.items() if k not in ("type", "ts")}
                set_environment(self.registry, self.run_id, fields)
        insert_points(self.registry, self.run_id, points)
