"""`mllib loadtest --env staging`: bounded load against staging, with a report and a verdict."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from mllib import terminal
from mllib.cli import completion, output
from mllib.cli.deploy_args import deploy_context
from mllib.cli.numbers import number_option
from mllib.cli.output import styled
from mllib.ranges import COUNT, POSITIVE, RATE


def loadtest(
    env: Annotated[
        str,
        typer.Option(
            "--env", help="staging (prod is refused).", autocompletion=completion.environments
        ),
    ],
    duration: Annotated[
        float | None,
        number_option(
            "--duration",
            POSITIVE,
            help="Seconds (default: [loadtest] duration_s).",
            show_default=False,
        ),
    ] = None,
    concurrency: Annotated[
        int | None,
        number_option(
            "--concurrency",
            COUNT,
            "-c",
            help="Requests in flight (default: [loadtest] concurrency).",
            show_default=False,
        ),
    ] = None,
    rps: Annotated[
        float | None,
        number_option(
            "--rps",
            RATE,
            help="Send at this rate instead (in flight capped at [loadtest] max_concurrency).",
            show_default=False,
        ),
    ] = None,
    input_: Annotated[
        str | None,
        typer.Option(
            "--input",
            "-i",
            help="The request body: JSON or @file.json (default: [loadtest] input).",
            show_default=False,
        ),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            envvar="MLLIB_API_KEY",
            help="API key, when the environment needs one.",
            show_default=False,
        ),
    ] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Load-test the deployment on staging: req/s, p50/p95/p99, error rate, a latency histogram.

    The result is recorded; a passing one lets that version go to prod.
    """
    from mllib.serving.control.loadtest import loadtest as run_loadtest

    ctx = deploy_context()
    with _Progress() as progress:
        result = run_loadtest(
            ctx,
            env,
            duration_s=duration,
            concurrency=concurrency,
            rps=rps,
            input_text=input_,
            key=key,
            on_tick=progress.update,
        )
    if json_:
        output.print_json(result.as_dict())
    else:
        report(result)
    if not result.passed:
        raise typer.Exit(1)


class _Progress:
    """A progress bar in a terminal; a plain line per second elsewhere (CI, NO_COLOR, a log file)."""

    def __enter__(self) -> _Progress:
        self.last = 0.0
        self.bar = None
        if terminal.animated():
            from rich.progress import BarColumn, TextColumn, TimeRemainingColumn

            self.bar = terminal.bar(
                TextColumn("load test", markup=False),
                BarColumn(),
                TextColumn("{task.fields[detail]}", markup=False),
                TimeRemainingColumn(),
                transient=True,
            )
            self.task = self.bar.add_task("", total=1.0, detail="")
        return self

    def update(self, tally, duration: float) -> None:
        elapsed = min(time.perf_counter() - tally.started, duration)
        detail = f"{tally.requests:,} requests, {tally.errors:,} errors"
        if self.bar is not None:
            self.bar.update(self.task, completed=elapsed / duration, detail=detail)
        elif elapsed - self.last >= 1.0 or elapsed >= duration:
            self.last = elapsed
            terminal.line(f"[{elapsed:5.1f}s / {duration:g}s] {detail}")

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()


def report(result) -> None:
    console = output.out()
    verdict = "[green]passed[/]" if result.passed else "[red]did not pass[/]"
    console.print(
        styled(
            "[bold]Load test {}[/] of {} v{} on {}: " + verdict,
            result.id,
            result.model,
            result.version,
            result.env,
        )
    )
    mode = (
        f"{result.target_rps:g} req/s target"
        if result.mode == "rps"
        else f"concurrency {result.concurrency}"
    )
    console.print(f"  {result.requests:,} requests in {result.duration_s:.1f}s ({mode})")
    console.print(f"  throughput  {result.rps:,.1f} req/s")
    fmt = lambda v: "-" if v is None else f"{v:.1f}ms"  # noqa: E731
    console.print(
        f"  latency     p50 {fmt(result.p50_ms)}  p95 {fmt(result.p95_ms)}  p99 {fmt(result.p99_ms)}  max {fmt(result.max_ms)}"
    )
    statuses = "  ".join(f"{k}: {v:,}" for k, v in sorted(result.statuses.items()))
    console.print(f"  errors      {result.error_rate:.2%}   ({statuses})")
    console.print("  latency histogram")
    peak = max((count for _, count in result.histogram), default=0) or 1
    for bound, count in result.histogram:
        if not count:
            continue
        label = "  > 5000ms" if bound is None else f"≤ {bound:>6g}ms"
        console.print(
            f"    {label} {'█' * max(1, round(30 * count / peak)):<30} {count:,}", markup=False
        )
    for check in result.failed_checks:
        console.print(styled("  [red]✘[/] {}", check))
