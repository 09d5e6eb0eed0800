"""`mllib models list|show|alias`: the trained versions of each model, their evaluations,
aliases and deployments."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from mllib.cli import output
from mllib.cli.output import fmt_time, fmt_value
from mllib.display import evaluation_cell, evaluation_source

app = typer.Typer(
    help="Trained model versions: list, show, and name them with aliases.\n\n"
    "Every command that uses a trained model takes `--model NAME[:VERSION]` (or `NAME@ALIAS`) "
    "and `--best METRIC`; `mllib deploy` takes the same names.",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON (schema in the README).")]


def _ws():
    from mllib.workspace import Workspace

    return Workspace.find()


def _reading():
    from mllib.cli.workspaces import reading

    return reading()


LocalOpt = Annotated[
    bool, typer.Option("--local", help="This project's models, not the team server's.")
]


@app.command("list")
def list_(json_: JsonOpt = False, local: LocalOpt = False) -> None:
    """Every model with its number of versions, the newest, its aliases and deployments (on a
    team server: the versions its runs made)."""
    from mllib.cli.account import ask_team_server
    from mllib.client import views
    from mllib.models.catalog import list_models

    found = ask_team_server(local, views.models)
    if found is None:
        found = list_models(_reading())
    if json_:
        output.print_json(found)
        return
    if not found:
        output.err().print("No trained models yet. Train one with `mllib train model.py`.")
        return
    table = output.table(
        "MODEL", "VERSIONS", "LATEST", "CREATED", "ALIASES", "DEPLOYED", whole=("MODEL",)
    )
    for m in found:
        table.add_row(
            m["name"],
            str(m["versions"]),
            f"v{m['latest_version']}",
            fmt_time(m["created_at"]),
            _pairs(m["aliases"]),
            _pairs(m["deployed"]),
        )
    output.print_table(table)


@app.command()
def show(
    ref: Annotated[
        str,
        typer.Argument(
            metavar="NAME[:VERSION]",
            help="A model (all its versions), or one version: NAME:VERSION or NAME@ALIAS.",
        ),
    ],
    json_: JsonOpt = False,
    local: LocalOpt = False,
) -> None:
    """A model's versions, newest first: their runs, latest evaluations, aliases, deployments
    (on a team server: its versions, and the trend of the evaluations it ran)."""
    from mllib.cli.account import ask_team_server
    from mllib.client import views
    from mllib.models.catalog import show as show_model

    data = ask_team_server(local, views.model, ref)
    if data is None:
        data = show_model(_reading(), ref)
    if json_:
        output.print_json(data)
        return
    if "versions" not in data:
        _print_version(data)
        return
    console = output.out()
    console.print(
        f"Model {data['name']} · {len(data['versions'])} version(s)"
        + (f" · aliases: {_pairs(data['aliases'])}" if data["aliases"] else "")
        + (f" · deployed: {_pairs(data['deployed'])}" if data["deployed"] else ""),
        markup=False,
        highlight=False,
    )
    for s in data.get("served", []):  # the team server's: what clients deployed
        held = s["held_version"]
        console.print(
            f"{s['env']} serves v{held} (deployed by {s['user']})"
            if held is not None
            else f"{s['env']} serves a version the team server does not hold ({s['user']}'s "
            f"v{s['version']}, run {s['run_id']}): its schedules of {data['name']}@{s['env']} "
            "cannot evaluate it",
            markup=False,
            highlight=False,
        )
    table = output.table(
        "VERSION", "RUN", "CREATED", "ALIASES", "DEPLOYED", "EVALUATION", whole=("RUN",)
    )
    for v in data["versions"]:
        table.add_row(
            f"v{v['version']}",
            v["run_id"],
            fmt_time(v["created_at"]),
            " ".join(v["aliases"]),
            " ".join(d["env"] for d in v["deployed"]),
            evaluation_cell(v["evaluation"], v["evaluations"]),
        )
    output.print_table(table)


def _print_version(v: dict[str, Any]) -> None:
    console = output.out()

    def line(text: str) -> None:
        console.print(text, markup=False, highlight=False)

    line(f"{v['model']} v{v['version']}  (run {v['run_id']}, {fmt_time(v['created_at'])})")
    if v["aliases"]:
        line(f"  aliases:  {', '.join(v['aliases'])}")
    for d in v["deployed"]:
        line(f"  deployed: {d['env']} ({d['state']}) at {d['url']}")
    if v["params"]:
        line("Params")
        for k, value in v["params"].items():
            line(f"  {k} = {fmt_value(value)}")
    if v["metrics"]:
        line("Metrics (last values)")
        for k, value in v["metrics"].items():
            line(f"  {k} = {fmt_value(value)}")
    evaluation = v["evaluation"]
    if evaluation:
        line(f"Evaluation ({evaluation_source(evaluation, v['evaluations'], v['run_id'])})")
        for k, value in evaluation["eval_metrics"].items():
            line(f"  {k} = {fmt_value(value)}")
    else:
        line(f"Not evaluated yet: mllib evaluate --model {v['ref']}")
    if len(v["history"]) > 1:
        _print_trend(line, v["history"])


def _print_trend(line: Any, history: list[dict[str, Any]]) -> None:
    """Each metric over the version's latest evaluations, oldest first: values and a sparkline."""
    from mllib.dashboard.text import sparkline

    first, last = fmt_time(history[0]["ended_at"]), fmt_time(history[-1]["ended_at"])
    line(f"Trend ({len(history)} evaluations, {first} to {last})")
    names = list(dict.fromkeys(k for h in history for k in h["eval_metrics"]))
    width = max(len(n) for n in names) if names else 0
    for name in names:
        values = [h["eval_metrics"].get(name) for h in history]
        numbers = [v if isinstance(v, int | float) else None for v in values]
        shown = " → ".join("-" if v is None else fmt_value(v) for v in values)
        line(f"  {name:<{width}}  {sparkline(numbers)}  {shown}")


@app.command()
def alias(
    ref: Annotated[
        str,
        typer.Argument(
            metavar="NAME[:VERSION]",
            help="The version to name (NAME:VERSION, NAME@OTHER, or NAME for its newest); with "
            "--rm, the alias to remove as NAME@ALIAS.",
        ),
    ],
    name: Annotated[
        str | None,
        typer.Argument(metavar="ALIAS", help="The alias, e.g. champion.", show_default=False),
    ] = None,
    rm: Annotated[bool, typer.Option("--rm", help="Remove the alias instead.")] = False,
    local: LocalOpt = False,
) -> None:
    """Name a version with an alias (`mllib models alias iris:3 champion`), used as NAME@ALIAS
    (on a team server: its versions' aliases, which its schedules of NAME@ALIAS follow)."""
    from mllib.cli.account import ask_team_server
    from mllib.client import views
    from mllib.errors import UsageError
    from mllib.models.aliases import AliasChange, remove_alias, set_alias

    console = output.err()
    if name is None and not rm:
        raise UsageError(
            "Which alias? Give it after the version",
            hint=f"For example: mllib models alias {ref} champion",
        )
    answer = ask_team_server(local, views.alias, ref, name, rm)
    if answer is not None:
        change = AliasChange(**answer)
    elif rm:
        change = remove_alias(_ws(), ref, name)
    else:
        change = set_alias(_ws(), ref, name or "")
    if rm:
        console.print(
            f"Removed {change.model}@{change.alias} (it named v{change.before}).", markup=False
        )
        return
    moved = f" (moved from v{change.before})" if change.before not in (None, change.version) else ""
    console.print(
        f"{change.model}@{change.alias} now names v{change.version}{moved}.", markup=False
    )


def _pairs(mapping: dict[str, Any]) -> str:
    return " ".join(f"{k}=v{v}" for k, v in mapping.items())
