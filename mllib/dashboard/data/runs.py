"""The runs table's data: which runs it shows (`RunFilter`), its rows, and `RunsFeed`, which keeps
the newest `limit` matching runs current by deltas: it asks its source (this project's registry or
the team server, `mllib.dashboard.data.run_sources`) which runs changed since its cursor
(`mllib.runs.live`) and re-reads those only, so 10,000 runs cost what the changed few cost."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from mllib.metric_values import from_stored
from mllib.registry.runs import ACTIVE
from mllib.runs.live import matches_text


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
        return matches_text(row.id, row.model, self.text)

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

    @classmethod
    def of(cls, data: dict[str, Any]) -> RunRow:
        """The row of a run as `mllib.runs.live` gives it (here, or from the team server)."""
        return cls(
            data["id"],
            data["model"],
            data["action"],
            data["status"],
            data["failure_class"],
            where(data["runtime"], data["host"]),
            data["user"] or "-",
            data["created_at"],
            data["started_at"],
            data["ended_at"],
            [from_stored(v) for v in data["trend"]],
        )

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


def where(runtime: str | None, host: str | None) -> str:
    """Where a run runs, as the tables show it: its runtime, and its host when not this one."""
    if host and host != "local":
        return f"{runtime or '?'}:{host}"
    return runtime or "-"


@dataclass
class RunsDelta:
    """What changed since the last poll: rows to show again (or drop, when no longer matching)."""

    changed: list[RunRow]
    removed: list[str]
    metrics_only: set[str]  # ids among `changed` whose record did not change, only their points
    records: set[str] = field(default_factory=set)  # every run whose record changed, shown or not
    metrics: set[str] = field(default_factory=set)  # every run with new metric points


class WindowSource(Protocol):
    """What a feed reads (`mllib.dashboard.data.run_sources`: this project's or a server's)."""

    def window(self, run_filter: RunFilter, metric: str | None, limit: int) -> dict[str, Any]:
        """`mllib.runs.live.window`'s answer for this filter."""
        ...

    def changes(self, cursor: dict[str, int], metric: str | None) -> dict[str, Any]:
        """`mllib.runs.live.changes`' answer since `cursor`."""
        ...


class RunsFeed:
    """The runs table's data: newest `limit` runs matching a filter, kept current by deltas."""

    def __init__(
        self, source: WindowSource, run_filter: RunFilter, metric: str | None, limit: int
    ) -> None:
        self.source = source
        self.filter = run_filter
        self.metric = metric
        self.limit = limit
        self.cursor: dict[str, int] = {"change": 0, "metric_row": 0}
        self.shown: dict[str, str] = {}  # run id -> created_at, of the rows in the window
        self.total = 0

    def load(self) -> tuple[list[RunRow], int]:
        """The window as of now (and the cursor to poll from); `total` counts all matching runs."""
        answer = self.source.window(self.filter, self.metric, self.limit)
        self.cursor = answer["cursor"]
        rows = [RunRow.of(data) for data in answer["runs"]]
        self.total = answer["total"]
        self.shown = {r.id: r.created_at for r in rows}
        return rows, self.total

    def poll(self) -> RunsDelta:
        """Rows changed since the last load or poll; new runs enter at the top of the window."""
        answer = self.source.changes(self.cursor, self.metric)
        self.cursor = answer["cursor"]
        if not answer["runs"]:
            return RunsDelta([], [], set())
        records, metrics = set(answer["records"]), set(answer["metrics"])
        oldest = min(self.shown.values(), default="")
        full = len(self.shown) >= self.limit
        changed, removed = [], []
        for data in answer["runs"]:  # newest first
            known = data["id"] in self.shown
            if not known and full and data["created_at"] < oldest:
                continue  # older than the window: not shown
            if not known and data["id"] not in records:
                continue  # points of a run outside the view
            row = RunRow.of(data)
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
