"""`mllib agents ...`: add, list, check, remove and sync remote GPU agents."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from mllib.cli import output
from mllib.cli.numbers import number_option
from mllib.cli.output import styled
from mllib.ranges import GPUS, NON_NEGATIVE, PORT, POSITIVE

app = typer.Typer(
    help="Remote GPU agents: hosts that run `--remote` runs over SSH.", no_args_is_help=True
)

NameArg = Annotated[str, typer.Argument(help="The agent's name.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _config():
    from mllib.project import Project

    return Project.find().config


def ask_host_key(label: str, key_type: str, fingerprint: str) -> bool:
    """First contact in a terminal: show the fingerprint and ask, as ssh does."""
    console = output.err()
    console.print(f"The authenticity of agent host {label} can't be established.", markup=False)
    console.print(f"{key_type} key fingerprint is {fingerprint}.", markup=False)
    return typer.confirm("Trust this key and continue connecting?", default=False, err=True)


def confirm_callback():
    return ask_host_key if sys.stdin.isatty() else None


@app.command()
def add(
    name: NameArg,
    host: Annotated[str, typer.Option("--host", help="Host name or address.")],
    port: Annotated[int, number_option("--port", PORT, help="SSH port.")] = 22,
    user: Annotated[
        str | None, typer.Option("--user", help="Login user (default: yours).", show_default=False)
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(
            "--key", help="Private key file (default: ssh-agent, ~/.ssh/id_*).", show_default=False
        ),
    ] = None,
    gpus: Annotated[
        int | None,
        number_option(
            "--gpus",
            GPUS,
            help="GPUs to use (default: counted with nvidia-smi).",
            show_default=False,
        ),
    ] = None,
    python: Annotated[str, typer.Option("--python", help="The host's Python 3.11+.")] = "python3",
    cache_gb: Annotated[
        float | None,
        number_option(
            "--cache-gb",
            POSITIVE,
            help="Cap of the agent's cache of code, models and dataset chunks (default 50).",
            show_default=False,
        ),
    ] = None,
    trust_host_key: Annotated[
        bool,
        typer.Option(
            "--trust-host-key", help="Accept an unknown host key without asking (scripts)."
        ),
    ] = False,
    json_: JsonOpt = False,
) -> None:
    """Add an agent: log in (verifying its host key), install the agent program, record it."""
    from mllib.agents.api import add_agent

    def connecting(spec) -> None:  # after the arguments were checked
        output.err().print(
            f"Connecting to {spec.host}:{spec.port} and installing the agent (first time: a minute)…"
        )

    report = add_agent(
        name,
        host,
        port=port,
        user=user,
        key=key,
        gpus=gpus,
        python=python,
        cache_gb=cache_gb,
        trust_host_key=trust_host_key,
        confirm=confirm_callback(),
        on_connect=connecting,
    )
    output.err().print(styled("[green]✔[/] Agent [bold]{}[/] added", name))
    if json_:
        output.print_json(report)  # what `mllib agents check NAME --json` prints
        return
    _print_report(report)


@app.command("list")
def list_(
    local: Annotated[
        bool, typer.Option("--local", help="This project's agents, not the team server's.")
    ] = False,
    check: Annotated[
        bool, typer.Option("--check", help="Team server: have it ask each agent now.")
    ] = False,
    json_: JsonOpt = False,
) -> None:
    """List agents: the team server's when one is configured (GPU slots, the runs holding them,
    whether each answers), else this project's (`mllib agents add`, mllib.toml [[agents]])."""
    from mllib.credentials import configured_server

    config = _config()
    if local or configured_server(config) is None:
        list_local(json_)
        return
    from mllib.client.http import Server
    from mllib.client.views import agents, occupants

    server = Server.connect(config)
    with server.http:
        rows = agents(server, check=check)
    if json_:
        output.print_json(rows)
        return
    if not rows:
        output.err().print(
            f"The team server {server.url} has no agents yet. An admin adds them on its host "
            "with `mllib server agents add NAME --host HOST`.",
            markup=False,
        )
        return
    table = output.table(
        "NAME", "ADDRESS", "GPUS", "SLOTS", "RUNNING", "REACHABLE", whole=("NAME",)
    )
    for a in rows:
        if a["reachable"] is None:
            reachable = output.text("not asked yet", "dim")
        elif a["reachable"]:
            reachable = output.text("yes", "green")
        else:
            reachable = output.text(f"no: {a['problem']}", "red")
        table.add_row(
            a["name"], a["address"], "auto" if a["gpus"] is None else str(a["gpus"]),
            f"{a['used']}/{a['slots']}", ", ".join(occupants(a)) or "-", reachable,
        )  # fmt: skip
    output.print_table(table)


def list_local(json_: JsonOpt = False) -> None:
    """List this project's agents (from `mllib agents add` and mllib.toml [[agents]])."""
    from mllib.agents.api import list_agents

    agents = list_agents(_config())
    if json_:
        output.print_json(agents)
        return
    if not agents:
        output.err().print("No agents yet. Add one with `mllib agents add NAME --host HOST`.")
        return
    table = output.table("NAME", "ADDRESS", "GPUS", "KEY", "FROM", whole=("NAME",))
    for a in agents:
        address = f"{a.get('user') + '@' if a.get('user') else ''}{a['host']}:{a['port']}"
        gpus = str(a["gpus"]) if a.get("gpus") is not None else "auto"
        table.add_row(a["name"], address, gpus, a.get("key") or "-", a["source"])
    output.print_table(table)


@app.command()
def check(name: NameArg, json_: JsonOpt = False) -> None:
    """Reach an agent: Python version, GPUs, free disk, Docker, running runs (updates it if needed)."""
    from mllib.agents.api import check_agent
    from mllib.errors import EXIT_SYSTEM

    report = check_agent(name, _config())
    if json_:
        output.print_json(report)
    elif report["reachable"]:
        output.err().print(
            styled("[green]✔[/] Agent [bold]{}[/] is reachable ({} s)", name, report["seconds"])
        )
        _print_report(report)
    else:
        output.err().print(
            styled("[red]✘[/] Agent [bold]{}[/] ({}): {}", name, report["address"], report["error"])
        )
    if not report["reachable"]:
        raise typer.Exit(EXIT_SYSTEM)


def _print_report(r: dict) -> None:
    console = output.out()
    rows = [
        ("address", r["address"]),
        ("python", r["python"]),
        (
            "gpus",
            f"{r['gpus']} ({r['gpus_from']}){': ' + ', '.join(r['gpu_names']) if r['gpu_names'] else ''}",
        ),
        ("slots", r["slots"]),
        ("disk free", f"{r['disk_free_gb']} GB"),
        (
            "docker",
            "available"
            if r["docker"]
            else f"not available: {r['docker_problem']}; runs use the process runtime",
        ),
        ("active runs", ", ".join(r["active_runs"]) or "none"),
        ("agent", r["agent_version"] + (" (installed/updated now)" if r["updated_now"] else "")),
    ]
    for key, value in rows:
        console.print(f"  {key + ':':<12} {value}", markup=False)


@app.command("rm")
def remove(name: NameArg) -> None:
    """Forget an agent (its host keeps the agent program and its runs' records)."""
    from mllib.agents.api import remove_agent

    remove_agent(name, _config())
    output.err().print(f"Agent {name} removed.")


app.command("remove", hidden=True)(remove)  # the older spelling: `rm` is the one removal verb


@app.command()
def sync(
    name: Annotated[str | None, typer.Argument(help="One agent (default: all).")] = None,
    json_: JsonOpt = False,
) -> None:
    """Pull run records, metrics, logs and artifacts from agents into this project's registry."""
    from mllib.agents.api import sync_agents
    from mllib.workspace import Workspace

    results = sync_agents(Workspace.find(), name)
    if json_:
        output.print_json(results)
        return
    if not results:
        output.err().print("No agents to sync. Add one with `mllib agents add NAME --host HOST`.")
        return
    for agent, r in results.items():
        if "error" in r:
            output.err().print(styled("[red]✘[/] {}: {}", agent, r["error"]))
        else:
            output.err().print(
                styled(
                    "[green]✔[/] {}: {} run(s), {} metric point(s), {} bytes of artifacts",
                    agent,
                    r["runs"],
                    r["metric_points"],
                    f"{r['bytes_fetched']:,}",
                )
            )


@app.command()
def prune(
    name: NameArg,
    older_than: Annotated[
        float,
        number_option(
            "--older-than",
            NON_NEGATIVE,
            help="Remove the folders of runs that ended this many days ago, and dataset copies "
            "and project venvs unused as long.",
        ),
    ] = 7.0,
    cache_gb: Annotated[
        float | None,
        number_option(
            "--cache-gb",
            NON_NEGATIVE,
            help="Trim the agent's cache to this many GB (default: its cap).",
            show_default=False,
        ),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Free disk on an agent; a later run sends it again whatever it then lacks."""
    from mllib.agents.api import prune_agent
    from mllib.datasets.format import human_bytes

    r = prune_agent(name, older_than_days=older_than, cache_gb=cache_gb, config=_config())
    if json_:
        output.print_json(r)
        return
    cache = r.get("cache", {})
    freed = (
        f"freed {human_bytes(r['freed_bytes'])}: "
        f"{len(r['runs']['runs'])} run folder(s), {r['datasets']['copies']} dataset copy(ies), "
        f"{r['incoming']['files']} stale upload(s), "
        f"{r.get('envs', {}).get('envs', 0) + cache.get('envs', 0)} project venv(s), "
        f"{cache.get('blobs', 0)} cached blob(s); cache "
        f"{human_bytes(cache.get('store_bytes', 0))} of {human_bytes(r['cache_cap_bytes'])}, "
        f"disk free {human_bytes(r['disk_free_bytes'])}"
    )
    output.err().print(styled("[green]✔[/] Agent [bold]{}[/]: {}", name, freed))


@app.command("forget-host-key")
def forget_host_key(name: NameArg) -> None:
    """Drop an agent's recorded host key; only after checking that a changed key is legitimate."""
    from mllib.agents.api import forget_host_key as forget

    found = forget(name, _config())
    output.err().print(
        f"Forgot the host key of {name}; the next connection asks again."
        if found
        else f"No recorded host key for {name}."
    )
