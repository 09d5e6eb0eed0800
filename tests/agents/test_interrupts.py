"""Ctrl-C on an attached remote run (cancel, or detach and keep following in the background), and
an agent host that stays unreachable (the attempt fails as a system error and moves elsewhere)."""

from __future__ import annotations

import signal
import threading

import pytest
from helpers import detached_run, popen_mllib, run_record, wait_finished, workspace
from sshlab import wait_for


def test_ctrl_c_without_a_terminal_cancels_the_remote_run(agents, project, lab):
    proc = popen_mllib("train", "model.py", "--remote", "--steps=300", "--sleep_s=0.1", cwd=project)
    wait_for(lambda: any(h.worker_pids() for h in lab.hosts), what="the remote worker", timeout=60)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 130, err
    assert "cancelled" in err
    wait_for(lambda: all(not h.processes() for h in lab.hosts), timeout=30, what="no process left")


# Detaching hands the run to a background process this one never waits for (by design), which
# Popen reports as a ResourceWarning when its handle is dropped.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_ctrl_c_then_detach_keeps_the_run_going(agents, project, lab):
    from mllib import train

    asked = []

    def detach() -> str:
        asked.append(True)
        return "detach"

    def running_here() -> list:
        ws = workspace(project)
        try:
            return ws.registry.query("SELECT id FROM runs WHERE status = 'running'")
        finally:
            ws.registry.close()

    def press_ctrl_c() -> None:
        wait_for(lambda: any(h.worker_pids() for h in lab.hosts), what="the worker", timeout=60)
        wait_for(running_here, what="the run to be recorded running here")
        signal.raise_signal(signal.SIGINT)

    threading.Thread(target=press_ctrl_c, daemon=True).start()
    record = train(
        "model.py", {"steps": 25, "sleep_s": 0.1}, remote=True, echo=None, on_interrupt=detach
    )
    assert asked and not record.finished  # back at the prompt while the run goes on
    final = wait_finished(project, record.id)
    assert final.status == "succeeded"
    log = (project / ".mllib" / "runs" / record.id / "output.log").read_text()
    assert [x for x in log.splitlines() if x.startswith("step ")] == [
        f"step {i}" for i in range(25)
    ]


def test_unreachable_agent_fails_the_attempt_and_the_run_moves(agents, project, lab):
    (project / "mllib.toml").write_text(
        'name = "steps"\n[retry]\nmax_attempts = 2\nbackoff_s = 0.2\nunreachable_after_s = 2\n'
    )
    run_id = detached_run(project, "--steps=40", "--sleep_s=0.1")
    first = wait_for(lambda: run_record(project, run_id).host, what="placement", timeout=60)
    host = lab.hosts[int(first[1:])]
    wait_for(lambda: host.worker_pids(), what="the remote worker")
    host.stop()  # the host's sshd is gone: connections refused from now on
    try:
        record = wait_finished(project, run_id, timeout=120)
    finally:
        host.start()
    assert record.status == "succeeded" and record.host != first
    from mllib.agents.retry import attempts

    rows = attempts(workspace(project).registry, run_id)
    assert rows[0]["agent"] == first and rows[0]["failure_class"] == "system_error"
    assert "unreachable" in rows[0]["reason"]


def test_ctrl_c_in_a_terminal_asks_detach_or_cancel(agents, project, lab):
    """The real CLI on a pseudo-terminal: Ctrl-C shows the question; answering c cancels."""
    import fcntl
    import os
    import subprocess
    import sys
    import termios

    master, slave = os.openpty()

    def controlling_tty() -> None:  # runs in the child after setsid
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mllib",
            "train",
            "model.py",
            "--remote",
            "--steps=300",
            "--sleep_s=0.1",
        ],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=project,
        env={**os.environ, "NO_COLOR": "1"},
        start_new_session=True,
        preexec_fn=controlling_tty,
    )
    os.close(slave)
    seen = bytearray()

    def screen_has(text: str) -> bool:
        import select

        while select.select([master], [], [], 0.05)[0]:
            try:
                seen.extend(os.read(master, 65536))
            except OSError:
                break
        return text.encode() in seen

    try:
        wait_for(lambda: screen_has("step 2"), what="the run's output", timeout=60)
        os.write(master, b"\x03")  # Ctrl-C
        wait_for(lambda: screen_has("[d]etach"), what="the question", timeout=30)
        os.write(master, b"c\n")
        assert proc.wait(timeout=90) == 130
        wait_for(lambda: screen_has("cancelled"), what="the outcome", timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    wait_for(lambda: all(not h.processes() for h in lab.hosts), timeout=30, what="no process left")
