"""Who drives a run to its end: its backend, chosen once per run from its recorded runtime.

A backend supervises a run (starts it, follows it, records it, gives it a final status), cancels
it, and settles it when the process that supervised it is gone. Runs of the local runtimes
(process, docker) have the local backend: mllib's own supervisor, here. Runs recorded with the
`ssh` runtime have the agents backend: it places them on agent hosts, where mllib's supervisor
drives them with a local runtime again, and follows them from here. Backends are registered by
name and imported only when a run needs one, like the runtimes, so `mllib --help` stays light.

>>> backend_for(run).cancel(ws, run, timeout_s=30)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from mllib.agents import REMOTE_RUNTIME
from mllib.errors import UsageError

if TYPE_CHECKING:
    from mllib.registry.runs import RunRecord
    from mllib.workspace import Workspace

BACKENDS = {
    "local": "mllib.runs.backends:LocalBackend",
    "agents": "mllib.agents.backend:AgentsBackend",
}
# The runtimes whose runs another backend than the local one drives.
RUNTIME_BACKENDS = {REMOTE_RUNTIME: "agents"}

Echo = Callable[[bytes], None]


class Backend(Protocol):
    """Drives runs of some runtimes; every method takes the run's current record."""

    name: str

    def supervise(
        self,
        ws: Workspace,
        run: RunRecord,
        *,
        echo: Echo | None,
        cancel_grace_s: float | None,
        on_interrupt: Callable[[], str] | None,
    ) -> RunRecord:
        """Run `run` to its end here (attached or in a background process); its final record."""

    def cancel(self, ws: Workspace, run: RunRecord, *, timeout_s: float) -> RunRecord:
        """Stop an unfinished run and everything it started; its final record."""

    def settle(self, ws: Workspace, run: RunRecord) -> bool:
        """An active run whose supervising process is gone: finish or resume it. True when it
        was failed here (the caller reports those)."""


def backend_name(runtime: str | None) -> str:
    """The backend that drives runs of `runtime`."""
    return RUNTIME_BACKENDS.get(runtime or "process", "local")


def get_backend(name: str) -> Backend:
    """An instance of the backend registered as `name`."""
    if name not in BACKENDS:
        raise UsageError(f"Unknown run backend {name!r}", hint=f"One of: {', '.join(BACKENDS)}.")
    module_name, _, class_name = BACKENDS[name].partition(":")
    return getattr(importlib.import_module(module_name), class_name)()


def backend_for(run: RunRecord) -> Backend:
    """The backend of a recorded run."""
    return get_backend(backend_name(run.runtime))


class LocalBackend:
    """Runs on this machine, under mllib's supervisor, with the run's runtime (process, docker)."""

    name = "local"

    def supervise(
        self,
        ws: Workspace,
        run: RunRecord,
        *,
        echo: Echo | None,
        cancel_grace_s: float | None,
        on_interrupt: Callable[[], str] | None,
    ) -> RunRecord:
        from mllib.runs.supervisor import supervise_local

        return supervise_local(ws, run, echo=echo, cancel_grace_s=cancel_grace_s)

    def cancel(self, ws: Workspace, run: RunRecord, *, timeout_s: float) -> RunRecord:
        from mllib.runs.control import cancel_local

        return cancel_local(ws, run, timeout_s=timeout_s)

    def settle(self, ws: Workspace, run: RunRecord) -> bool:
        from mllib.runs.control import settle_local

        return settle_local(ws, run)
