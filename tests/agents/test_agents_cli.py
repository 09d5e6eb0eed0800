"""`mllib agents add/list/check/remove`, host keys, and keeping the agent program up to date,
against real sshd hosts. (No GPU here: the GPU count comes from --gpus.)"""

from __future__ import annotations

import json
import os
import stat
import subprocess

import pytest
from helpers import add_agent_cli, mllib

from mllib.agents.hostkeys import HostKeyError, known_hosts_path

_add = add_agent_cli


def _fingerprint(host) -> str:
    out = subprocess.run(
        ["ssh-keygen", "-lf", f"{host.host_key}.pub"], capture_output=True, text=True, check=True
    ).stdout
    return out.split()[1]


def test_first_contact_shows_the_fingerprint_and_refuses_without_trust(lab, mllib_home):
    host = lab.hosts[0]
    result = _add(lab, host)  # no terminal to ask in, no --trust-host-key
    assert result.returncode == 3
    assert "is not known" in result.stderr and _fingerprint(host) in result.stderr
    assert "--trust-host-key" in result.stderr
    assert mllib("agents", "list", "--json").stdout.strip() == "[]"


def test_first_contact_asks_once_then_remembers_the_key(lab, mllib_home):
    from mllib.agents.api import add_agent, check_agent

    host = lab.hosts[0]
    asked = []

    def confirm(label, key_type, fingerprint):
        asked.append((label, key_type, fingerprint))
        return True

    add_agent("a", **lab.spec_args(host), confirm=confirm)
    assert asked == [(f"[127.0.0.1]:{host.port}", "ssh-ed25519", _fingerprint(host))]
    path = known_hosts_path()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert f"[127.0.0.1]:{host.port}" in path.read_text()
    report = check_agent("a")  # known now: nobody is asked
    assert report["reachable"] and len(asked) == 1


def test_a_declined_key_is_not_recorded(lab, mllib_home):
    from mllib.agents.api import add_agent

    with pytest.raises(HostKeyError, match="not known"):
        add_agent("a", **lab.spec_args(lab.hosts[0]), confirm=lambda *a: False)
    assert not known_hosts_path().read_text().strip()


def test_changed_host_key_is_refused_with_what_to_check(lab, mllib_home):
    host = lab.hosts[1]
    assert _add(lab, host, "b", "--trust-host-key").returncode == 0
    old = _fingerprint(host)
    host.stop()
    host.new_host_key()
    host.start()
    result = mllib("agents", "check", "b")
    assert result.returncode == 3
    assert (
        "CHANGED" in result.stderr and old in result.stderr and _fingerprint(host) in result.stderr
    )
    assert "forget-host-key" in result.stderr
    # --trust-host-key never overrides a changed key
    assert _add(lab, host, "b", "--trust-host-key").returncode == 3
    assert mllib("agents", "forget-host-key", "b").returncode == 0
    assert _add(lab, host, "b", "--trust-host-key").returncode == 0


def test_add_list_check_remove(lab, mllib_home):
    host = lab.hosts[0]
    added = _add(lab, host, "gpu1", "--gpus", "2", "--trust-host-key")
    assert added.returncode == 0, added.stderr
    assert "python:      3.11" in added.stdout and "2 (configured)" in added.stdout
    [row] = json.loads(mllib("agents", "list", "--json").stdout)
    assert row["name"] == "gpu1" and row["port"] == host.port and row["gpus"] == 2
    report = json.loads(mllib("agents", "check", "gpu1", "--json").stdout)
    assert report["reachable"] and report["slots"] == 2 and report["disk_free_gb"] > 0
    assert report["docker"] is False and report["runtimes"]["process"] == "available"
    assert report["python"].startswith("3.11")
    assert mllib("agents", "remove", "gpu1").returncode == 0
    assert json.loads(mllib("agents", "list", "--json").stdout) == []
    assert mllib("agents", "check", "gpu1").returncode == 4
    again = _add(lab, host, "gpu2", "--trust-host-key", "--json")  # the program is there already
    assert again.returncode == 0, again.stderr
    answer = json.loads(again.stdout)  # the shape `agents check --json` prints
    assert set(answer) == set(report) - {"seconds"}  # check also says how long it took
    assert answer["name"] == "gpu2" and answer["reachable"]
    assert answer["updated_now"] is False and answer["slots"] == 1
    assert mllib("agents", "rm", "gpu2").returncode == 0  # `remove` is the older spelling


def test_agent_runs_as_its_user_with_the_system_python_and_updates_on_version_change(
    lab, mllib_home
):
    from mllib.agents.api import add_agent, check_agent

    host = lab.hosts[0]
    add_agent("a", **lab.spec_args(host), trust_host_key=True)
    root = host.home / ".mllib-agent"
    assert "home = /usr/bin" in (root / "venv" / "pyvenv.cfg").read_text()
    assert os.stat(root).st_uid == os.stat(host.home).st_uid != 0
    assert check_agent("a")["updated_now"] is False  # same version: nothing reinstalled
    (root / "installed").write_text("0.0.0 old\n")
    assert check_agent("a")["updated_now"] is True  # a mismatch reinstalls
    assert check_agent("a")["updated_now"] is False


def test_agents_declared_in_mllib_toml(tmp_path, mllib_home):
    from mllib.agents.config import load_agents
    from mllib.config import load_config
    from mllib.errors import ConfigError

    toml = tmp_path / "mllib.toml"
    toml.write_text('[[agents]]\nname = "box"\nhost = "10.0.0.9"\nport = 2222\ngpus = 4\n')
    [spec] = load_agents(load_config(toml))
    assert (spec.name, spec.host, spec.port, spec.slots(None)) == ("box", "10.0.0.9", 2222, 4)
    toml.write_text('[[agents]]\nname = "box"\nhost = "h"\nbogus = 1\n')
    with pytest.raises(ConfigError, match="bogus"):
        load_agents(load_config(toml))


ADD_AGENTS = """
import os, sys, time
from mllib.agents.config import AgentSpec, delete_agent, save_agent

go, prefix = sys.argv[1], sys.argv[2]
while not os.path.exists(go):
    time.sleep(0.001)
for i in range(12):
    save_agent(AgentSpec(f"{prefix}{i}", host="10.0.0.9"))
    if i % 2:
        delete_agent(f"{prefix}{i - 1}")
"""


def test_agents_added_and_removed_at_the_same_moment_are_all_kept(tmp_path, mllib_home):
    """Four processes each add twelve agents and remove six, all at once: agents.json ends
    with every agent kept, stays valid JSON and 0600, and leaves no temporary file."""
    import sys

    go = tmp_path / "go"
    procs = [
        subprocess.Popen([sys.executable, "-c", ADD_AGENTS, str(go), prefix])
        for prefix in ("a", "b", "c", "d")
    ]
    go.touch()
    assert [proc.wait(timeout=120) for proc in procs] == [0, 0, 0, 0]

    listed = mllib("agents", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    expected = {f"{p}{i}" for p in "abcd" for i in range(1, 12, 2)}
    assert {agent["name"] for agent in json.loads(listed.stdout)} == expected
    path = mllib_home / "config" / "agents.json"
    assert len(json.loads(path.read_text())["agents"]) == len(expected)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir() if "agents" in p.name) == [
        "agents.json",
        "agents.lock",
    ]


def test_add_checks_its_arguments_before_saying_it_connects(tmp_path, mllib_home):
    bad_name = mllib("agents", "add", "no spaces", "--host", "127.0.0.1")
    assert bad_name.returncode == 2 and "Invalid agent name 'no spaces'" in bad_name.stderr
    no_key = mllib("agents", "add", "a", "--host", "127.0.0.1", "--key", str(tmp_path / "nokey"))
    assert no_key.returncode == 2 and "No key file" in no_key.stderr
    for refused in (bad_name, no_key):
        assert "Connecting" not in refused.stderr


def test_sync_without_agents_says_there_are_none(project, mllib_home):
    result = mllib("agents", "sync")
    assert result.returncode == 0
    assert "No agents to sync" in result.stderr and "mllib agents add" in result.stderr
