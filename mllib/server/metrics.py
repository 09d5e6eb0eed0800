"""The team server's `GET /metrics`: its training runs, queue and agents in Prometheus' text
format, read from the database when Prometheus scrapes (one aggregate query per family, on SQLite
and PostgreSQL alike), so every server process and restart reports the same figures.

    mllib_runs{status}                          runs the server knows, per status (gauge)
    mllib_queue_depth{priority}                 runs waiting for a slot, per priority (gauge)
    mllib_queue_users                           users with runs waiting (gauge)
    mllib_submissions_total                     runs ever submitted, reruns included (counter)
    mllib_run_duration_seconds{status}          finished runs' start -> end (histogram)
    mllib_queue_wait_seconds                    enqueue -> claimed by an agent (histogram)
    mllib_agents{state}                         agents reachable, unreachable, not asked yet
    mllib_agent_slots{state}                    slots busy, and free on agents not known down

Aggregates only, never a user or a run id: the route needs no token (Prometheus scrapes it
as it scrapes a deployment), and what it shows is what any host that reaches the server could
count anyway. A histogram is cumulative over every run the database holds.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from mllib.queue.jobs import QUEUED, RUNNING
from mllib.registry.runs import ACTIVE, TERMINAL

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from mllib.registry import Registry
    from mllib.server.context import ServerContext
    from mllib.server.dispatch import Dispatcher

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
RUN_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400)
WAIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400)
AGENT_STATES = ("reachable", "unreachable", "unknown")


def exposition(ctx: ServerContext, dispatcher: Dispatcher | None = None) -> bytes:
    """The text a scrape answers with."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(ctx, dispatcher))
    return bytes(generate_latest(registry))


class _Collector:
    def __init__(self, ctx: ServerContext, dispatcher: Dispatcher | None) -> None:
        self.ctx, self.dispatcher = ctx, dispatcher

    def collect(self) -> Iterator[Metric]:
        with self.ctx.registry() as reg:
            yield _runs(reg)
            yield from _queue(reg)
            yield _durations(reg)
            yield _waits(reg)
            yield from _agents(reg, self.ctx, self.dispatcher)


def _runs(reg: Registry) -> Metric:
    from prometheus_client.core import GaugeMetricFamily

    counts = dict.fromkeys((*ACTIVE, *TERMINAL), 0)  # every status present, at 0 when none
    for row in reg.query("SELECT status, COUNT(*) AS n FROM runs GROUP BY status"):
        counts[row["status"]] = int(row["n"])
    family = GaugeMetricFamily(
        "mllib_runs", "Runs the team server knows, per status.", labels=["status"]
    )
    for status, n in counts.items():
        family.add_metric([status], n)
    return family


def _queue(reg: Registry) -> Iterator[Metric]:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    depth = GaugeMetricFamily(
        "mllib_queue_depth", "Runs waiting for an agent's slot, per priority.", labels=["priority"]
    )
    rows = reg.query(
        "SELECT priority, COUNT(*) AS n FROM jobs WHERE state = ? GROUP BY priority ORDER BY 1",
        (QUEUED,),
    )
    for row in rows or [{"priority": 0, "n": 0}]:
        depth.add_metric([str(row["priority"])], int(row["n"]))
    yield depth
    totals = reg.query(
        'SELECT COUNT(*) AS n, COUNT(DISTINCT CASE WHEN state = ? THEN "user" END) AS users '
        "FROM jobs",
        (QUEUED,),
    )[0]
    yield GaugeMetricFamily(
        "mllib_queue_users", "Users with runs waiting.", value=int(totals["users"])
    )
    yield CounterMetricFamily(
        "mllib_submissions",
        "Runs submitted to the team server (reruns included).",
        value=int(totals["n"]),
    )


def _durations(reg: Registry) -> Metric:
    if reg.is_postgres:
        seconds = (
            "CAST(EXTRACT(EPOCH FROM (CAST(ended_at AS timestamptz)"
            " - CAST(started_at AS timestamptz))) AS double precision)"
        )
    else:
        seconds = "(julianday(ended_at) - julianday(started_at)) * 86400.0"
    marks = ", ".join("?" for _ in TERMINAL)
    rows = reg.query(
        _histogram_sql(
            f"SELECT status AS k, {seconds} AS v FROM runs WHERE status IN ({marks})"
            " AND started_at IS NOT NULL AND ended_at IS NOT NULL",
            RUN_BUCKETS,
        ),
        TERMINAL,
    )
    return _histogram(
        "mllib_run_duration_seconds",
        "Finished runs' time from start to end, per status.",
        "status",
        {r["k"]: r for r in rows},
        TERMINAL,
        RUN_BUCKETS,
    )


def _waits(reg: Registry) -> Metric:
    rows = reg.query(
        _histogram_sql(
            "SELECT '' AS k, claimed_at - enqueued_at AS v FROM jobs WHERE claimed_at IS NOT NULL",
            WAIT_BUCKETS,
        )
    )
    return _histogram(
        "mllib_queue_wait_seconds",
        "Time from a run's submission to its (latest) claim by an agent.",
        None,
        {r["k"]: r for r in rows},
        ("",),
        WAIT_BUCKETS,
    )


def _histogram_sql(values: str, buckets: Sequence[float]) -> str:
    """One query over `values` (rows `k`, `v`): per `k`, how many `v` fall at or under each
    bucket's bound, their count and their sum."""
    under = ", ".join(
        f"SUM(CASE WHEN v <= {float(b)!r} THEN 1 ELSE 0 END) AS le{i}"
        for i, b in enumerate(buckets)
    )
    return f"SELECT k, COUNT(*) AS n, SUM(v) AS total, {under} FROM ({values}) t GROUP BY k"


def _histogram(
    name: str,
    text: str,
    label: str | None,
    rows: dict[str, dict[str, Any]],
    keys: Sequence[str],
    buckets: Sequence[float],
) -> Metric:
    from prometheus_client.core import HistogramMetricFamily

    family = HistogramMetricFamily(name, text, labels=[label] if label else None)
    for key in keys:
        row = rows.get(key, {})
        counts = [(repr(float(b)), int(row.get(f"le{i}") or 0)) for i, b in enumerate(buckets)]
        counts.append(("+Inf", int(row.get("n") or 0)))
        family.add_metric([key] if label else [], counts, float(row.get("total") or 0.0))
    return family


def _agents(reg: Registry, ctx: ServerContext, dispatcher: Dispatcher | None) -> Iterator[Metric]:
    from prometheus_client.core import GaugeMetricFamily

    from mllib.agents.config import load_agents

    specs = load_agents(ctx.project.config)
    slots = dispatcher.slots if dispatcher is not None else {}
    contacts = dispatcher.contacts if dispatcher is not None else {}
    used = {
        r["agent"]: int(r["n"])
        for r in reg.query(
            "SELECT agent, SUM(CASE WHEN gpus > 1 THEN gpus ELSE 1 END) AS n FROM jobs "
            "WHERE state = ? GROUP BY agent",
            (RUNNING,),
        )
    }
    states = dict.fromkeys(AGENT_STATES, 0)
    busy = free = 0
    for spec in specs:
        contact = contacts.get(spec.name)
        state = "unknown" if contact is None else AGENT_STATES[0 if contact.reachable else 1]
        states[state] += 1
        held = used.get(spec.name, 0)
        busy += held
        if state != "unreachable":
            free += max(0, slots.get(spec.name, spec.slots(None)) - held)
    agents = GaugeMetricFamily(
        "mllib_agents",
        "The team server's agents: reachable or not when last asked, or not asked yet.",
        labels=["state"],
    )
    for state, n in states.items():
        agents.add_metric([state], n)
    yield agents
    slot_states = GaugeMetricFamily(
        "mllib_agent_slots",
        "Agents' run slots (GPUs, one on a CPU-only agent): busy, and free on agents not "
        "known to be down.",
        labels=["state"],
    )
    slot_states.add_metric(["busy"], busy)
    slot_states.add_metric(["free"], free)
    yield slot_states
