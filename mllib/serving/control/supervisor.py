"""A deployment's supervisor (`python -m mllib.serving.control.supervisor FLEET_SPEC.json`): it
runs the deployment's controller and starts it again when it dies, as a process supervisor would
(systemd's Restart=on-failure with a start limit).

A controller that exits on its own (stopped: 0; its first start failed: 3) is not restarted.
One that dies otherwise (killed, a crash) is started again after [deploy] restart_backoff_s,
doubled by each further failure (at most MAX_BACKOFF_S); the new controller takes over the
running servers (fleet.json). After restart_limit failures within restart_window_s it gives up:
every process of the deployment still running is stopped (by its records, here and on its
agents) and the deployment is marked `failed` with the reason. Each restart and the give-up are in `mllib deploy history`;
supervisor.json says what it is doing, which `mllib deploy status` shows ("restarting (attempt
2, next in 4s)").

The controller is killed with its supervisor (PR_SET_PDEATHSIG): a supervisor killed -9 leaves
the servers serving, and the next command that looks at deployments starts a supervisor again,
whose controller takes them over. SIGTERM is passed on to the controller (a graceful stop).
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from mllib.serving import pids
from mllib.serving.control import events, process
from mllib.serving.control.fleet import FleetSpec, read_state
from mllib.serving.spec import write_private

log = logging.getLogger("mllib.serving.supervisor")
SUPERVISOR_FILE = "supervisor.json"
MAX_BACKOFF_S = 60.0
EXIT_START_FAILED = 3  # the controller's: its servers never started
PRUNE_EVERY_S = 30.0


def backoff_s(failures: int, first_s: float) -> float:
    """The wait before restart number `failures` (1, 2, ...): doubling from `first_s`."""
    return min(first_s * 2 ** (failures - 1), MAX_BACKOFF_S)


def why_exited(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


def read(folder: Path) -> dict[str, Any]:
    """What the supervisor of the deployment in `folder` last said it was doing."""
    try:
        return json.loads((folder / SUPERVISOR_FILE).read_text())
    except (OSError, ValueError):
        return {}


def summary(state: dict[str, Any], now: float | None = None) -> str | None:
    """`restarting (attempt 2, next in 4s)`, or the reason it gave up; None while all is well."""
    if state.get("state") == "restarting":
        wait = max(0.0, float(state.get("next_at") or 0) - (now or time.time()))
        return f"restarting (attempt {state.get('attempt')}, next in {wait:.0f}s)"
    if state.get("state") == "failed":
        return f"failed: {state.get('reason')}"
    return None


class Supervisor:
    def __init__(self, spec_path: Path, spec: FleetSpec) -> None:
        self.spec_path = spec_path
        self.spec = spec
        self.folder = Path(spec.dir)
        self.records = pids.folder_of(self.folder)
        self.stop_requested = threading.Event()
        self.child: subprocess.Popen | None = None
        self.failures: list[float] = []
        self.attempt = 0
        self.restarts = 0

    def run(self) -> int:
        while True:
            self._start()
            code = self._wait()
            if self.stop_requested.is_set() or code == 0:
                self._write("stopped")
                return code
            if code == EXIT_START_FAILED and self.restarts == 0:
                self._write("stopped")
                return code  # never started: the deploy says why
            why = f"the controller {why_exited(code)}"
            now = time.monotonic()
            self.failures = [t for t in self.failures if now - t < self.spec.restart_window_s]
            self.failures.append(now)
            if len(self.failures) >= self.spec.restart_limit:
                return self._give_up(why)
            delay = backoff_s(len(self.failures), self.spec.restart_backoff_s)
            self._write("restarting", next_at=time.time() + delay, reason=why)
            log.warning(f"{why}; starting it again in {delay:g}s", extra={"event": "restart"})
            if self.stop_requested.wait(delay):  # stopped with no controller: its servers drain
                self._stop_everything()
                self._write("stopped")
                return 0
            self.restarts += 1
            self._event("ok", f"{why}; started again (restart {self.restarts}, after {delay:g}s)")

    def stop(self) -> None:
        """SIGTERM: no more restarts; the controller stops the deployment gracefully."""
        self.stop_requested.set()
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)

    def _start(self) -> None:
        self.attempt += 1
        self.child = subprocess.Popen(
            [sys.executable, "-m", process.CONTROLLER, str(self.spec_path)],
            stdin=subprocess.DEVNULL,
            preexec_fn=lambda: pids.die_with_parent(signal.SIGKILL),
        )
        pids.record(self.records, self.child.pid, role="controller")
        self._write("running")
        if self.stop_requested.is_set():  # a SIGTERM came while it started
            self.child.send_signal(signal.SIGTERM)

    def _wait(self) -> int:
        """The controller's exit code, once it exits; meanwhile the records of processes that
        ended (replicas scaled down, replaced) are removed now and then."""
        assert self.child is not None
        while True:
            try:
                return self.child.wait(timeout=PRUNE_EVERY_S)
            except subprocess.TimeoutExpired:
                pids.prune(self.records)

    def _give_up(self, why: str) -> int:
        reason = (
            f"gave up: the controller failed {len(self.failures)} times within "
            f"{self.spec.restart_window_s:g}s ([deploy] restart_limit); last, {why}"
        )
        self._write("failed", reason=reason)
        log.error(reason, extra={"event": "restart"})
        on_agents = self._stop_everything()
        if on_agents:
            reason += f"; its replicas on agents stopped ({on_agents})"
        row = self._row()
        self._event("failed", reason, row=row)
        self._mark_failed(row, reason)
        return 1

    def _stop_everything(self) -> str:
        """Every process of the deployment stopped: here by its records, and on its agents by
        theirs (the controller that ran them is gone); what happened on each agent."""
        process.stop_recorded(self.records, grace_s=self.spec.stop_grace_s)
        if not self.spec.agents:
            return ""
        from mllib.serving.control.agentservers import stop_on_agents

        outcome = stop_on_agents(self.spec.deployment, self.spec.agents, self.spec.stop_grace_s)
        return ", ".join(f"{name}: {what}" for name, what in sorted(outcome.items()))

    def _row(self) -> str:
        return read_state(self.folder).get("row") or self.spec.deployment

    def _mark_failed(self, row: str, reason: str) -> None:
        from mllib.registry.db import Registry
        from mllib.registry.runs import now
        from mllib.serving.control import records

        try:
            reg = Registry.open(Path(self.spec.registry_path))
            try:
                records.update(reg, row, state="failed", error=reason, stopped_at=now())
            finally:
                reg.close()
        except Exception:  # the next command reconciles it (crashed)
            log.exception("could not mark the deployment failed", extra={"event": "restart"})

    def _event(self, result: str, reason: str, row: str | None = None) -> None:
        state = read_state(self.folder)
        servable = (state.get("stable_spec") or {}).get("servable") or {}
        events.record(
            self.spec, log, action="restart", result=result, reason=reason,
            row=row or self._row(), model=servable.get("model") or self.spec.stable.servable.model,
            version=servable.get("version", self.spec.stable.servable.version),
        )  # fmt: skip

    def _write(self, state: str, **fields: Any) -> None:
        child = self.child.pid if self.child is not None else None
        data = {"state": state, "attempt": self.attempt + (state == "restarting"),
                "restarts": self.restarts, "controller_pid": child, "time": time.time(), **fields}  # fmt: skip
        write_private(self.folder / SUPERVISOR_FILE, json.dumps(data))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m mllib.serving.control.supervisor FLEET_SPEC.json", file=sys.stderr)
        return 2
    spec_path = Path(args[0])
    spec = FleetSpec.read(spec_path)
    from mllib.serving import logs

    logs.configure(
        logs.JSON,
        {"env": spec.env, "model": spec.stable.servable.model, "deployment": spec.deployment},
    )
    supervisor = Supervisor(spec_path, spec)

    def handler(signum: int, frame: Any) -> None:
        supervisor.stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
