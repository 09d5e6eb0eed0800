"""Several runs logging metrics at once never lose a point nor hit "database is locked"."""

import subprocess
import sys

from tests.conftest import Project, model_source

RUNS = 4
POINTS = 20_000


def test_concurrent_runs_record_every_point(project: Project):
    project.write("model.py", model_source("behaviours"))
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "mllib", "train", "model.py", f"--points={POINTS}"],
            cwd=project.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(RUNS)
    ]
    outputs = [p.communicate(timeout=180)[0] for p in procs]
    for proc, text in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, text
        assert "locked" not in text
    runs = project.mllib("runs", "list", "--json").json()
    assert len(runs) == RUNS and {r["status"] for r in runs} == {"succeeded"}
    for run in runs:
        summary = project.show(run["id"])["metric_summary"]["value"]
        assert summary == {
            "min": 0.0,
            "max": POINTS - 1.0,
            "count": POINTS,
            "last": POINTS - 1.0,
            "last_step": POINTS - 1,
        }
