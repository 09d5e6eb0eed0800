"""The runs table's data: which runs it shows (`RunFilter`), its rows, and `RunsFeed`, which keeps
the newest `limit` matching runs current by deltas: it asks the registry which runs changed since its
cursor (`mllib.registry.changes`) and re-reads those only, so 10,000 runs cost what the changed few
cost."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mllib.registry.changes import Cursor, changes_since, current_cursor
from mllib.registry.metrics import latest_values
from mllib.registry.runs import ACTIVE, RunRecord, count_runs, list_runs, runs_by_id

if TYPE_CHECKING:
    from mllib.dashboard.data import DashboardData

SPARK_POINTS = 24  # values behind a row's sparkline


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


def where(run: RunRecord) -> str:
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
            where(record),
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
