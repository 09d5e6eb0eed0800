"""`mllib loadtest --env staging`: bounded load against staging, with a report and a verdict."""

from __future__ import annotations

from typing import Annotated

import typer

from mllib import terminal
from mllib.cli import completion, output
from mllib.cli.deploy_args import deploy_context, parse_duration
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
        str | None,
        typer.Option(
            "--duration",
            help="How long: 30, 30s, 2m (default: [loadtest] duration_s).",
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
    rate: Annotated[
        str | None,
        typer.Option(
            "--rate",
            metavar="RPS|FROM:TO",
            help="Send at this rate, or along a ramp (50:1500), whatever the answers (in flight "
            "capped at [loadtest] max_concurrency).",
            show_default=False,
        ),
    ] = None,
    rps: Annotated[
        float | None,
        number_option(
            "--rps", RATE, help="The same as --rate RPS.", show_default=False, hidden=True
        ),
    ] = None,
    workers: Annotated[
        int | None,
        number_option(
            "--workers",
            COUNT,
            help="Processes sending the load (default: one per 4 CPU cores).",
            show_default=False,
        ),
    ] = None,
    input_: Annotated[
        str | None,
        typer.Option(
            "--input",
            "-i",
            help="The request body: JSON, @file.json or - (standard input) (default: [loadtest] input).",
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
    seconds = None if duration is None else parse_duration(duration, "--duration", POSITIVE)
    with _Progress() as progress:
        result = run_loadtest(
            ctx,
            env,
            duration_s=seconds,
            concurrency=concurrency,
            rps=rps,
            rate=rate,
            input_text=input_,
            key=key,
            workers=workers,
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

    def update(self, answered: int, elapsed: float, duration: float) -> None:
        elapsed = min(elapsed, duration)
        detail = f"{answered:,} requests"
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
    if result.mode == "ramp":
        mode = f"{result.rate_from:g} → {result.target_rps:g} req/s ramp"
    elif result.mode == "rps":
        mode = f"{result.target_rps:g} req/s target"
    else:
        mode = f"concurrency {result.concurrency}"
    client = result.client
    console.print(
        f"  {result.requests:,} requests in {result.duration_s:.1f}s ({mode}; "
        f"{client['workers']} load process(es))"
    )
    fmt = lambda v: "-" if v is None else f"{v:.1f}ms"  # noqa: E731
    server = result.server
    console.print(f"  {'':<11} {'client':<44} server (its /metrics)")
    console.print(f"  {'throughput':<11} {result.rps:,.1f} req/s")
    client_latency = f"p50 {fmt(result.p50_ms)}  p95 {fmt(result.p95_ms)}  p99 {fmt(result.p99_ms)}"
    server_latency = (
        f"p50 {fmt(server.get('p50_ms'))}  p99 {fmt(server.get('p99_ms'))}"
        if server.get("reachable")
        else "did not answer"
    )
    console.print(f"  {'latency':<11} {client_latency:<44} {server_latency}", markup=False)
    statuses = "  ".join(f"{k}: {v:,}" for k, v in sorted(result.statuses.items()))
    errors = f"{result.error_rate:.2%} ({statuses})"
    server_errors = (
        f"{server['errors']:,} of {server['requests']:,} (5xx)" if server.get("reachable") else ""
    )
    console.print(f"  {'errors':<11} {errors:<44} {server_errors}", markup=False)
    if result.skipped:
        console.print(
            styled(
                "  [yellow]{} arrivals were not sent:[/] every allowed connection was busy ({})",
                f"{result.skipped:,}",
                "[loadtest] max_concurrency",
            )
        )
    if client["bound"]:
        why = (
            f"its {client['workers']} process(es) used {client['cpu_share']:.0%} of their CPU"
            if client["cpu_share"] >= 0.85
            else f"the machine's CPUs were {client['host_cpu_percent']:.0f}% busy"
        )
        console.print(
            styled(
                "  [yellow]The client was CPU-bound[/] ({}): its latencies include its own "
                "delays; the verdict uses the server's figures.",
                why,
            )
        )
    console.print("  latency histogram (client)")
    peak = max((count for _, count in result.histogram), default=0) or 1
    for bound, count in result.histogram:
        if not count:
            continue
        label = "  > 5000ms" if bound is None else f"≤ {bound:>6g}ms"
        console.print(
            f"    {label} {'█' * max(1, round(30 * count / peak)):<30} {count:,}", markup=False
        )
    for check in result.failed_checks:
        console.print(styled("  [red]✘[/] {} ({}'s figures)", check, result.judged_on))
