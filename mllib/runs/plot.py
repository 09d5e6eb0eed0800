"""Metric curves of runs: in the terminal with plotext, or to a PNG with matplotlib when asked."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from mllib.errors import MllibError, NotFoundError
from mllib.registry.metrics import metric_names, metric_series
from mllib.registry.runs import get_run
from mllib.safetext import printable
from mllib.workspace import Workspace


def series(
    ws: Workspace, run_ids: list[str], metric: str
) -> dict[str, list[tuple[int, float | None]]]:
    """Each run's (step, value) points of `metric`; an error names the metrics a run does have."""
    found = {}
    for run_id in run_ids:
        run = get_run(ws.registry, run_id)
        points = metric_series(ws.registry, run.id, metric)
        if not points:
            names = ", ".join(metric_names(ws.registry, run.id)) or "none"
            raise NotFoundError(f"Run {run.id} has no metric {metric!r} (its metrics: {names})")
        found[run.id] = points
    return found


def plot(
    ws: Workspace,
    run_ids: list[str],
    metric: str,
    *,
    output: Path | None = None,
    width: int | None = None,
    color: bool = False,
) -> str:
    """Draw the curves; returns the terminal drawing, or a line saying where the PNG was written."""
    return draw(
        series(ws, run_ids, metric), metric, "step", output=output, width=width, color=color
    )


Points = list[tuple[int, float | None]]


def draw(
    data: Mapping[str, Points],
    ylabel: str,
    xlabel: str,
    *,
    output: Path | None = None,
    width: int | None = None,
    color: bool = False,
) -> str:
    """Lines of (x, y) points by label, in the terminal (plotext; returns the drawing) or to a
    PNG (matplotlib; returns a line saying where): run curves, a study's history."""
    if output is not None:
        return _png(data, ylabel, xlabel, output)
    import plotext

    fig = plotext.figure
    fig.clear()
    fig.plot_size(width or 100, 24)
    for label, points in data.items():
        xs = [x for x, value in points if value is not None]
        ys = [value for _, value in points if value is not None]
        fig.draw(fig.signal(xs, ys, marker="hd").lines().label(printable(label)))
    # the drawing is printed as it is: no escape sequence of a metric, run or trial name
    fig.title(printable(ylabel))
    fig.label(printable(xlabel), "x")
    drawing = str(fig.build())
    return plotext.uncolorize(drawing) if not color else drawing


def _png(data: Mapping[str, Points], ylabel: str, xlabel: str, output: Path) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as mpl
    except ImportError:
        raise MllibError(  # an optional dependency to install (exit 1), not a usage error
            "Writing a PNG needs matplotlib, which is not installed", hint="pip install matplotlib"
        ) from None
    fig, ax = mpl.subplots(figsize=(8, 4.5))
    for label, points in data.items():
        ax.plot(
            [s for s, v in points if v is not None],
            [v for _, v in points if v is not None],
            label=label,
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend()
    fig.savefig(output, dpi=120, bbox_inches="tight")
    mpl.close(fig)
    return f"Wrote {output}"
