"""Ctrl-C at any moment after a run is recorded ends it as `cancelled`, never as a system error."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import Project, model_source, wait_for
from tests.runs.test_cancel import _gone

# A real SIGINT, sent at an exact moment of `mllib train`: from the callback that prints the
# run's header, or just after the background supervisor of `--detach` was started.
DRIVER = textwrap.dedent(
    """
    import json, os, signal, sys, time
    import mllib.runs.api as api
    import mllib.runs.backend as backend
    from mllib.registry.runs import get_run

    moment, params = sys.argv[1], json.loads(sys.argv[2])
    seen = {}

    def ctrl_c():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)  # the KeyboardInterrupt arrives here

    def on_prepared(record):
        seen["run"] = record.id
        if moment == "header":
            ctrl_c()

    spawn = backend.spawn_supervisor

    def spawn_then_ctrl_c(ws, run_id):
        seen["supervisor"] = spawn(ws, run_id)
        if moment == "supervisor-took-over":
            while get_run(ws.registry, run_id).supervisor_pid != seen["supervisor"]:
                time.sleep(0.01)
        ctrl_c()

    backend.spawn_supervisor = spawn_then_ctrl_c
    try:
        api.train("model.py", params, runtime="process",
                  detach=moment != "header", on_prepared=on_prepared)
    except KeyboardInterrupt:
        print(json.dumps(seen))
        sys.exit(130)
    """
)


def ctrl_c_during_train(project: Project, moment: str, params: dict) -> dict:
    """Train model.py with `params` in a child process that gets a real SIGINT at `moment`;
    what it saw: the run id, and the background supervisor's pid where one was started."""
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, moment, json.dumps(params)],
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 130, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("moment", ["header", "supervisor-started", "supervisor-took-over"])
def test_ctrl_c_after_the_run_is_recorded_cancels_it(project: Project, moment: str):
    project.write("model.py", model_source("behaviours"))
    seen = ctrl_c_during_train(project, moment, {"behaviour": "sleep"})

    run = project.show(seen["run"])  # showing it settles runs whose supervisor is gone
    assert (run["status"], run["failure_class"]) == ("cancelled", None), run["error"]
    if "supervisor" in seen:  # the background supervisor ends too, whatever it had done
        wait_for(lambda: _gone(seen["supervisor"]), timeout=30, what="the supervisor to exit")
        assert project.show(seen["run"])["status"] == "cancelled"
    if moment == "header":  # nothing had started the model
        assert not (project.root / "started.json").exists()
        assert run["error"] == "cancelled before it started"
