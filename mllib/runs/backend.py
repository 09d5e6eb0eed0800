"""The one seam for where a run executes: a Backend drives a recorded run to its end.

Every place that runs work (this machine; agent hosts over SSH; later a server's queue) takes a
recorded run through the same steps, and those steps live here once, in `Backend`'s public
methods: claim the run for this process; turn Ctrl-C, SIGTERM and SIGHUP into a cancel (a second
one skips the grace period), or ask whether to detach when the run can go on without us; stop it
(SIGTERM, then SIGKILL after `[runtime] cancel_grace_s`, or the backend's own way); stop the
process that supervises it from elsewhere and wait for the run to end; discard secret params
once nothing needs them; record when it started and how it ended; hand it to a background
supervisor. Each public method wraps small private ones that hold only the backend's own logic,
as SkyPilot's `Backend.provision` wraps `_provision`:

| step                   | LocalBackend (mllib.runs.local)          | AgentsBackend (mllib.agents.backend) |
|------------------------|------------------------------------------|--------------------------------------|
| an execution           | the worker, under a runtime, here        | attempts on agent hosts              |
| `_start`               | `Runtime.start(job)`                     | nothing yet: placing is a `_poll`    |
| `_poll`                | wait a moment for the worker; record     | place, follow the log, sync, retry   |
|                        | its events                               |                                      |
| `_stop(grace_s)`       | SIGTERM its tree, SIGKILL after grace    | ask the agent to cancel              |
| `_finish`              | store outputs, record the outcome        | nothing: the sync recorded it        |
| `_supervisor`          | the run's recorded supervisor pid        | the holder of the follower lock      |
| `_cancel_unsupervised` | end the worker its supervisor left       | cancel on the agent, from here       |
| `_orphaned`            | fail it as a system_error                | start a new follower: it goes on     |
| attempts and retries   | one attempt                              | system errors retried on another     |
|                        |                                          | agent (mllib.runs.retry.RetryPolicy) |

A server/queue backend would `_start` by enqueueing the run, `_poll` the job's state and `_stop`
by asking the server; a new place for the worker itself (a Ray cluster) is not a backend but a
`Runtime` the local backend starts (mllib.runtime). What a backend cannot do raises a clear error
(`pin`, `check_placement`). `mllib.runs.fake.FakeBackend` is a whole backend in a few lines, for
tests. Backends are found by name (mllib.plugins.BACKENDS), a run's from its recorded runtime:

>>> backend_for(run).cancel(ws, run)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from mllib.errors import UsageError
from mllib.plugins import BACKENDS, RUNTIME_BACKENDS, load
from mllib.protocol.failure import Outcome
from mllib.protocol.folder import RunFolder
from mllib.registry.artifacts import register_model
from mllib.registry.runs import RunRecord, claim_run, finish_run, get_run, now, update_run
from mllib.runs.background import spawn_supervisor
from mllib.runtime.processes import create_time, is_alive

if TYPE_CHECKING:
    from mllib.datasets.binding import Lookup
    from mllib.terminal import Notify
    from mllib.workspace import Workspace

E = TypeVar("E")  # what a backend's `_start` returns: its handle on one execution of a run
Echo = Callable[[bytes], None]  # where a run's output is shown live (None: nowhere)
OnInterrupt = Callable[[], str]  # Ctrl-C on a run that can go on alone: "detach" or "cancel"
STOP_POLL_S = 0.1


class CancelFlag:
    """Set by SIGINT/SIGTERM/SIGHUP; a second signal asks to stop without a grace period."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.forced = threading.Event()

    def __call__(self, signum: int, frame: object) -> None:
        self.request()

    def request(self) -> None:
        """Ask for the run to stop, as a signal would (a caller that supervises runs on threads
        of its own, such as a tuning study pruning a trial, stops one this way)."""
        if self.requested.is_set():
            self.forced.set()
        self.requested.set()


@contextmanager
def cancel_on_signals(flag: CancelFlag) -> Iterator[None]:
    """While inside, SIGINT/SIGTERM/SIGHUP set `flag` instead of stopping the process."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, flag) for s in sigs}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class StartFailed(Exception):
    """Raised by a backend's `_start` when the run cannot start: the outcome to record."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.message)
        self.outcome = outcome


@dataclass
class Supervision:
    """One process supervising one run: what every private method of a backend works with."""

    ws: Workspace
    run: RunRecord  # as it was when supervision began
    folder: RunFolder
    flag: CancelFlag
    grace_s: float  # SIGTERM, then SIGKILL after this long
    notify: Notify
    echo: Echo | None = None
    on_interrupt: OnInterrupt | None = None
    detached: bool = False  # Ctrl-C chose to let the run go on without this process

    def record(self) -> RunRecord:
        """The run's record as it is now."""
        return get_run(self.ws.registry, self.run.id)

    def show(self, chunk: bytes) -> None:
        """Echo the run's output; a terminal that went away stops the echo, not the run."""
        if self.echo is not None:
            try:
                self.echo(chunk)
            except (OSError, ValueError):
                self.echo = None

    def sleep(self, seconds: float) -> None:
        """Wait, waking at once when a cancel is asked for."""
        self.flag.requested.wait(max(0.0, seconds))


class Backend(Generic[E]):
    """Drives runs recorded with some runtimes; every public method takes the run's record."""

    name: str = "backend"
    # Whether a run goes on where it executes when its supervisor goes (Ctrl-C then asks
    # `on_interrupt` whether to detach or cancel, and a supervisor that died is replaced).
    can_detach: bool = False
    # Whether secret params given on the command line stay while the run is active (a later
    # execution, a retry, needs them again); otherwise they go when supervision ends.
    keeps_secret_params: bool = False

    # -- the shared steps ----------------------------------------------------------------------
    def submit(
        self,
        ws: Workspace,
        run: RunRecord,
        *,
        detach: bool = False,
        echo: Echo | None = None,
        on_interrupt: OnInterrupt | None = None,
        on_prepared: Callable[[RunRecord], None] | None = None,
        pin: str | None = None,
        flag: CancelFlag | None = None,
        queue: Mapping[str, int] | None = None,
    ) -> RunRecord:
        """Run a freshly recorded run to its end here, or hand it to a background supervisor.

        From the moment the run is recorded, Ctrl-C ends it as `cancelled`: here until the
        supervisor takes Ctrl-C over (it then cancels the run itself), and through the background
        supervisor if one had already taken the run over. `pin`: where it must execute. `flag`:
        how the caller may stop it while it is supervised here (`CancelFlag.request`). `queue`:
        what a queue's backend asks for (`gpus`, `priority`), which others ignore.
        """
        try:
            if pin is not None:
                self.pin(ws, run, pin)
            if on_prepared is not None:
                on_prepared(run)
            if not detach:
                return self.supervise(ws, run, echo=echo, on_interrupt=on_interrupt, flag=flag)
            spawn_supervisor(ws, run.id)
        except KeyboardInterrupt:
            self._cancel_interrupted(ws, run)
            raise
        return get_run(ws.registry, run.id)

    def supervise(
        self,
        ws: Workspace,
        run: RunRecord,
        *,
        echo: Echo | None = None,
        cancel_grace_s: float | None = None,
        on_interrupt: OnInterrupt | None = None,
        notify: Notify | None = None,
        flag: CancelFlag | None = None,
    ) -> RunRecord:
        """Run `run` to its end in this process (attached, or a background supervisor) and return
        its final record. Ctrl-C or SIGTERM cancels it, or (`can_detach`) asks `on_interrupt`;
        so does `flag.request()` from another thread."""
        ctx = self._supervision(ws, run, echo, cancel_grace_s, on_interrupt, notify)
        if flag is not None:
            ctx.flag = flag
        try:
            with self._exclusive(ctx.folder) as held:
                if not held:
                    return ctx.record()  # another process supervises it
                with cancel_on_signals(ctx.flag):
                    if not claim_run(ws.registry, run.id, os.getpid(), create_time(os.getpid())):
                        return ctx.record()  # it ended before this supervisor took over
                    if ctx.flag.requested.is_set() and ctx.record().status == "queued":
                        return self._cancel_before_start(ctx)
                    record = self._drive(ctx)
        finally:  # however it ended, secret params given on the command line go with it
            if not self.keeps_secret_params or ctx.record().finished:
                ctx.folder.discard_secret_params()
        if ctx.detached:
            spawn_supervisor(ws, run.id)
            ctx.notify(
                f"detached; run {run.id} goes on. Follow it: mllib runs logs {run.id} --follow"
            )
            return ctx.record()
        return record

    def cancel(self, ws: Workspace, run: RunRecord, *, timeout_s: float = 30.0) -> RunRecord:
        """Stop an unfinished run and everything it started; its final record.

        The process supervising it (if another one) is sent SIGTERM, so it cancels the run as
        Ctrl-C would, and waited for up to `timeout_s`; a run nobody supervises (any more) is
        ended from here."""
        run = get_run(ws.registry, run.id)
        if not run.finished:
            holder = self._supervisor(ws, run)
            if holder is not None and holder != os.getpid():
                self._stop_supervisor(ws, run, holder, timeout_s)
            run = get_run(ws.registry, run.id)
            if not run.finished:
                self._cancel_unsupervised(ws, run)
                run = get_run(ws.registry, run.id)
        if run.finished:
            ws.run_folder(run).discard_secret_params()
        return run

    def settle(self, ws: Workspace, run: RunRecord) -> bool:
        """A run whose supervising process may be gone: finish or resume it. True when it was
        failed here (the caller reports those)."""
        run = get_run(ws.registry, run.id)  # it may have finished meanwhile
        if run.finished:
            ws.run_folder(run).discard_secret_params()
            return False
        if self._supervisor(ws, run) is not None:
            return False
        return self._orphaned(ws, run)

    def logs(
        self,
        ws: Workspace,
        run: RunRecord,
        write: Callable[[bytes], None],
        *,
        follow: bool = False,
        poll_s: float = 0.2,
    ) -> str:
        """Write the run's output log; with `follow`, keep writing new output until the run ends
        (settling it should its supervisor be gone). Returns its final status."""
        from mllib.filetail import FileTail

        output = FileTail(ws.run_folder(run).log_file)
        while True:
            run = get_run(ws.registry, run.id)  # status before the file: no output is missed
            while chunk := output.read(1 << 16):
                write(chunk)
            if not follow or run.finished:
                return run.status
            self.settle(ws, run)
            time.sleep(poll_s)

    # -- where a run goes: a backend that places runs answers these ----------------------------
    def check_placement(self, ws: Workspace, pin: str | None) -> None:
        """Refuse, before a run is recorded, what this backend cannot place (no host to run on,
        or an unknown one)."""
        if pin is not None:
            raise self._cannot_pin(pin)

    def pin(self, ws: Workspace, run: RunRecord, where: str) -> None:
        """Make `run` execute on `where` (an agent, for instance) and nowhere else."""
        raise self._cannot_pin(where)

    def _cannot_pin(self, where: str) -> UsageError:
        return UsageError(
            f"Runs of the {self.name} backend cannot be pinned to {where!r}",
            hint="Drop --agent, or use --remote to run on an agent.",
        )

    def dataset_lookup(self, ws: Workspace) -> Lookup | None:
        """Where this backend's runs find the dataset versions `--data` names: None for this
        project's catalog (a team server's runs read the server's)."""
        return None

    def attempts(self, ws: Workspace, run: RunRecord) -> list[dict[str, Any]]:
        """The run's attempts (where, how each ended), for `runs show`; [] when it has one."""
        return []

    # -- what each backend implements -----------------------------------------------------------
    def _start(self, ctx: Supervision) -> E:
        """Start the run (or prepare to); raise StartFailed when it cannot start."""
        raise NotImplementedError

    def _poll(self, ctx: Supervision, execution: E) -> bool:
        """Follow the run for a moment (at most a fraction of a second, or until a cancel is
        asked for); True once it has ended."""
        raise NotImplementedError

    def _stop(self, ctx: Supervision, execution: E, grace_s: float) -> None:
        """End the run and everything it started, within `grace_s` (0: at once)."""
        raise NotImplementedError

    def _finish(self, ctx: Supervision, execution: E, cancelled: bool) -> RunRecord:
        """Store what the run produced and record its outcome (`_record`); its final record."""
        raise NotImplementedError

    def _close(self, ctx: Supervision, execution: E) -> None:
        """Release what `_start` holds (connections), however supervision ended."""

    def _cancel_unsupervised(self, ws: Workspace, run: RunRecord) -> None:
        """Cancel a run no process supervises: end what it left running, record it cancelled."""
        raise NotImplementedError

    def _orphaned(self, ws: Workspace, run: RunRecord) -> bool:
        """A run whose supervisor is gone: fail it (True) or have it picked up again (False)."""
        raise NotImplementedError

    def _cancel_before_start(self, ctx: Supervision) -> RunRecord:
        """A cancel asked for before supervision began: nothing runs yet, so it is recorded
        (a backend whose runs wait elsewhere, in a server's queue, takes them out there too)."""
        return self._record(ctx, Outcome("cancelled", None, "cancelled before it started"))

    def _supervisor(self, ws: Workspace, run: RunRecord) -> int | None:
        """The pid of the live process supervising `run`, or None: the one that claimed it."""
        pid = run.supervisor_pid
        return pid if pid and is_alive(pid, run.supervisor_ctime) else None

    def _exclusive(self, folder: RunFolder) -> contextlib.AbstractContextManager[bool]:
        """Held while this process supervises the run: True, or False when another process
        already does (a backend whose runs change supervisors locks the folder)."""
        return contextlib.nullcontext(True)

    # -- helpers for backends -----------------------------------------------------------------
    def _supervision(
        self,
        ws: Workspace,
        run: RunRecord,
        echo: Echo | None = None,
        cancel_grace_s: float | None = None,
        on_interrupt: OnInterrupt | None = None,
        notify: Notify | None = None,
    ) -> Supervision:
        """The context of supervising `run` from this process (defaults: the project's grace
        period, mllib.terminal.notice)."""
        if notify is None:
            from mllib.terminal import notice

            notify = notice
        grace = (
            ws.project.config.runtime.cancel_grace_s if cancel_grace_s is None else cancel_grace_s
        )
        folder = ws.run_folder(run)
        return Supervision(ws, run, folder, CancelFlag(), grace, notify, echo, on_interrupt)

    def _started(self, ctx: Supervision, **fields: Any) -> None:
        """Record that the run now runs, and since when."""
        update_run(ctx.ws.registry, ctx.run.id, status="running", started_at=now(), **fields)

    def _record(self, ctx: Supervision, outcome: Outcome, *, model: str | None = None) -> RunRecord:
        """Record the run's outcome, with the model version its saved model (`model`, a tree
        hash) makes when it succeeded, in one transaction; its final record."""
        registry = ctx.ws.registry
        with registry.transaction():
            finished = finish_run(
                registry,
                ctx.run.id,
                outcome.status,
                outcome.failure_class,
                outcome.message,
                phase=None,
            )
            if finished and outcome.status == "succeeded" and model:
                register_model(registry, ctx.run.model, ctx.run.id, model)
        return ctx.record()

    # -- the steps' own parts -------------------------------------------------------------------
    def _drive(self, ctx: Supervision) -> RunRecord:
        try:
            execution = self._start(ctx)
        except StartFailed as failed:
            return self._record(ctx, failed.outcome)
        stopping = forced = False
        try:
            while not self._poll(ctx, execution):
                if ctx.flag.requested.is_set() and not stopping:
                    if self._detach_asked(ctx):
                        ctx.detached = True
                        return ctx.record()
                    stopping, forced = True, ctx.flag.forced.is_set()
                    self._stop(ctx, execution, 0 if forced else ctx.grace_s)
                elif ctx.flag.forced.is_set() and stopping and not forced:  # no more grace
                    forced = True
                    self._stop(ctx, execution, 0)
            return self._finish(ctx, execution, stopping)
        finally:
            self._close(ctx, execution)

    def _detach_asked(self, ctx: Supervision) -> bool:
        """Ctrl-C on a run that can go on without us: whether `on_interrupt` chose to detach."""
        if not self.can_detach or ctx.on_interrupt is None:
            return False
        choice = ctx.on_interrupt()
        ctx.flag.requested.clear()
        return choice == "detach"

    def _stop_supervisor(self, ws: Workspace, run: RunRecord, pid: int, timeout_s: float) -> None:
        """SIGTERM the process supervising `run` (it cancels the run as Ctrl-C would) and wait
        until the run has ended or that process is gone."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            current = get_run(ws.registry, run.id)
            if current.finished or self._supervisor(ws, current) is None:
                return
            time.sleep(STOP_POLL_S)

    def _cancel_interrupted(self, ws: Workspace, run: RunRecord) -> None:
        """Ctrl-C in the process that recorded the run, before a supervisor took Ctrl-C over:
        while this process is still its supervisor it is finished here at once (a background
        supervisor started meanwhile then finds it ended and starts nothing); one that already
        took over is asked to cancel it, as `mllib runs cancel` does."""
        with ws.registry.transaction():
            current = get_run(ws.registry, run.id)
            if current.supervisor_pid == os.getpid():
                finish_run(ws.registry, run.id, "cancelled", None, "cancelled before it started")
        self.cancel(ws, run)


def backend_name(runtime: str | None) -> str:
    """The backend that drives runs of `runtime`."""
    return RUNTIME_BACKENDS.get(runtime or "process", "local")


def get_backend(name: str) -> Backend[Any]:
    """An instance of the backend registered as `name` (imported now)."""
    if name not in BACKENDS:
        raise UsageError(f"Unknown run backend {name!r}", hint=f"One of: {', '.join(BACKENDS)}.")
    backend: Backend[Any] = load(BACKENDS[name])()
    return backend


def backend_for(run: RunRecord) -> Backend[Any]:
    """The backend of a recorded run."""
    return get_backend(backend_name(run.runtime))
