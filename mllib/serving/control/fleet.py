"""A deployment as its controller runs it: what the controller is started with (FleetSpec,
`fleet-spec.json`), what it reports (FleetState, `fleet.json`: replicas, variants, the rollout),
and how commands ask it for something (orders: one JSON file each in `orders/`, answered by a
`.done` file beside it).

The controller (controller.py) is the only writer of routes.json and fleet.json; commands never
change a running deployment's files other than by an order, so there is one decider.

Folder of a deployment: fleet-spec.json, status.json (the controller's: starting, ready,
failed, stopped), fleet.json, routes.json, server.log (every process of it appends), metrics/
(shared), servers/ID/ (each server's spec, status and counters), orders/.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mllib.errors import MllibError
from mllib.serving.control.autoscale import Scaling
from mllib.serving.control.judge import Rollout
from mllib.serving.spec import Servable, ServerSpec, http_url, write_private

SPEC_FILE = "fleet-spec.json"
STATE_FILE = "fleet.json"
ORDERS_DIR = "orders"


@dataclass(frozen=True)
class FleetSpec:
    """Everything a deployment's controller needs to run it."""

    deployment: str
    env: str
    dir: str
    registry_path: str
    user: str  # who deployed it
    stable: ServerSpec  # its servers' spec, but for what each server gets of its own
    host: str  # the environment's address (its stable server listens there)
    port: int
    scaling: Scaling
    rollout: Rollout
    cooldown: dict[str, float] = field(default_factory=dict)  # [deploy] cooldown_* for strikes
    ready_timeout_s: float = 180.0
    stop_grace_s: float = 20.0
    log_max_mb: float = 100.0  # [deploy] log_max_mb: the controller rotates server.log
    log_keep: int = 3
    restart_limit: int = 5  # [deploy] restart_*: the supervisor's restart policy
    restart_window_s: float = 300.0
    restart_backoff_s: float = 1.0
    slots: int = 64  # replica slots in the counters (running, starting and draining ones)
    # Replicas on agents (agentservers.py): each agent's AgentSpec (one replica on each), the
    # store their blobs are sent from, and the plan of the server's venv built there.
    agents: list[dict[str, Any]] = field(default_factory=list)
    store: str = ""
    env_plan: dict[str, Any] | None = None
    team_server: str | None = None  # where what it promotes is told (reporting.py), if any

    @property
    def url(self) -> str:
        return http_url(self.host, self.port)

    @property
    def timeout_s(self) -> float:
        return self.stable.timeout_s

    def write(self, path: Path) -> None:
        write_private(path, json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")

    @classmethod
    def read(cls, path: Path) -> FleetSpec:
        data = json.loads(path.read_text())
        return cls(
            **{
                **data,
                "stable": server_spec_from(data["stable"]),
                "scaling": Scaling(**data["scaling"]),
                "rollout": Rollout(**data["rollout"]),
            }
        )


def server_spec_from(data: dict[str, Any]) -> ServerSpec:
    return ServerSpec.from_dict(data)


@dataclass
class Candidate:
    """The version being rolled out beside stable: a canary (by chance, or sticky: an A/B
    test) or a shadow."""

    variant: str  # canary or shadow
    mode: str  # canary, ab or shadow
    spec: ServerSpec  # its replicas' spec
    weight: float  # percent of requests (shadow: copied)
    user: str
    started_at: float
    sticky_by: str | None = None
    salt: str = field(default_factory=lambda: secrets.token_hex(4))
    steps: list[float] = field(default_factory=list)  # promotion steps still to go
    interval_s: float = 0.0
    next_step_at: float | None = None
    verdict: dict[str, Any] = field(default_factory=dict)  # the judge's latest
    rolling_back: str | None = None  # why it is being taken down

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "spec": asdict(self.spec)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Candidate:
        return cls(**{**data, "spec": server_spec_from(data["spec"])})

    @property
    def servable(self) -> Servable:
        return self.spec.servable


def write_state(folder: Path, state: dict[str, Any]) -> None:
    write_private(folder / STATE_FILE, json.dumps(state, sort_keys=True, default=str))


def read_state(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}


# -- orders: a command's request to a running controller ---------------------------------------


class OrderFailed(MllibError):
    """The controller could not do what a command asked."""


def send_order(
    folder: Path, action: str, *, timeout_s: float, alive: Any = None, **fields: Any
) -> dict[str, Any]:
    """Ask the deployment's controller to do `action`; its answer (raises OrderFailed when it
    refused or failed, MllibError when it did not answer in time)."""
    orders = folder / ORDERS_DIR
    orders.mkdir(exist_ok=True)
    name = f"{time.time_ns():020d}-{secrets.token_hex(3)}"
    write_private(orders / f"{name}.json", json.dumps({"action": action, **fields}, default=str))
    done = orders / f"{name}.done"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if done.exists():
            answer = json.loads(done.read_text())
            done.unlink(missing_ok=True)
            if not answer.get("ok"):
                raise OrderFailed(
                    answer.get("error") or f"{action} failed", hint=answer.get("hint")
                )
            return answer.get("result") or {}
        if alive is not None and not alive():
            (orders / f"{name}.json").unlink(missing_ok=True)
            raise MllibError(f"The deployment's controller exited before it answered ({action})")
        time.sleep(0.05)
    (orders / f"{name}.json").unlink(missing_ok=True)
    raise MllibError(
        f"The deployment's controller did not answer {action} within {timeout_s:g}s",
        hint="See `mllib deploy logs` for what it is doing.",
    )


def pending_orders(folder: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Orders not answered yet, oldest first (the controller's side)."""
    orders = folder / ORDERS_DIR
    found = []
    for path in sorted(orders.glob("*.json")) if orders.is_dir() else []:
        try:
            found.append((path, json.loads(path.read_text())))
        except (OSError, ValueError):
            continue  # being written: read it next time
    return found


def answer_order(
    path: Path, *, ok: bool, result: Any = None, error: str | None = None, hint: str | None = None
) -> None:
    write_private(
        path.with_suffix(".done"),
        json.dumps({"ok": ok, "result": result, "error": error, "hint": hint}, default=str),
    )
    path.unlink(missing_ok=True)


# -- the controller's process ---------------------------------------------------------------------


def start_controller(ws: Any, folder: Path, *, marker: str) -> int:
    """Start the controller of the deployment in `folder` under its supervisor (supervisor.py:
    it restarts a controller that dies), a process group of its own, in the project with its
    .env.local values and the Sentry DSN, which its servers inherit; the supervisor's pid. Every
    process of the deployment is recorded in its pids/ folder."""
    from mllib import sentry_plugin
    from mllib.serving import pids
    from mllib.serving.control import process
    from mllib.serving.control.paths import LOG_FILE

    return process.start(
        folder / SPEC_FILE,
        folder / LOG_FILE,
        cwd=ws.project.root,
        env={**ws.project.env_under_shell("local"), **sentry_plugin.environment(ws.project)},
        marker=marker,
        module=process.SUPERVISOR,
        records=pids.folder_of(folder),
        role="supervisor",
    )


def takes_over(folder: Path) -> bool:
    """Whether a new controller can take over this deployment: its stable server still serves."""
    from mllib.runtime.processes import is_alive

    state = read_state(folder)
    stable = state.get("servers", {}).get(state.get("stable_id") or "", {})
    return (folder / SPEC_FILE).exists() and is_alive(stable.get("pid"), stable.get("pid_ctime"))
