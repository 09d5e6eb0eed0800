"""A project whose registry holds known runs at fixed times, for the dashboard's Pilot and snapshot
tests: finished, failed, queued and running runs, params holding markup and control characters."""

from __future__ import annotations

from pathlib import Path

from mllib.registry.artifacts import add_artifact
from mllib.registry.metrics import insert_points, set_eval_metrics
from mllib.registry.runs import RunRecord, create_run
from mllib.workspace import Workspace

T0 = "2026-03-01T12:00:00.000000Z"
NOW = 1772370000.0  # 2026-03-01T13:00:00Z: the clock the tests give the dashboard


def at(minutes: int) -> str:
    return f"2026-03-01T12:{minutes:02d}:00.000000Z"


RUNS = [
    # id, model, action, status, failure class, error, created minute, start, end, user, params
    ("aaaa00000001", "classifier", "train", "succeeded", None, None, 1, 1, 3, "ana",
     {"learning_rate": 0.1, "note": "[b]bold?[/b]"}),
    ("bbbb00000002", "classifier", "train+evaluate", "succeeded", None, None, 5, 5, 9, "ana",
     {"learning_rate": 0.01, "note": "plain"}),
    ("cccc00000003", "regressor", "train", "failed", "user_error", "ValueError: [red]x[/red]\x1b[2J",
     10, 10, 11, "bo", {"alpha": 1.5}),
    ("dddd00000004", "classifier", "train", "running", None, None, 20, 20, None, "bo",
     {"learning_rate": 0.05, "note": "live"}),
    ("eeee00000005", "regressor", "train", "queued", None, None, 30, None, None, "ana",
     {"alpha": 0.5}),
]  # fmt: skip


def seed(root: Path, *, extra_runs: int = 0) -> Workspace:
    """Write mllib.toml and the runs above (and `extra_runs` older finished ones) into `root`."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "mllib.toml").write_text('name = "seeded"\n')
    (root / "model.py").write_text("class M:\n    def train(self): ...\n")
    ws = Workspace.find(root)
    reg = ws.registry
    for run_id, model, action, status, fclass, error, created, start, end, user, params in RUNS:
        record = RunRecord(
            run_id, model, action, status, at(created),
            failure_class=fclass, error=error, runtime="process", runtime_note="--runtime process",
            host="local", user=user, started_at=at(start) if start else None,
            ended_at=at(end) if end else None, model_file="model.py", seed=0,
            code_hash="c0de" * 16, env_target="local", log_path=str(root / f"{run_id}.log"),
        )  # fmt: skip
        create_run(reg, record, params, {})
    for index, run_id in enumerate(("aaaa00000001", "bbbb00000002", "dddd00000004")):
        points = [(i + 1, "loss", i, 1.0 / (i + 1 + index), 0.0) for i in range(30)]
        points += [(100 + i, "accuracy", i, 0.5 + i / 100 + index / 10, 0.0) for i in range(30)]
        insert_points(reg, run_id, points)
    set_eval_metrics(reg, "bbbb00000002", {"accuracy": 0.93, "f1": 0.91})
    add_artifact(reg, "bbbb00000002", "model.pkl", "model", "ab" * 32, 2048)
    add_artifact(reg, "bbbb00000002", "confusion.png", "file", "cd" * 32, 512)
    (root / "dddd00000004.log").write_text(
        "epoch 1 [bold]not markup[/bold]\nbell \x07 and \x1b[31mred\x1b[0m\nepoch 2\n"
    )
    for n in range(extra_runs):
        create_run(
            reg,
            RunRecord(
                f"old{n:09d}",
                "old-model",
                "train",
                "succeeded",
                f"2026-02-01T00:00:{n % 60:02d}.{n:06d}Z",
            ),
            {},
            {},
        )
    return ws
