"""Everything the dashboard reads from mllib and asks it to do, in one module: the dashboard's only
seam to the library. It calls the same public functions as the CLI (`runs list/show/compare/logs/
cancel/rerun`, `agents list/check`, `queue`, `tune list/show`, `deploy status/history/stop/
rollback`), so the same rules apply, and a library function that moves is a change here alone. No Textual
here: the benchmark and the tests drive it directly.

Runs are refreshed by deltas: `RunsFeed.poll()` asks the registry which runs changed since its
cursor (`mllib.registry.changes`) and re-reads those only, so 10,000 runs cost what the changed few
cost.

>>> source = DashboardData.open()  # doctest: +SKIP
>>> feed = source.runs_feed(RunFilter(status="running"), metric="loss")  # doctest: +SKIP
>>> rows, total = feed.load()  # doctest: +SKIP
>>> feed.poll().changed  # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mllib.filetail import LineTail
from mllib.registry.changes import Cursor, changes_since, current_cursor
from mllib.registry.metrics import latest_values, metric_names, metric_series, points_after
from mllib.registry.runs import (
    ACTIVE,
    RunRecord,
    active_runs,
    count_runs,
    get_run,
    list_runs,
    runs_by_id,
)
from mllib.workspace import Workspace

SPARK_POINTS = 24  # values behind a row's sparkline
CURVE_POINTS = 1_000  # points kept per metric curve: older ones are thinned (every other kept)
LOG_LINES = 500  # lines of a run's log the tail keeps
LOG_START_BYTES = 256 * 1024  # how far back the tail starts in a log that is already long
POINTS_PER_READ = (
    50_000  # metric points read per refresh at most (a long run catches up over a few)
)
RECONCILE_EVERY_S = 5.0  # settle runs whose supervisor died (as every `mllib runs` command does)


# ----------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class RunFilter:
    """Which runs the table shows: exact status, model and user, and `text` in the id or model."""

    status: str | None = None
    model: str | None = None
    user: str | None = None
    text: str | None = None

    def matches(self, row: RunRow) -> bool:
        if self.status and row.status != self.status:
            return False
        if self.model and row.model != self.model:
            return False
        if self.user and row.user != self.user:
            return False
        text = (self.text or "").lower()
        return not text or text in row.id or text in row.model.lower()

    @classmethod
    def parse(cls, text: str) -> RunFilter:
        """`status:running model:clf user:ana words`: fields by name, other words searched."""
        from mllib.errors import UsageError
        from mllib.runs.views import STATUSES

        fields_: dict[str, str] = {}
        words = []
        for token in text.split():
            key, sep, value = token.partition(":")
            if sep and key in ("status", "model", "user") and value:
                fields_[key] = value
            else:
                words.append(token)
        if fields_.get("status") and fields_["status"] not in STATUSES:
            raise UsageError(
                f"Unknown status {fields_['status']!r}", hint=f"Use one of: {', '.join(STATUSES)}."
            )
        return cls(text=" ".join(words) or None, **fields_)

    def describe(self) -> str:
        parts = [f"{k}:{v}" for k in ("status", "model", "user") if (v := getattr(self, k))]
        return " ".join([*parts, *([self.text] if self.text else [])])


@dataclass
class RunRow:
    """One line of the runs table."""

    id: str
    model: str
    action: str
    status: str
    failure_class: str | None
    where: str
    user: str
    created_at: str
    started_at: str | None
    ended_at: str | None
    metric: list[float | None] = field(default_factory=list)  # the chosen metric's newest values

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def last(self) -> float | None:
        return self.metric[-1] if self.metric else None

    def duration_s(self, now: float) -> float | None:
        from datetime import datetime

        if not self.started_at:
            return None
        start = datetime.fromisoformat(self.started_at.replace("Z", "+00:00")).timestamp()
        end = (
            datetime.fromisoformat(self.ended_at.replace("Z", "+00:00")).timestamp()
            if self.ended_at
            else now
        )
        return max(0.0, end - start)


def _where(run: RunRecord) -> str:
    if run.host and run.host != "local":
        return f"{run.runtime or '?'}:{run.host}"
    return run.runtime or "-"


@dataclass
class RunsDelta:
    """What changed since the last poll: rows to show again (or drop, when no longer matching)."""

    changed: list[RunRow]
    removed: list[str]
    metrics_only: set[str]  # ids among `changed` whose record did not change, only their points
    records: set[str] = field(default_factory=set)  # every run whose record changed, shown or not
    metrics: set[str] = field(default_factory=set)  # every run with new metric points


class RunsFeed:
    """The runs table's data: newest `limit` runs matching a filter, kept current by deltas."""

    def __init__(
        self, data: DashboardData, run_filter: RunFilter, metric: str | None, limit: int
    ) -> None:
        self.data = data
        self.filter = run_filter
        self.metric = metric
        self.limit = limit
        self.cursor = Cursor()
        self.shown: dict[str, str] = {}  # run id -> created_at, of the rows in the window
        self.total = 0

    def load(self) -> tuple[list[RunRow], int]:
        """The window as of now (and the cursor to poll from); `total` counts all matching runs."""
        reg = self.data.ws.registry
        self.cursor = current_cursor(reg)
        f = self.filter
        records = list_runs(
            reg, status=f.status, model=f.model, user=f.user, limit=None if f.text else self.limit
        )
        rows = [r for r in (self._row(rec) for rec in records) if f.matches(r)][: self.limit]
        self.total = (
            count_runs(reg, status=f.status, model=f.model, user=f.user)
            if not f.text
            else len([r for r in records if f.matches(self._bare(r))])
        )
        self.shown = {r.id: r.created_at for r in rows}
        return rows, self.total

    def poll(self) -> RunsDelta:
        """Rows changed since the last load or poll; new runs enter at the top of the window."""
        reg = self.data.ws.registry
        changes = changes_since(reg, self.cursor)
        self.cursor = changes.cursor
        ids = changes.runs
        if not ids:
            return RunsDelta([], [], set())
        records, metrics = changes.records, changes.metrics
        oldest = min(self.shown.values(), default="")
        full = len(self.shown) >= self.limit
        changed, removed = [], []
        for record in runs_by_id(reg, ids):
            known = record.id in self.shown
            if not known and full and record.created_at < oldest:
                continue  # older than the window: not shown
            if not known and record.id not in changes.records:
                continue  # points of a run outside the view
            row = self._row(record)
            if self.filter.matches(row):
                if not known:
                    self.total += 1
                self.shown[row.id] = row.created_at
                changed.append(row)
            elif known:
                del self.shown[row.id]
                self.total -= 1
                removed.append(row.id)
        if len(self.shown) > self.limit:  # new rows pushed the oldest out of the window
            for run_id in sorted(self.shown, key=self.shown.__getitem__)[: -self.limit]:
                del self.shown[run_id]
                removed.append(run_id)
        return RunsDelta(changed, removed, metrics - records, records, metrics)

    def _bare(self, record: RunRecord) -> RunRow:
        return RunRow(
            record.id,
            record.model,
            record.action,
            record.status,
            record.failure_class,
            _where(record),
            record.user or "-",
            record.created_at,
            record.started_at,
            record.ended_at,
        )

    def _row(self, record: RunRecord) -> RunRow:
        row = self._bare(record)
        if self.metric:
            row.metric = latest_values(self.data.ws.registry, record.id, self.metric, SPARK_POINTS)
        return row


# ----------------------------------------------------------------------------- one run


class MetricCurves:
    """A run's metric curves, read point by point as they arrive and thinned to CURVE_POINTS each,
    so a run logging for hours costs the same memory as one logging for a minute."""

    def __init__(self, data: DashboardData, run_id: str) -> None:
        self.data = data
        self.run_id = run_id
        self.after_seq = 0
        self.curves: dict[str, Curve] = {}

    def update(self) -> bool:
        """Read new points (at most POINTS_PER_READ); True when any arrived."""
        points = points_after(self.data.ws.registry, self.run_id, self.after_seq, POINTS_PER_READ)
        for seq, name, step, value in points:
            self.curves.setdefault(name, Curve()).add(step, value)
            self.after_seq = seq
        return bool(points)


class Curve:
    """One metric's points: every `stride`-th kept, the newest always shown."""

    def __init__(self, capacity: int = CURVE_POINTS) -> None:
        self.capacity = capacity
        self.steps: list[int] = []
        self.values: list[float | None] = []
        self.stride = 1
        self.count = 0
        self.last: tuple[int, float | None] | None = None

    def add(self, step: int, value: float | None) -> None:
        self.last = (step, value)
        if self.count % self.stride == 0:
            self.steps.append(step)
            self.values.append(value)
            if len(self.steps) > self.capacity:
                self.steps, self.values = self.steps[::2], self.values[::2]
                self.stride *= 2
        self.count += 1

    def points(self) -> tuple[list[int], list[float]]:
        """Steps and finite values to draw (NaN and infinities are left out of a plot)."""
        pairs = list(zip(self.steps, self.values, strict=True))
        if self.last is not None and (not pairs or pairs[-1][0] != self.last[0]):
            pairs.append(self.last)
        good = [(s, v) for s, v in pairs if v is not None and math.isfinite(v)]
        return [s for s, _ in good], [v for _, v in good]


class LogTail:
    """The newest lines of a run's output log, read from where the last read stopped."""

    def __init__(self, path: Path, max_lines: int = LOG_LINES) -> None:
        self.path = path
        self.max_lines = max_lines
        self._lines: LineTail | None = None

    def read(self) -> list[str]:
        """New complete lines since the last read (the first read: the last LOG_START_BYTES)."""
        skip_first = False
        if self._lines is None:
            try:
                size = self.path.stat().st_size
            except FileNotFoundError:
                return []
            start = max(0, size - LOG_START_BYTES)
            self._lines = LineTail(self.path, start)
            skip_first = start > 0  # it starts inside a line
        lines = self._lines.read_lines()
        if skip_first and lines:
            lines = lines[1:]
        # a progress bar redraws its line with \r: only what it shows last counts
        return [
            line.decode("utf-8", "replace").rsplit("\r", 1)[-1] for line in lines[-self.max_lines :]
        ]


# ----------------------------------------------------------------------------- queue and agents


@dataclass
class QueueItem:
    """Queued or running work, by user and priority."""

    run_id: str
    user: str
    priority: int | None  # None: local runs have no priority (a team server's runs have one)
    model: str
    status: str
    created_at: str | None  # when it was queued
    where: str


@dataclass
class AgentRow:
    """An agent with its GPU slots, what occupies them, and whether it answered."""

    name: str
    address: str
    source: str
    gpus: int | None = None
    slots: int | None = None
    busy: list[str] = field(default_factory=list)  # the runs it runs (as recorded here)
    used: int | None = None  # slots its runs hold (None: one each, as `busy` counts)
    reachable: bool | None = None  # None: not checked yet
    problem: str | None = None
    checked_at: float | None = None


class QueueSource(Protocol):
    """Where the queue and the agents come from: the team server when one is configured, else this
    project's registry (see `queue_source`)."""

    name: str
    agents_title: str  # the agents table's heading, with what `k` does
    no_agents: str  # what the table says when there are none

    def queue(self) -> list[QueueItem]: ...

    def agents(self) -> list[AgentRow]: ...

    def check_agents(self) -> list[AgentRow]: ...

    def close(self) -> None: ...


class LocalQueue:
    """The local registry's queued and running runs, and the agents this project knows."""

    name = "local runs"
    agents_title = "Agents (k: check reachability and GPUs over SSH)"
    no_agents = "no agents: mllib agents add NAME --host HOST"

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.checked: dict[str, AgentRow] = {}

    def queue(self) -> list[QueueItem]:
        return [
            QueueItem(r.id, r.user or "-", None, r.model, r.status, r.created_at, _where(r))
            for r in active_runs(self.ws.registry)
        ]

    def agents(self) -> list[AgentRow]:
        """Agents as configured, with what runs here say occupies them, and the last check."""
        from mllib.agents.api import list_agents

        busy = self._busy()
        rows = []
        for a in list_agents(self.ws.project.config):
            row = self.checked.get(a["name"]) or AgentRow(
                a["name"],
                f"{a['user'] + '@' if a.get('user') else ''}{a['host']}:{a['port']}",
                a["source"],
                gpus=a.get("gpus"),
            )
            row.busy = busy.get(a["name"], [])
            rows.append(row)
        return rows

    def check_agents(self) -> list[AgentRow]:
        """Reach every agent over SSH (slow: call it off the UI thread)."""
        from mllib.agents.api import check_agent

        for row in self.agents():
            report = check_agent(row.name, self.ws.project.config)
            row.reachable = report["reachable"]
            row.problem = report.get("error")
            if report["reachable"]:
                row.gpus, row.slots = report["gpus"], report["slots"]
            row.checked_at = time.time()
            self.checked[row.name] = row
        return self.agents()

    def close(self) -> None:
        pass

    def _busy(self) -> dict[str, list[str]]:
        from mllib.agents.retry import current_attempt
        from mllib.plugins import REMOTE_RUNTIME

        busy: dict[str, list[str]] = {}
        for run in active_runs(self.ws.registry):
            if run.runtime != REMOTE_RUNTIME:
                continue
            attempt = current_attempt(self.ws.registry, run.id)
            agent = attempt["agent"] if attempt else run.host
            if agent:
                busy.setdefault(agent, []).append(run.id)
        return busy


class ServerQueue:
    """The team server's queue and agents, read as `mllib queue --json` and `mllib agents list
    --json` read them (`mllib.client.views`): your running and queued work with its model,
    priority, GPUs, agent, place and when it was queued; the server's agents with their slots,
    the runs holding them, and whether they answered the server. Both are read together, off
    the UI thread (`queue`); `agents` gives the last read."""

    remote = True  # read off the UI thread: a server may be slow, or restarting (retried 60 s)
    agents_title = "Agents of the team server (k: have it ask each one now)"
    no_agents = "no agents on the server: an admin adds them with mllib server agents add"

    def __init__(self, ws: Workspace, url: str) -> None:
        self.ws = ws
        self.url = url
        self.name = f"team server {url}"
        self._server: Any = None
        self._agents: list[AgentRow] = []

    def _connected(self) -> Any:
        from mllib.client.http import Server

        if self._server is None:
            self._server = Server.connect(self.ws.project.config, url=self.url)
        return self._server

    def queue(self) -> list[QueueItem]:
        from mllib.client.views import queue as read_queue

        data = read_queue(self._connected())
        self._read_agents(check=False)
        items = []
        for row in [*data["running"], *data["queued"]]:
            where = row.get("agent") or (f"#{row['position']}" if row.get("position") else "-")
            items.append(
                QueueItem(
                    row["run_id"],
                    row.get("user") or "-",
                    row.get("priority"),
                    row["model"],
                    row.get("state") or "-",
                    row["queued_at"],
                    f"{where} ({_gpus(row['gpus'])})" if row.get("gpus") else where,
                )
            )
        return items

    def agents(self) -> list[AgentRow]:
        """The agents as the server last described them (empty before the first read)."""
        return self._agents

    def check_agents(self) -> list[AgentRow]:
        """Have the server ask each agent now (slow: call it off the UI thread)."""
        return self._read_agents(check=True)

    def _read_agents(self, *, check: bool) -> list[AgentRow]:
        from datetime import datetime

        from mllib.client.views import agents, occupants

        rows = []
        for a in agents(self._connected(), check=check):
            checked = a["checked_at"]
            rows.append(
                AgentRow(
                    a["name"], a["address"], self.name, gpus=a["gpus"], slots=a["slots"],
                    busy=occupants(a), used=a["used"], reachable=a["reachable"],
                    problem=a["problem"],
                    checked_at=datetime.fromisoformat(checked.replace("Z", "+00:00")).timestamp()
                    if checked else None,
                )
            )  # fmt: skip
        self._agents = rows
        return rows

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None


def _gpus(n: int) -> str:
    return f"{n} GPU" + ("s" if n != 1 else "")


def queue_source(ws: Workspace) -> QueueSource:
    """The team server's queue when one is configured (`MLLIB_SERVER`, `[server] url`, or the one
    logged in to: as `mllib queue` and `mllib runs list` choose), else the local registry's."""
    from mllib.credentials import configured_server

    url = configured_server(ws.project.config)
    return ServerQueue(ws, url) if url else LocalQueue(ws)


# ----------------------------------------------------------------------------- deployments


DEPLOY_SERIES = ("rps", "p50_ms", "p99_ms", "error_rate")
DEPLOY_HISTORY = 40  # samples behind each deployment sparkline


@dataclass
class Rules:
    """The deploy rules' state for this user: prod deploy tokens left, and cooldowns by model."""

    user: str
    budget: float
    budget_burst: float
    cooldowns: dict[str, str]  # model -> the refusal message while one runs


class Deployments:
    """Per environment: what is deployed, its live traffic with recent history, the audit log
    and the deploy rules' state (`mllib deploy status/history`)."""

    def __init__(self, data: DashboardData) -> None:
        self.data = data
        self.history: dict[str, dict[str, list[float | None]]] = {}

    def _ctx(self):
        from mllib.serving.control.deploy import DeployContext

        return DeployContext.create(self.data.ws)

    def status(self, window_s: float = 1.0) -> list[dict[str, Any]]:
        """`deploy status` rows; each live one also gets `series` (its recent samples)."""
        from mllib.serving.control.status import status

        rows = status(self._ctx(), window_s=window_s)
        for row in rows:
            series = self.history.setdefault(row["env"], {k: [] for k in DEPLOY_SERIES})
            stats = row.get("stats") or {}
            if row["state"] == "live":
                for key in DEPLOY_SERIES:
                    series[key] = [*series[key], stats.get(key)][-DEPLOY_HISTORY:]
            row["series"] = series
        return rows

    def recent(self, limit: int = 12) -> list[dict[str, Any]]:
        from mllib.serving.audit import history

        return history(self.data.ws.registry, limit=limit)

    def rules(self, models: list[str]) -> Rules:
        from mllib.serving.control import policy

        ctx = self._ctx()
        reg, rules = ctx.ws.registry, ctx.settings.deploy
        cooldowns = {}
        for model in models:
            refusal = policy.cooldown_check(reg, ctx.clock, ctx.user, model)
            if refusal is not None:
                cooldowns[model] = refusal.message
        return Rules(
            ctx.user, policy.budget(reg, ctx.clock, rules, ctx.user), rules.budget_burst, cooldowns
        )

    def stop(self, env: str) -> str:
        from mllib.serving.control.deploy import stop

        stopped = stop(self._ctx(), env)
        return "; ".join(f"Stopped {d.label} on {env}" for d in stopped)

    def rollback(self, env: str, reason: str | None = None) -> str:
        from mllib.serving.clock import human_duration
        from mllib.serving.control.deploy import rollback

        outcome = rollback(self._ctx(), env, reason=reason)
        message = f"Rolled {env} back to {outcome.deployment.label}"
        if outcome.cooldown_s:
            message += (
                f"; your next prod deploy of {outcome.deployment.model} waits "
                f"{human_duration(outcome.cooldown_s)}"
            )
        return message


# ----------------------------------------------------------------------------- tuning studies


@dataclass
class StudyRow:
    """One tuning study (`mllib tune list`): its trials by state and the best value so far."""

    name: str
    model: str
    status: str
    metric: str
    direction: str
    counts: dict[str, int]
    trials_target: int | None
    best_value: float | None
    best_run_id: str | None
    updated_at: str | None

    @property
    def trials(self) -> int:
        return sum(self.counts.values())


def studies(ws: Workspace) -> list[StudyRow]:
    """Every study, newest first, as `mllib tune list --json` gives it."""
    from mllib.tuning.views import list_dicts

    keys = ("name", "model", "status", "metric", "direction", "counts", "trials_target",
            "best_value", "best_run_id", "updated_at")  # fmt: skip
    return [StudyRow(**{k: d.get(k) for k in keys}) for d in list_dicts(ws)]


@dataclass
class TrialRow:
    """One trial of a study (`mllib tune show`): its state, value and params, its run, and the
    best value of the trials up to it (how the search has been converging)."""

    number: int
    state: str
    value: float | None
    best: float | None
    params: dict[str, Any]
    run_id: str | None


def trials(ws: Workspace, name: str) -> list[TrialRow]:
    """Study `name`'s trials in order, each with the best complete value up to it."""
    from mllib.tuning.records import get_study
    from mllib.tuning.storage import load_study
    from mllib.tuning.views import trials as study_trials

    study = get_study(ws.registry, name)
    pick = min if study.direction == "minimize" else max
    best: float | None = None
    rows = []
    for t in sorted(study_trials(ws, study, load_study(ws, name)), key=lambda t: t["number"]):
        value = t["value"]
        if t["state"] == "complete" and value is not None and not math.isnan(value):
            best = value if best is None else pick(best, value)
        rows.append(TrialRow(t["number"], t["state"], value, best, t["params"], t["run_id"]))
    return rows


# ----------------------------------------------------------------------------- the whole


class DashboardData:
    """One project's data for the dashboard, and the actions it may take on it."""

    def __init__(
        self,
        ws: Workspace,
        *,
        queue: QueueSource | None = None,
        reconcile_every_s: float | None = RECONCILE_EVERY_S,
    ) -> None:
        self.ws = ws
        self.queue = queue or queue_source(ws)
        self.deployments = Deployments(self)
        self.reconcile_every_s = reconcile_every_s  # None: never (tests of made-up running runs)
        self._reconciled = 0.0

    @classmethod
    def open(cls, start: Path | str | None = None) -> DashboardData:
        """The project at or above `start` (a usage error, as for every command, outside one)."""
        data = cls(Workspace.find(start))
        data.reconcile(force=True)
        return data

    @property
    def project_name(self) -> str:
        return self.ws.project.root.name

    def reconcile(self, *, force: bool = False) -> None:
        """Settle runs whose supervisor died, at most every `reconcile_every_s`."""
        every = self.reconcile_every_s
        if not force and (every is None or time.monotonic() - self._reconciled < every):
            return
        from mllib.runs.control import reconcile

        self._reconciled = time.monotonic()
        reconcile(self.ws)

    def studies(self) -> list[StudyRow]:
        """The project's tuning studies with their trials and best values (`tune list`)."""
        return studies(self.ws)

    def trials(self, study: str) -> list[TrialRow]:
        """One study's trials, each with the best value so far (`tune show`)."""
        return trials(self.ws, study)

    def close(self) -> None:
        """Let go of what the data holds open (the team server's connection)."""
        self.queue.close()

    def runs_feed(self, run_filter: RunFilter, metric: str | None, limit: int) -> RunsFeed:
        return RunsFeed(self, run_filter, metric, limit)

    def metric_choices(self, run_ids: list[str]) -> list[str]:
        """Metric names the given runs logged, in first-seen order."""
        names: dict[str, None] = {}
        for run_id in run_ids:
            names.update(dict.fromkeys(metric_names(self.ws.registry, run_id)))
        return list(names)

    def run(self, run_id: str) -> dict[str, Any]:
        """`runs show --json` of one run (params, evaluation, artifacts, environment, attempts)."""
        from mllib.runs.views import show

        return show(self.ws, run_id)

    def curves(self, run_id: str) -> MetricCurves:
        return MetricCurves(self, run_id)

    def log_tail(self, run_id: str) -> LogTail:
        run = get_run(self.ws.registry, run_id)
        return LogTail(Path(run.log_path or self.ws.run_dir(run.id) / "output.log"))

    def compare(self, run_ids: list[str]) -> dict[str, Any]:
        """`runs compare --json` of these runs."""
        from mllib.runs.views import compare

        return compare(self.ws, run_ids)

    def series(self, run_ids: list[str], metric: str) -> dict[str, tuple[list[int], list[float]]]:
        """Each run's curve of `metric` (thinned as a live curve is); runs without it left out."""
        found = {}
        for run_id in run_ids:
            curve = Curve()
            for step, value in metric_series(self.ws.registry, run_id, metric):
                curve.add(step, value)
            if curve.count:
                found[run_id] = curve.points()
        return found

    # Actions: the CLI's own functions, so the same rules and records apply.

    def cancel(self, run_id: str) -> str:
        from mllib.runs.control import cancel

        record = cancel(self.ws, run_id)
        return f"Run {record.id} {record.status}"

    def rerun(self, run_id: str) -> str:
        from mllib.runs.api import rerun

        record = rerun(run_id, detach=True, echo=None, start_dir=self.ws.project.root)
        return f"Started run {record.id} (a rerun of {run_id}) in the background"
