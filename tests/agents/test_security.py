"""What an agent's configuration and runs may leave or do on its host, against real sshd hosts:
no agent field reaches the host's shell as code, a run's env-file secrets go when the run ends
(synced or not), and host keys trusted at the same moment are all kept."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import threading
from pathlib import Path

import pytest
from helpers import add_agent_cli, detached_run, mllib, run_record
from sshlab import wait_for

from mllib.agents.config import AgentSpec

SECRET = "t0p-s3cret-value"


def test_a_python_with_shell_metacharacters_is_refused_before_anything_runs(lab, mllib_home):
    host = lab.hosts[0]
    marker = host.home / "injected"
    result = add_agent_cli(
        lab, host, "a", "--trust-host-key", "--python", f"python3; touch {marker}"
    )
    assert result.returncode == 2, result.stderr
    assert "Invalid `python`" in result.stderr and "absolute path" in result.stderr
    assert not marker.exists()
    assert mllib("agents", "list", "--json").stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ("python = 3", "python"),
        ('python = "python3 && curl x | sh"', "python"),
        ('root = "relative/agent"', "root"),
        ('root = "/srv/$(id)"', "root"),
        ('user = "ml; reboot"', "user"),
        ('host = "h -oProxyCommand=x"', "host"),
        ("port = 70000", "port"),
        ("gpus = -1", "gpus"),
    ],
)
def test_a_malformed_agent_in_mllib_toml_is_a_usage_error_naming_the_field(
    tmp_path, mllib_home, line, field
):
    host = "" if field == "host" else 'host = "h1"\n'
    (tmp_path / "mllib.toml").write_text(f'[[agents]]\nname = "box"\n{host}{line}\n')
    (tmp_path / "model.py").write_text("class M:\n    def train(self):\n        pass\n")
    result = mllib("agents", "list", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert f"Invalid `{field}`" in result.stderr and "mllib.toml" in result.stderr


def test_a_project_cannot_point_a_users_agent_elsewhere(tmp_path, mllib_home):
    """A cloned project's `[[agents]] name = "gpu1"` aimed at another host, port, login or
    folder is refused (exit 2) naming both; the same definition is fine."""
    from mllib.agents.config import save_agent

    save_agent(AgentSpec("gpu1", host="10.0.0.5", user="ml"))
    (tmp_path / "model.py").write_text(
        "class M:\n    def train(self):\n        pass\n\n    def predict(self, request):\n"
        "        return request\n"
    )

    def declare(**changed: object) -> None:
        fields = {"name": "gpu1", "host": "10.0.0.5", "user": "ml", "gpus": 2, **changed}
        lines = [f"{k} = {json.dumps(v)}" for k, v in fields.items()]
        (tmp_path / "mllib.toml").write_text("[[agents]]\n" + "\n".join(lines) + "\n")

    declare()
    listed = mllib("agents", "list", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert [(a["name"], a["host"], a["gpus"]) for a in json.loads(listed.stdout)] == [
        ("gpu1", "10.0.0.5", 2)
    ]

    for field, value in (
        ("host", "evil.example"),
        ("port", 2222),
        ("user", "root"),
        ("root", "/x"),
    ):
        declare(**{field: value})
        for args in (("agents", "list"), ("train", "model.py", "--agent", "gpu1")):
            refused = mllib(*args, cwd=tmp_path)
            assert refused.returncode == 2, refused.stderr
            message = " ".join(refused.stderr.split())
            assert "declares agent 'gpu1'" in message and "host='10.0.0.5'" in message
            assert f"{field}={value!r}" in message and str(mllib_home) in message
            assert "Rename one" in message
    runs = tmp_path / ".mllib" / "runs"
    assert not runs.exists() or not any(runs.iterdir())  # nothing was recorded


def test_the_hosts_shell_never_runs_the_python_name_as_code(lab, mllib_home):
    """Should a bad name get past validation (defence in depth), the host's shell takes it as
    one argument: a name that is not found, not a command line."""
    from mllib.agents.connection import connect
    from mllib.agents.install import AgentInstallError, host_python

    host = lab.hosts[0]
    marker = host.home / "injected"
    spec = AgentSpec("a", **lab.spec_args(host))
    object.__setattr__(spec, "python", f"python3;touch {marker};echo /x")
    with connect(spec, trust_host_key=True) as conn:
        with pytest.raises(AgentInstallError, match="no python3;touch"):
            host_python(conn)
        object.__setattr__(spec, "python", "python3")
        assert host_python(conn) == "/usr/bin/python3"
    assert not marker.exists()


def _agent_status(host, run_id: str) -> str | None:
    with sqlite3.connect(f"file:{host.agent_root / 'registry.db'}?mode=ro", uri=True) as db:
        row = db.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
    return row[0] if row else None


def _start_unsynced(project: Path, host, *args: str) -> tuple[str, Path]:
    """A detached run on `host` whose local follower is killed once it started: nothing syncs it
    (nor releases its working copy) afterwards. Returns its id and its env file on the agent."""
    (project / ".env.remote").write_text(f"API_TOKEN={SECRET}\n")
    run_id = detached_run(project, "--agent", "h0", *args)
    env_file = host.agent_root / "work" / run_id / ".env.remote"
    wait_for(env_file.exists, timeout=60, what="the run's env file on the agent")
    follower = wait_for(lambda: run_record(project, run_id).supervisor_pid, what="the follower")
    os.kill(follower, signal.SIGKILL)
    return run_id, env_file


def test_a_runs_env_file_leaves_the_agent_when_the_run_ends_though_never_synced(
    agents, project, lab
):
    host = lab.hosts[0]
    run_id, env_file = _start_unsynced(project, host, "--steps=6", "--sleep_s=0.3")
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert SECRET in env_file.read_text()

    wait_for(lambda: _agent_status(host, run_id) == "succeeded", timeout=60, what="the run's end")

    wait_for(lambda: not env_file.exists(), timeout=10, what="the env file to go")
    assert (env_file.parent / "model.py").exists()  # not released: nobody synced the run
    assert not any(SECRET in p.read_text(errors="ignore") for p in _files(host.agent_root))


def test_an_env_file_left_by_a_killed_supervisor_goes_at_the_next_contact(agents, project, lab):
    host = lab.hosts[0]
    run_id, env_file = _start_unsynced(project, host, "--steps=1000", "--sleep_s=0.2")
    wait_for(host.worker_pids, timeout=60, what="the remote worker")
    for pid in host.supervisor_pids() + host.worker_pids():
        os.kill(pid, signal.SIGKILL)  # nothing of the run's own is left to clean up

    checked = mllib("agents", "check", "h0", cwd=project)

    assert checked.returncode == 0, checked.stderr
    assert _agent_status(host, run_id) == "failed"
    assert not env_file.exists()


def test_a_remote_runs_secret_params_go_when_it_is_cancelled_with_no_follower(agents, project, lab):
    """`--api_key=...` waits in a 0600 file of the run for any retry; a cancel with nobody
    following the run (its follower killed) deletes it, as the end of a local run does."""
    from mllib.agents.supervise import lock_holder
    from mllib.runs.control import cancel
    from mllib.workspace import Workspace

    host = lab.hosts[0]
    model = project / "model.py"
    model.write_text(
        model.read_text().replace(
            "self.total = 0.0", 'self.total = 0.0\n        self.api_key = mllib.Param("")'
        )
    )
    run_id = detached_run(
        project, "--agent", "h0", "--steps=1000", "--sleep_s=0.2", f"--api_key={SECRET}"
    )
    secrets_file = project / ".mllib" / "runs" / run_id / "secret_params.json"
    wait_for(host.worker_pids, timeout=60, what="the remote worker")
    os.kill(run_record(project, run_id).supervisor_pid, signal.SIGKILL)
    wait_for(lambda: lock_holder(secrets_file.parent) is None, what="the follower to be gone")
    assert SECRET in secrets_file.read_text()

    ws = Workspace.find(project)
    try:
        record = cancel(ws, run_id)
    finally:
        ws.registry.close()

    assert record.status == "cancelled"
    assert not secrets_file.exists()
    wait_for(lambda: not host.worker_pids(), timeout=30, what="the remote worker to end")


def _files(root: Path):
    for folder, _dirs, names in os.walk(root):
        if "/venv" in folder or "/lib/" in folder:
            continue
        for name in names:
            path = Path(folder) / name
            if path.is_file() and path.stat().st_size < 1 << 20:
                yield path


def test_host_keys_trusted_at_the_same_moment_are_all_kept(lab, mllib_home):
    """Ten first contacts at once (both hosts, each by five names for 127.0.0.1) each record
    their key; none rewrites the file from a stale copy."""
    from mllib.agents.connection import connect
    from mllib.agents.hostkeys import known_hosts_path

    for host in lab.hosts:
        if host.sshd_pid is None:
            host.start()
    specs = [
        AgentSpec(f"h{i}{name}", **{**lab.spec_args(host), "host": name})
        for i, host in enumerate(lab.hosts)
        for name in ("127.0.0.1", "localhost", "127.1", "127.0.1", "2130706433")
    ]
    barrier = threading.Barrier(len(specs))
    errors: list[BaseException] = []

    def contact(spec: AgentSpec) -> None:
        try:
            barrier.wait(timeout=30)
            connect(spec, trust_host_key=True).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=contact, args=(spec,)) for spec in specs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    path = known_hosts_path()
    lines = path.read_text().splitlines()
    labels = sorted(line.split()[0] for line in lines)
    assert labels == sorted(f"[{s.host}]:{s.port}" for s in specs)  # each once
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    for spec in specs:  # known now: connecting without trust works
        connect(spec).close()
