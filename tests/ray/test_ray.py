"""The Ray runtime against the session's real head on loopback (tests/ray/head.py): what it adds
to the contract suite (tests/contract runs every scenario on it): a killed job retried,
`--remote` sent to Ray by mllib.toml, an unreachable cluster, and `mllib ray check`."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

from mllib.registry.runs import get_run
from mllib.runs import views
from mllib.runtime.processes import find_process, is_alive
from mllib.workspace import Workspace
from tests.conftest import wait_for
from tests.contract.harness import RuntimeUnderTest, make_project, ray_leftovers


def _project(tmp_path: Path, head: Any, **tables: dict[str, Any]):
    runtime = RuntimeUnderTest(
        "ray",
        lambda run: ray_leftovers(head, run),
        tables={"ray": {"address": head.address}, **tables},
    )
    return make_project(tmp_path, runtime)


def _napping_run(project: Any) -> tuple[str, str, int]:
    """A detached run whose worker naps 3 s: its id, folder, and worker pid once it runs."""
    started = project.cli("train", "model.py", "--mode=nap", "--detach")
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip().splitlines()[-1]
    run_dir = str(project.root / ".mllib" / "runs" / run_id)
    worker = wait_for(
        lambda: find_process("mllib.worker", "--run-dir", run_dir), timeout=120, what="the worker"
    )
    return run_id, run_dir, worker


def test_a_killed_job_is_retried_as_a_new_job(tmp_path: Path, ray_head: Any) -> None:
    project = _project(tmp_path, ray_head, retry={"max_attempts": 2, "backoff_s": 0.5})
    run_id, run_dir, worker = _napping_run(project)

    os.kill(worker, signal.SIGKILL)  # as the out-of-memory killer or a lost node would

    registry = Workspace.find(project.root).registry
    wait_for(lambda: get_run(registry, run_id).finished, timeout=180, what="the run to end")
    run = get_run(registry, run_id)
    assert (run.status, run.attempt) == ("succeeded", 2), run.error
    shown = views.show(Workspace.find(project.root), run_id)
    assert shown["metric_summary"]["loss"]["count"] == 3  # logged again, recorded once
    log = (Path(run_dir) / "output.log").read_text()
    assert "attempt 1 of 2 failed (the worker was killed by SIGKILL" in log
    attempts = [(a["attempt"], a["status"], a["failure_class"]) for a in shown["attempts"]]
    assert attempts == [(1, "failed", "system_error"), (2, "succeeded", None)]
    assert shown["attempts"][0]["agent"] != shown["attempts"][1]["agent"]  # a new Ray job
    shown_cli = project.cli("runs", "show", run_id)
    assert "2. mllib-" in shown_cli.stdout and "succeeded" in shown_cli.stdout
    assert ray_leftovers(ray_head, run) == []


def test_a_job_lost_with_its_supervisor_is_a_system_error_and_retried(
    tmp_path: Path, ray_head: Any
) -> None:
    """Ray's job supervisor (the actor that holds the job on its node) killed, as a lost node
    would lose it: Ray fails the job without the worker's exit, and ends the worker with it."""
    import psutil

    project = _project(tmp_path, ray_head, retry={"max_attempts": 2, "backoff_s": 0.5})
    run_id, _, worker = _napping_run(project)
    supervisor = psutil.Process(worker).parent()
    while supervisor is not None and "JobSupervisor" not in " ".join(supervisor.cmdline()):
        supervisor = supervisor.parent()
    assert supervisor is not None, "the worker runs under Ray's JobSupervisor actor"

    supervisor.kill()

    registry = Workspace.find(project.root).registry
    wait_for(lambda: get_run(registry, run_id).finished, timeout=180, what="the run to end")
    run = get_run(registry, run_id)
    assert (run.status, run.attempt) == ("succeeded", 2), run.error
    first = views.show(Workspace.find(project.root), run_id)["attempts"][0]
    assert (first["status"], first["failure_class"]) == ("failed", "system_error")
    log = (Path(views.show(Workspace.find(project.root), run_id)["log_path"])).read_text()
    assert first["reason"].isprintable() and "\x1b" not in log  # Ray's colours left out
    assert ray_leftovers(ray_head, run) == []


def test_remote_goes_to_ray_when_mllib_toml_says_so(tmp_path: Path, ray_head: Any) -> None:
    project = _project(tmp_path, ray_head)
    toml = project.root / "mllib.toml"
    toml.write_text(toml.read_text().replace("[runtime]\n", '[runtime]\nremote = "ray"\n'))
    (project.root / ".env.remote").write_text((project.root / ".env.local").read_text())

    result = project.cli("train", "model.py", "--remote")

    assert result.returncode == 0, result.stderr
    ws = Workspace.find(project.root)
    run = views.show(ws, views.list_dicts(ws, limit=1)[0]["id"])
    assert run["runtime"] == "ray"
    assert run["runtime_note"] == (
        f"--remote with [runtime] remote = 'ray': a job on the Ray cluster at {ray_head.address}"
    )


def test_an_unreachable_cluster_fails_the_run_as_a_system_error(
    tmp_path: Path,
    ray_head: Any,  # Ray installed (the session's head is not used)
) -> None:
    project = make_project(
        tmp_path,
        RuntimeUnderTest("ray", lambda run: [], tables={"ray": {"address": "http://127.0.0.1:9"}}),
    )

    result = project.cli("train", "model.py")

    assert result.returncode == 3, result.stderr
    run = views.list_dicts(Workspace.find(project.root), limit=1)[0]
    assert (run["status"], run["failure_class"]) == ("failed", "system_error")
    assert run["error"].startswith(
        "the ray runtime could not start: no Ray cluster answers at http://127.0.0.1:9"
    )


def test_ray_check_reports_the_cluster(tmp_path: Path, ray_head: Any) -> None:
    project = _project(tmp_path, ray_head)

    shown = project.cli("ray", "check")
    as_json = project.cli("ray", "check", "--json")

    assert shown.returncode == 0, shown.stderr
    assert f"address  {ray_head.address}" in shown.stdout
    assert "cpus  2 free of 2" in shown.stdout
    assert "auth  token" in shown.stdout
    report = json.loads(as_json.stdout)
    assert report["version"] and report["gpus_total"] == 0
    assert ray_head.env["RAY_AUTH_TOKEN"] not in shown.stdout + shown.stderr + as_json.stdout


def test_ray_check_without_a_cluster_says_what_to_do(tmp_path: Path, ray_head: Any) -> None:
    result = project_cli(tmp_path, "ray", "check", "--address", "http://127.0.0.1:9")

    assert result.returncode == 3
    assert "no Ray cluster answers at http://127.0.0.1:9" in result.stderr
    assert "ray start --head" in result.stderr


def project_cli(folder: Path, *args: str):
    from tests.conftest import run_cli

    return run_cli(list(args), folder)


def test_secrets_never_reach_the_clusters_job_table(tmp_path: Path, ray_head: Any) -> None:
    from ray.job_submission import JobSubmissionClient

    project = _project(tmp_path, ray_head)
    run = project.train()

    assert run.status == "succeeded", run.error
    jobs = [
        j
        for j in JobSubmissionClient(ray_head.address).list_jobs()
        if (j.metadata or {}).get("mllib_run") == run.id
    ]
    assert len(jobs) == 1
    assert "s3cret" not in json.dumps(jobs[0].runtime_env) + jobs[0].entrypoint
    assert not (project.root / ".mllib" / "runs" / run.id / "job_env.json").exists()


def test_a_job_ray_holds_for_resources_is_queued_with_rays_reason_until_cancelled(
    tmp_path: Path, ray_head: Any
) -> None:
    # the session's head has no GPU: Ray holds a job that asks for one PENDING
    project = _project(tmp_path, ray_head, ray={"address": ray_head.address, "num_gpus": 1})
    started = project.cli("train", "model.py", "--detach")
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip().splitlines()[-1]
    registry = Workspace.find(project.root).registry

    wait_for(
        lambda: "waiting for resources" in (get_run(registry, run_id).phase or ""),
        timeout=120,
        what="Ray's reason",
    )

    assert get_run(registry, run_id).status == "queued"
    shown = project.cli("runs", "show", run_id)
    assert "queued" in shown.stdout.splitlines()[0]
    assert "waiting:   waiting for the cluster to start its job: Job has not started yet." in (
        shown.stdout
    )
    listed = project.cli("runs", "list", "--status", "queued")
    assert run_id in listed.stdout
    cancelled = project.cli("runs", "cancel", run_id)
    assert cancelled.returncode == 0, cancelled.stderr
    run = get_run(registry, run_id)
    assert run.status == "cancelled"
    # nothing of it runs; Ray cannot stop a PENDING job (ray-project/ray#58353): its stop_job
    # is a call queued for the job's supervisor actor, which has not started
    assert [left for left in ray_leftovers(ray_head, run) if "(PENDING)" not in left] == []
    _supervisor_ends(run)


def _supervisor_ends(run: Any) -> None:
    """The run's `mllib runs supervise` process exits (it would wait for Ray forever)."""
    assert run.supervisor_pid
    wait_for(
        lambda: not is_alive(run.supervisor_pid, run.supervisor_ctime),
        timeout=30,
        what=f"the supervisor of {run.id} to exit",
    )


def test_a_job_ray_starts_makes_the_run_running(tmp_path: Path, ray_head: Any) -> None:
    project = _project(tmp_path, ray_head)
    run_id, _, _ = _napping_run(project)  # its worker runs

    registry = Workspace.find(project.root).registry
    wait_for(lambda: get_run(registry, run_id).status != "queued", timeout=30, what="running")
    run = get_run(registry, run_id)
    assert run.status == "running" and "waiting" not in (run.phase or "")
    wait_for(lambda: get_run(registry, run_id).finished, timeout=180, what="the run to end")
    assert get_run(registry, run_id).status == "succeeded"


def test_runs_past_max_pending_wait_here_unsubmitted_in_their_order(
    tmp_path: Path, ray_head: Any
) -> None:
    from ray.job_submission import JobSubmissionClient

    def pending() -> int:  # a cancelled run's job stays PENDING (see the test above)
        return sum(
            1
            for j in JobSubmissionClient(ray_head.address).list_jobs()
            if j.status.value == "PENDING" and "mllib_run" in (j.metadata or {})
        )

    limit = pending() + 1  # this test's first run's job, besides other projects' held ones
    project = _project(
        tmp_path, ray_head, ray={"address": ray_head.address, "num_gpus": 1, "max_pending": limit}
    )
    registry = Workspace.find(project.root).registry
    first = project.cli("train", "model.py", "--detach").stdout.strip().splitlines()[-1]
    wait_for(
        lambda: "Job has not started yet" in (get_run(registry, first).phase or ""),
        timeout=120,
        what="Ray to hold the first run's job",
    )
    second = project.cli("train", "model.py", "--detach").stdout.strip().splitlines()[-1]

    wait_for(
        lambda: "([ray] max_pending)" in (get_run(registry, second).phase or ""),
        timeout=120,
        what="the second run to be held",
    )

    def jobs_of(run_id: str) -> list[str]:
        return [
            str(j.submission_id)
            for j in JobSubmissionClient(ray_head.address).list_jobs()
            if (j.metadata or {}).get("mllib_run") == run_id
        ]

    assert get_run(registry, second).status == "queued"
    shown = project.cli("runs", "show", second).stdout
    assert f"{limit} of mllib's jobs are pending on the cluster" in shown
    assert jobs_of(second) == [] and len(jobs_of(first)) == 1
    assert project.cli("runs", "cancel", first).returncode == 0

    wait_for(lambda: jobs_of(second), timeout=60, what="the second run's job")
    wait_for(
        lambda: "Job has not started yet" in (get_run(registry, second).phase or ""),
        timeout=60,
        what="Ray's reason for the second",
    )
    assert project.cli("runs", "cancel", second).returncode == 0
    for run_id in (first, second):
        run = get_run(registry, run_id)
        assert run.status == "cancelled"
        assert [left for left in ray_leftovers(ray_head, run) if "(PENDING)" not in left] == []
        _supervisor_ends(run)


def test_rays_messages_are_shown_without_its_colours_or_control_characters() -> None:
    """Ray's job messages (a lost job's reason, a PENDING job's) colour actor names and may
    quote what the job printed: `runs show`, `runs list` and the run's log get them plain."""
    from mllib.runtime.ray.client import first_line

    message = RuntimeError("\x1b[36mray::JobSupervisor\x1b[39m died\x07 \u202eevil\nsecond line")

    assert first_line(message) == "ray::JobSupervisor died\\x07 \\u202eevil"


def test_predict_on_ray_with_max_pending_is_submitted_and_answers(
    tmp_path: Path, ray_head: Any
) -> None:
    """`mllib predict` reads the job's output before it waits for its end: the held job is
    submitted from there (it used to wait for a submission nothing made)."""
    project = _project(tmp_path, ray_head, ray={"address": ray_head.address, "max_pending": 50})
    run = project.train()
    assert run.status == "succeeded", run.error

    answer = project.cli(
        "predict",
        "model.py",
        "--run",
        run.id,
        "--runtime",
        "ray",
        "--input",
        '{"x": 4}',
        timeout=180,
    )

    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout)["y"] == 8
