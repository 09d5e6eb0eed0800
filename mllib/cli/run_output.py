"""What a run's command prints around it: the line announcing it, and its outcome at the end."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.text import Text

from mllib.cli import output
from mllib.cli.output import fmt_duration, fmt_value, printable, status_text, styled
from mllib.errors import EXIT_CANCELLED, EXIT_FAILED, EXIT_SYSTEM
from mllib.protocol.failure import SYSTEM_ERROR

if TYPE_CHECKING:
    from mllib.registry.runs import RunRecord
    from mllib.workspace import Workspace


def announce(record: RunRecord) -> None:
    """The line that says a run has started: its id, model, action and where it runs (none with
    `-q`: the summary at the end says the same)."""
    from mllib import terminal

    if terminal.quiet():
        return
    output.err().print(
        styled(
            "[bold]Run {}[/] · {} · {} · {} runtime ({})",
            record.id,
            record.model,
            record.action,
            record.runtime,
            record.runtime_note or "",
        )
    )


def stderr_echo(chunk: bytes) -> None:
    """A run's own output on stderr: with --json, stdout holds the JSON answer alone."""
    import sys

    sys.stderr.buffer.write(chunk)
    sys.stderr.flush()


def finish(
    ws: Workspace,
    record: RunRecord,
    detach: bool,
    gates: dict[str, float] | None = None,
    *,
    json_: bool = False,
) -> None:
    """Print the run's outcome (`record`, of workspace `ws`) and exit with the code that matches
    it: 1 too when its evaluation is under one of `gates` (`--fail-under`). With `json_`, stdout
    gets the run as `mllib runs show RUN_ID --json` prints it (the summary stays on stderr)."""
    console = output.err()
    if detach or not record.finished:
        console.print(styled("Started run [bold]{}[/] in the background.", record.id))
        console.print(f"  Follow it:  mllib runs logs {record.id} --follow")
        console.print(f"  Stop it:    mllib runs cancel {record.id}")
        _answer(ws, record, json_)
        return
    for line in summary_lines(ws, record):
        console.print(line)
    if json_:
        _answer(ws, record, json_)
    breaches = _check_gates(ws, record, gates)
    if record.status == "succeeded":
        if breaches:
            for breach in breaches:
                console.print(styled("[red]✘[/] --fail-under: {}", breach), highlight=False)
            raise typer.Exit(EXIT_FAILED)
        return
    if record.status == "cancelled":
        raise typer.Exit(EXIT_CANCELLED)
    raise typer.Exit(EXIT_SYSTEM if record.failure_class == SYSTEM_ERROR else EXIT_FAILED)


def _answer(ws: Workspace, record: RunRecord, json_: bool) -> None:
    """What stdout gets: the run id, or with --json the whole run (its `runs show` object)."""
    if not json_:
        print(printable(record.id))
        return
    from mllib.registry.runs import get_run
    from mllib.runs.views import run_dict

    output.print_json(run_dict(ws, get_run(ws.registry, record.id)))


def _check_gates(
    ws: Workspace, record: RunRecord, gates: dict[str, float] | None
) -> list[str] | None:
    """The gates the run's evaluation breaches (None: no gates, or the run did not succeed),
    and the run's table in the CI job's summary (GITHUB_STEP_SUMMARY)."""
    from mllib.cli import step_summary
    from mllib.runs.gates import breaches as gate_breaches

    found = None
    data = None
    if gates and record.status == "succeeded":
        from mllib.runs.views import outcome

        data = outcome(ws, record)
        found = gate_breaches(data["eval_metrics"], gates)
    if step_summary.enabled():
        from mllib.runs.views import show

        step_summary.append(step_summary.run(show(ws, record.id), found))
    return found


def summary_lines(ws: Workspace, record: RunRecord) -> list[Text | str]:
    """What the CLI prints when a run ends: status, timing, metrics, and what to run next."""
    from mllib.runs.views import outcome

    data = outcome(ws, record)
    lines: list[Text | str] = [
        Text.assemble(
            _mark(record.status),
            styled(" Run [bold]{}[/] ", record.id),
            status_text(record.status),
            f" in {fmt_duration(record.duration_s)}",
        )
    ]
    if record.failure_class:
        error = output.hanging(record.error or "", len(f"  {record.failure_class}: "))
        lines.append(styled("  [red]{}[/]: {}", record.failure_class, error))
    if data["metrics"]:
        lines.append(
            "  metrics: " + "  ".join(f"{k}={fmt_value(v)}" for k, v in data["metrics"].items())
        )
    if data["eval_metrics"]:
        lines.append(
            "  eval:    "
            + "  ".join(f"{k}={fmt_value(v)}" for k, v in data["eval_metrics"].items())
        )
    if data["model_version"]:
        lines.append(f"  model:   {record.model} version {data['model_version']}")
    lines.append(f"  details: mllib runs show {record.id}")
    return lines


def _mark(status: str) -> Text:
    marks = {"succeeded": ("✔", "green"), "failed": ("✘", "red"), "cancelled": ("■", "yellow")}
    return output.text(*marks.get(status, ("•", "")))
