"""`mllib tune MODEL --param NAME=KIND:ARGS ...` and `mllib tune show|list|resume`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from mllib.cli import output
from mllib.cli.model_args import MODEL_COMMAND, HelpOpt, ModelArg, target_and_params
from mllib.cli.model_commands import AgentOpt, DataOpt, LocalOpt, RemoteOpt, RuntimeOpt, where
from mllib.cli.numbers import number_option
from mllib.cli.output import styled
from mllib.errors import EXIT_CANCELLED
from mllib.ranges import COUNT, SEED, Range

if TYPE_CHECKING:
    from mllib.tuning.driver import Tally

STUDY = "study"  # the hidden subcommand `mllib tune MODEL ...` runs


class TuneGroup(TyperGroup):
    """`mllib tune MODEL ...` (and `mllib tune` alone, with [tune] in mllib.toml) is `mllib tune
    study MODEL ...`; the subcommands stay as they are."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h")):
            args = [STUDY, *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=TuneGroup,
    help="Tune a model's params with Optuna: every trial is an ordinary run.\n\n"
    "`mllib tune model.py --param lr=loguniform:1e-4:1e-1 --metric val_loss --trials 50` runs a "
    "study; the commands below inspect and continue studies.",
)

StudyArg = Annotated[str, typer.Argument(help="The study's name (`mllib tune list`).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (schema in the README).")]
SpaceOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--param",
        "-p",
        help="A param's range, NAME=KIND:ARGS: uniform:LO:HI, loguniform:LO:HI, int:LO:HI[:STEP], "
        "logint:LO:HI, choice:A,B,... Repeatable. Fix a param for every trial with --NAME=VALUE.",
        show_default=False,
    ),
]


def _opt(name: str, help_: str) -> Any:
    return Annotated[str | None, typer.Option(name, help=help_, show_default=False)]


def _number(name: str, help_: str, allowed: Range) -> Any:
    """An int option checked against `allowed` (mllib.cli.numbers)."""
    return Annotated[int | None, number_option(name, allowed, help=help_, show_default=False)]


@app.command(STUDY, hidden=True, context_settings=MODEL_COMMAND)
def study(
    ctx: typer.Context,
    model: ModelArg = None,
    param: SpaceOpt = None,
    metric: _opt(
        "--metric", "What to optimize: a key of evaluate()'s dict or a logged metric."
    ) = None,
    direction: _opt(
        "--direction", "minimize or maximize (default: minimize for loss-like names)."
    ) = None,
    trials: _number("--trials", "How many trials (default 20).", COUNT) = None,
    parallel: _number("--parallel", "Trials at once (default 1).", COUNT) = None,
    timeout: _opt("--timeout", "Start no trial after this long: seconds, or 30m, 2h, 1d.") = None,
    sampler: _opt("--sampler", "tpe (default), random or cmaes.") = None,
    pruner: _opt("--pruner", "median (default), hyperband or none.") = None,
    name: _opt("--name", "The study's name (default: MODEL-DATE-TIME).") = None,
    local: LocalOpt = False,
    remote: RemoteOpt = False,
    agent: AgentOpt = None,
    runtime: RuntimeOpt = None,
    data: DataOpt = None,
    seed: _number("--seed", "Seed of every trial's run and of the sampler.", SEED) = None,
    json_: JsonOpt = False,
    help_: HelpOpt = False,
) -> None:
    """Tune a model's params: each trial trains (and evaluates) as an ordinary run."""
    from mllib.tuning import api
    from mllib.tuning.driver import Launch
    from mllib.tuning.settings import TuneSettings

    target, fixed = target_and_params(ctx, model, None, help_)
    settings = TuneSettings.from_config(target.ws.project.config).merged(
        metric=metric,
        direction=direction,
        trials=trials,
        parallel=parallel,
        timeout=timeout,
        sampler=sampler,
        pruner=pruner,
        name=name,
    )
    launch = Launch(runtime, where(local, remote) or agent is not None, agent, data, seed)
    record = api.start(target, param or [], settings, fixed=fixed, launch=launch)
    _announce(record)
    _drive(
        lambda progress: api.run(target, record.name, progress=progress), target, record.name, json_
    )


@app.command()
def resume(
    name: StudyArg,
    trials: _number(
        "--trials", "Run the study to this many trials (default: as started).", COUNT
    ) = None,
    json_: JsonOpt = False,
) -> None:
    """Continue a study after Ctrl-C or a crash: no finished trial is lost or run again."""
    from mllib.tuning import api
    from mllib.workspace import Workspace

    ws = Workspace.find()
    target = api.study_target(ws, name)
    output.err().print(styled("[bold]Resuming study {}[/]", name), highlight=False)
    _drive(
        lambda progress: api.run(target, name, progress=progress, resume=True, trials=trials),
        target,
        name,
        json_,
    )


@app.command()
def show(
    name: StudyArg,
    json_: JsonOpt = False,
    output_: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write the history plot as a PNG (needs matplotlib).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """A study: best params and value, the trials, parameter importances, its history plot."""
    from mllib.cli.workspaces import reading
    from mllib.tuning.views import study_dict

    data = study_dict(reading(), name)
    if json_:
        output.print_json(data)
        return
    _print_study(data)
    if output_ is not None or data["counts"]["complete"]:
        from mllib.tuning.plot import history

        output.out().print(history(data, output=output_), markup=False, highlight=False)


@app.command("list")
def list_(json_: JsonOpt = False) -> None:
    """Studies, newest first."""
    from mllib.cli.workspaces import reading
    from mllib.tuning.views import list_dicts

    rows = list_dicts(reading())
    if json_:
        output.print_json(rows)
        return
    if not rows:
        output.err().print("No studies yet. Start one with `mllib tune model.py --param ...`.")
        return
    grid = output.table(
        "NAME", "MODEL", "METRIC", "STATUS", "TRIALS", "BEST", "CREATED", whole=("NAME",)
    )
    for r in rows:
        c = r["counts"]
        done = c["complete"] + c["pruned"] + c["failed"]
        grid.add_row(
            r["name"],
            r["model"],
            f"{r['metric']} ({r['direction'][:3]})",
            output.status_text(r["status"]),
            f"{done}/{r['trials_target']}",
            output.fmt_value(r["best_value"]),
            output.fmt_time(r["created_at"]),
        )
    output.print_table(grid)


# -- how a study's run is shown -----------------------------------------------------------------
class _Progress:
    """A study's live progress: one line redrawn on a terminal, a line per trial elsewhere."""

    def __init__(self, metric: str) -> None:
        from mllib import terminal

        self.metric = metric
        self.live = terminal.spinner() if output.animated() else None
        self.last = ""

    def line(self, tally: Tally) -> str:
        best = (
            f" · best {self.metric}={output.fmt_value(tally.best_value)} (trial {tally.best_trial})"
            if tally.best_trial is not None
            else ""
        )
        return (
            f"trials {tally.done}/{tally.target} · running {tally.running} · pruned "
            f"{tally.pruned} · failed {tally.failed}{best}"
        )

    def update(self, tally: Tally) -> None:
        from mllib import terminal

        if self.live is not None:
            self.live.update(output.text(self.line(tally)))
        if tally.last and tally.last != self.last:
            self.last = tally.last
            terminal.line(f"{tally.last}  [{tally.done}/{tally.target}]")

    def note(self, message: str) -> None:
        from mllib import terminal

        terminal.notice(message)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


def _announce(record: Any) -> None:
    from mllib import terminal

    if terminal.quiet():
        return
    settings = record.settings
    space = " ".join(f"{k}={v}" for k, v in record.space.items())
    output.err().print(
        styled(
            "[bold]Study {}[/] · {} · {} {} · {} trials, {} at once · {} sampler, {} pruner\n  {}",
            record.name,
            record.model,
            record.direction,
            record.metric,
            settings["trials"],
            settings["parallel"],
            settings["sampler"],
            settings["pruner"],
            space,
        )
    )


def _drive(run: Any, target: Any, name: str, json_: bool) -> None:
    """Run the study with live progress; print its outcome (or, on Ctrl-C, how to resume)."""
    from mllib.tuning.records import get_study

    study = get_study(target.ws.registry, name)
    progress = _Progress(study.metric)
    started = time.monotonic()
    try:
        tally = run(progress)
    except KeyboardInterrupt:
        progress.close()
        output.err().print(
            styled(
                "[yellow]■[/] Study {} interrupted; running trials were cancelled.\n"
                "  Continue it: mllib tune resume {}",
                name,
                name,
            ),
            highlight=False,
        )
        raise typer.Exit(EXIT_CANCELLED) from None
    finally:
        progress.close()
    _finish(target, name, tally, time.monotonic() - started, json_)


def _finish(target: Any, name: str, tally: Tally, seconds: float, json_: bool) -> None:
    from mllib.tuning.views import study_dict

    data = study_dict(target.ws, name)
    if json_:
        output.print_json(data)
    console = output.err()
    console.print(
        styled(
            "[green]✔[/] Study [bold]{}[/] finished in {}: {} complete, {} pruned, {} failed",
            name,
            output.fmt_duration(seconds),
            tally.complete,
            tally.pruned,
            tally.failed,
        ),
        highlight=False,
    )
    if data["best_trial"] is not None:
        params = ", ".join(f"{k}={output.fmt_value(v)}" for k, v in data["best_params"].items())
        console.print(
            f"  best:    {data['metric']}={output.fmt_value(data['best_value'])} (trial "
            f"{data['best_trial']}, run {data['best_run_id']})",
            markup=False,
        )
        console.print(f"  params:  {params}", markup=False)
        console.print(f"  next:    mllib train {target.rel_file} --from-study {name}", markup=False)
    console.print(f"  details: mllib tune show {name}", markup=False)


def _print_study(data: dict[str, Any]) -> None:
    console = output.out()
    console.print(
        styled("[bold]Study {}[/]  ", data["name"]) + output.status_text(data["status"]),
        highlight=False,
    )
    c = data["counts"]
    rows = [
        ("model", f"{data['model']} ({data['model_file']})"),
        ("objective", f"{data['direction']} {data['metric']}"
         + (f" ({data['metric_source']})" if data["metric_source"] else "")),
        ("trials", f"{c['complete']} complete, {c['pruned']} pruned, {c['failed']} failed, "
         f"{c['running']} running of {data['trials_target']}"),
        ("sampler", f"{data['settings']['sampler']}, {data['settings']['pruner']} pruner"),
        ("space", " ".join(f"{k}={v}" for k, v in data["space"].items())),
        ("error", data["error"]),
    ]  # fmt: skip
    if data["best_trial"] is not None:
        rows.append(
            ("best", f"{data['metric']}={output.fmt_value(data['best_value'])} (trial "
             f"{data['best_trial']}, run {data['best_run_id']})")
        )  # fmt: skip
        rows.append(
            ("params", ", ".join(f"{k}={output.fmt_value(v)}" for k, v in data["best_params"].items()))
        )  # fmt: skip
    for key, value in rows:
        if value:
            console.print(f"  {key + ':':<10} {value}", markup=False, highlight=False)
    if data["importances"]:
        console.print(styled("[bold]Importance[/]"))
        for param, weight in data["importances"].items():
            bar = "█" * max(1, round(weight * 30))
            console.print(f"  {param:<20} {weight:6.3f} {bar}", markup=False, highlight=False)
    names = list(data["space"])
    grid = output.table("#", "STATE", data["metric"].upper(), *names, "RUN", "DURATION")
    for t in data["trials"]:
        state = output.status_text(t["state"]) + (" (retried)" if t["retried"] else "")
        grid.add_row(
            str(t["number"]),
            state,
            output.fmt_value(t["value"]),
            *(output.fmt_value(t["params"].get(n)) for n in names),
            t["run_id"] or "-",
            output.fmt_duration(t["duration_s"]),
        )
    output.print_table(grid)
