"""What every process of one server knows about its workers, in shared memory.

Created by the server's main process before anything starts; spawned workers get it pickled with
their LitAPI, forked API servers inherit it. Workers write their pid and whether their model
loaded; API servers read it for /health without asking LitServe's Manager process.
"""

from __future__ import annotations

import multiprocessing as mp
from dataclasses import dataclass

STARTING, LOADING, READY, FAILED = 0, 1, 2, 3
STATE_NAMES = {STARTING: "starting", LOADING: "loading", READY: "ready", FAILED: "failed"}
ERROR_BYTES = 4096


class WorkerBoard:
    """Per worker: pid and state; plus the first load error and a draining flag.

    `workers` slots, of which the first `active` are in use at the start; a server whose process
    count changes (a deployment's, scaled by its controller) takes slots in and out of use."""

    def __init__(self, workers: int, active: int | None = None) -> None:
        ctx = mp.get_context("spawn")
        self.workers = workers
        self._pids = ctx.RawArray("q", workers)
        self._states = ctx.RawArray("b", workers)
        self._active = ctx.RawArray("b", workers)
        for i in range(workers if active is None else active):
            self._active[i] = 1
        self._error = ctx.RawArray("c", ERROR_BYTES)
        self._draining = ctx.RawValue("b", 0)

    def set_worker(self, worker_id: int, pid: int, state: int) -> None:
        self._pids[worker_id] = pid
        self._states[worker_id] = state

    def take(self, worker_id: int) -> None:
        """Slot `worker_id` is in use from now on (a process is starting in it)."""
        self._pids[worker_id] = 0
        self._states[worker_id] = STARTING
        self._active[worker_id] = 1

    def release(self, worker_id: int) -> None:
        """Slot `worker_id` is no longer in use (its process stopped on purpose)."""
        self._active[worker_id] = 0
        self._pids[worker_id] = 0
        self._states[worker_id] = STARTING

    def fail(self, worker_id: int, message: str) -> None:
        if not self._error.value:
            self._error.value = message.encode("utf-8", "replace")[: ERROR_BYTES - 1]
        self._states[worker_id] = FAILED

    @property
    def error(self) -> str:
        return self._error.value.decode("utf-8", "replace")

    def drain(self) -> None:
        self._draining.value = 1

    @property
    def draining(self) -> bool:
        return bool(self._draining.value)

    def snapshot(self) -> list[tuple[int, int]]:
        """(pid, state) per worker in use."""
        return [(self._pids[i], self._states[i]) for i in range(self.workers) if self._active[i]]

    def all_ready(self) -> bool:
        return all(state == READY for _, state in self.snapshot())

    def any_failed(self) -> bool:
        return any(state == FAILED for _, state in self.snapshot())


@dataclass(frozen=True)
class Health:
    status: str  # ok, loading, failed, unhealthy, draining
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def check_health(board: WorkerBoard, *, partial: bool = False) -> Health:
    """The server's truthful health: every worker loaded and alive, and not shutting down.
    With `partial` (a deployment's server, whose processes come and go as it scales), one
    process that can answer is enough."""
    from mllib.runtime.processes import is_alive

    if board.draining:
        return Health("draining", "the server is shutting down")
    if board.any_failed():
        return Health("failed", board.error or "a worker failed to load the model")
    snapshot = board.snapshot()
    ready = sum(1 for pid, state in snapshot if state == READY and is_alive(pid))
    if partial and ready:
        return Health("ok", "" if ready == len(snapshot) else f"{ready} of {len(snapshot)} ready")
    for worker_id, (pid, _state) in enumerate(snapshot):
        if pid and not is_alive(pid):
            return Health(
                "unhealthy", f"worker {worker_id} (pid {pid}) died; it is being restarted"
            )
    loading = sum(1 for _, state in snapshot if state != READY)
    if loading:
        return Health(
            "loading", f"{loading} of {len(snapshot)} workers are still loading the model"
        )
    return Health("ok")
