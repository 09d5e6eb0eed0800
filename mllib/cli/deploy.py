"""`mllib deploy MODEL --env E` and `mllib deploy status|rollback|stop|logs|history`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from typer.core import TyperGroup

from mllib.cli import completion, output, step_summary
from mllib.cli.deploy_args import (
    EnvOpt,
    OnlyEnvOpt,
    agent_names,
    deploy_context,
    parse_duration,
)
from mllib.cli.deploy_report import report_deployments
from mllib.cli.numbers import number_option
from mllib.cli.output import styled
from mllib.ranges import COUNT, PERCENT, REPLICAS, Range

DEPLOY = "ship"  # the hidden subcommand `mllib deploy MODEL ...` runs
WINDOW = Range(0, 3600, low_open=True)  # deploy status waits this long


class DeployGroup(TyperGroup):
    """`mllib deploy MODEL --env E` is `mllib deploy ship MODEL --env E`; subcommands stay as they are."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = [DEPLOY, *args]
        return super().parse_args(ctx, args)

    def shell_complete(self, ctx: typer.Context, incomplete: str) -> list:
        """`mllib deploy <Tab>`: the subcommands, and the models and runs it can deploy."""
        from typer._click.shell_completion import CompletionItem  # typer's click (bounded)

        refs = [CompletionItem(v, help=h) for v, h in completion.model_refs(incomplete)]
        return [*super().shell_complete(ctx, incomplete), *refs]


app = typer.Typer(
    cls=DeployGroup,
    no_args_is_help=True,
    help="Deploy a trained model as a managed server: staging first, then prod.\n\n"
    "`mllib deploy MODEL[:VERSION]|RUN_ID --env staging|prod` deploys (also `MODEL@ALIAS`, "
    "`MODEL --best METRIC`, and a LitServe API as it is: `api.py:MyAPI`); the commands below inspect "
    "and control deployments. The rules (staging before prod, a per-user budget, cooldowns after "
    "rollbacks) are in the README.",
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _say(message: str) -> None:
    output.err().print(f"  {message}", markup=False, highlight=False)


@app.command(DEPLOY, hidden=True)
def ship(
    ref: Annotated[
        str,
        typer.Argument(
            metavar="MODEL[:VERSION]|RUN_ID",
            help="What to deploy: MODEL (its newest version), MODEL:VERSION, MODEL@ALIAS, a "
            "training run's id, or a model file: FILE:CLASS of a LitServe API (its code as it "
            "is, recorded as a version), or model.py (its newest version).",
            autocompletion=completion.model_refs,
        ),
    ],
    env: EnvOpt,
    best: Annotated[
        str | None,
        typer.Option(
            "--best",
            metavar="METRIC",
            help="MODEL's version whose latest evaluation has the best METRIC (the lowest for "
            "loss-like names, else the highest).",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Override the deploy rules (admins; needs --reason; audited)."
        ),
    ] = False,
    reason: Annotated[
        str | None,
        typer.Option("--reason", help="Why (recorded in the audit log).", show_default=False),
    ] = None,
    min_replicas: Annotated[
        int | None,
        number_option(
            "--min-replicas",
            COUNT,
            help="Replicas it never goes below ([serve] min_replicas).",
            show_default=False,
        ),
    ] = None,
    max_replicas: Annotated[
        int | None,
        number_option(
            "--max-replicas",
            REPLICAS,
            help="Replicas it may scale up to ([serve] max_replicas; 0: one per CPU core).",
            show_default=False,
        ),
    ] = None,
    agents: Annotated[
        str | None,
        typer.Option(
            "--agents",
            metavar="NAME,NAME",
            help="Run the replicas on these agents, behind the gateway here: one on each to "
            'begin with, more where most capacity is free ([serve] placement = "agents").',
            show_default=False,
        ),
    ] = None,
    canary: Annotated[
        float | None,
        number_option(
            "--canary",
            PERCENT,
            metavar="PCT",
            help="Run it beside the live version for PCT% of requests (then `deploy promote`).",
            show_default=False,
        ),
    ] = None,
    ab: Annotated[
        float | None,
        number_option(
            "--ab",
            PERCENT,
            metavar="PCT",
            help="An A/B test: PCT% of callers, each always on the same side (--sticky-by).",
            show_default=False,
        ),
    ] = None,
    sticky_by: Annotated[
        str | None,
        typer.Option(
            "--sticky-by",
            metavar="key|header:NAME",
            help="What keeps a caller on one side of an A/B test: its API key (default) or a header.",
            show_default=False,
        ),
    ] = None,
    shadow: Annotated[
        bool,
        typer.Option(
            "--shadow",
            help="Copy requests to it ([rollout] shadow_percent): answers compared, not returned.",
        ),
    ] = False,
    local: Annotated[
        bool,
        typer.Option(
            "--local",
            help="This project's versions, not the team server's (those `mllib models list` "
            "shows when a server is configured).",
        ),
    ] = False,
    json_: JsonOpt = False,
) -> None:
    """Deploy MODEL[:VERSION], MODEL@ALIAS, MODEL --best METRIC, a run id or a LitServe API
    (api.py:MyAPI) to staging or prod."""
    from mllib.serving.control.deploy import deploy
    from mllib.serving.control.rollout import Strategy

    ctx = deploy_context()
    if not local and best is None:
        ref = _server_version(ctx.ws, ref)
    strategy = Strategy.of(
        canary=canary,
        ab=ab,
        sticky_by=sticky_by,
        shadow=ctx.settings.rollout.shadow_percent if shadow else None,
    )
    outcome = deploy(
        ctx,
        ref,
        env,
        best=best,
        force=force,
        reason=reason,
        progress=_say,
        strategy=strategy,
        replicas=(min_replicas, max_replicas),
        agents=agent_names(agents),
    )
    try:
        _print_outcome(outcome, env, reason, json_)
    finally:
        report_deployments(ctx.ws)


def _server_version(ws, ref: str) -> str:
    """With a team server configured, the run id of the server's version `ref` names (NAME,
    NAME:VERSION, NAME@ALIAS), fetched here once (mllib.client.model_fetch); a model file or a
    run id of this project's stays as it is, and so does every ref with no server."""
    from mllib.cli.account import server_url
    from mllib.errors import NotFoundError
    from mllib.registry.runs import get_run
    from mllib.serving.control.servable import is_file_ref

    url = server_url()
    if url is None or is_file_ref(ref):
        return ref
    try:
        return get_run(ws.registry, ref).id  # a run id here
    except NotFoundError:
        pass
    from mllib.client.http import Server
    from mllib.client.model_fetch import fetch_version
    from mllib.datasets.format import human_bytes

    server = Server.connect(ws.project.config)
    try:
        fetched = fetch_version(server, ws, ref)
    finally:
        server.close()
    brought = (
        f"fetched {fetched.files} file(s), {human_bytes(fetched.bytes)}"
        if fetched.files
        else "here already"
    )
    _say(
        f"{ref} on the team server is {fetched.name} v{fetched.server_version} (run "
        f"{fetched.run_id}): {brought}; here it is {fetched.ref}"
    )
    return fetched.run_id


def _print_outcome(outcome, env: str, reason: str | None, json_: bool) -> None:
    dep = outcome.deployment
    console = output.err()
    if json_:
        output.print_json(outcome_dict(env, outcome))
    if outcome.candidate is not None:
        _print_candidate(console, outcome.candidate, dep, env)
        return
    if outcome.noop:
        console.print(
            f"Refused as a no-op: {dep.label} (the same model and code) is already live on {env} "
            f"at {dep.url}. Nothing was changed."
        )
        step_summary.append(
            step_summary.deployment(env, dep.label, dep.url or "", "live", "no-op: already live")
        )
        return
    step_summary.append(
        step_summary.deployment(
            env, dep.label, dep.url or "", "live", f"forced: {reason}" if outcome.forced else ""
        )
    )
    if outcome.forced:
        console.print(f"Overrode {', '.join(outcome.forced)} (audited: {reason})", style="yellow")
    console.print(styled("[green]✔[/] {} is live on [bold]{}[/] at {}", dep.label, env, dep.url))
    if env == "staging":
        console.print("  Next: mllib loadtest --env staging, then mllib deploy ... --env prod")
    else:
        console.print("  Requests need a key: mllib keys create --env prod")


def outcome_dict(env: str, outcome) -> dict:
    """What `deploy --json` and `deploy rollback --json` print: the deployment live on `env`
    after the command, and the rollout beside it, if one runs."""
    dep = outcome.deployment
    candidate = None
    if outcome.candidate is not None:
        servable = outcome.candidate["spec"]["servable"]
        candidate = {
            "variant": outcome.candidate.get("variant"),
            "mode": outcome.candidate["mode"],
            "weight": outcome.candidate["weight"],
            "sticky_by": outcome.candidate.get("sticky_by"),
            "model": servable["model"],
            "version": servable["version"],
        }
    return {
        "env": env,
        "deployment_id": dep.id,
        "model": dep.model,
        "version": dep.version,
        "url": dep.url,
        "state": dep.state,
        "noop": outcome.noop,
        "forced": outcome.forced or [],
        "replaced": outcome.replaced.id if outcome.replaced else None,
        "rolled_back": outcome.rolled_back,
        "cooldown_s": outcome.cooldown_s,
        "candidate": candidate,
    }


def _print_candidate(console, candidate: dict, stable, env: str) -> None:
    servable = candidate["spec"]["servable"]
    label = f"{servable['model']} v{servable['version']}"
    if candidate["mode"] == "shadow":
        what = (
            f"gets a copy of {candidate['weight']:g}% of requests (answers compared, not returned)"
        )
    elif candidate["mode"] == "ab":
        what = f"serves {candidate['weight']:g}% of callers, sticky by {candidate['sticky_by']}"
    else:
        what = f"serves {candidate['weight']:g}% of requests"
    console.print(
        styled("[green]✔[/] {} {} on [bold]{}[/], beside {}", label, what, env, stable.label)
    )
    console.print(
        f"  Watch: mllib deploy status --env {env} · then: mllib deploy promote --env {env}"
        f" (or rollback)"
    )


@app.command()
def promote(
    env: EnvOpt,
    steps: Annotated[
        str | None,
        typer.Option(
            "--steps",
            help="Percent of requests at each step, e.g. 10,50,100 ([rollout] promote_steps).",
            show_default=False,
        ),
    ] = None,
    interval: Annotated[
        str | None,
        typer.Option(
            "--interval",
            help="Time between steps: 30s, 5m, 1h ([rollout] promote_interval_s).",
            show_default=False,
        ),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Move the canary (or A/B, or shadow) of an environment to 100% of requests, in steps."""
    from mllib.serving.control.promote import promote as do_promote

    seconds = None if interval is None else parse_duration(interval, "--interval")
    ctx = deploy_context()
    answer = do_promote(ctx, env, steps=steps, interval_s=seconds)
    report_deployments(ctx.ws)  # what went live since (this promotion: when its steps end)
    if json_:
        output.print_json(answer)
    console = output.err()
    label = f"{answer['model']} v{answer['version']}"
    left = ", ".join(f"{s:g}%" for s in answer["steps_left"])
    if answer["steps_left"] == [100.0] or not answer["steps_left"]:
        left = "100%"
    weight = f"{answer['weight']:g}%"
    console.print(
        styled("[green]✔[/] {} takes {} of requests on {}; next: {}", label, weight, env, left)
    )
    console.print(
        "  Steps wait while it looks worse than stable; `mllib deploy status` shows where it is."
    )


@app.command()
def status(
    env: OnlyEnvOpt = None,
    json_: JsonOpt = False,
    window: Annotated[
        float, number_option("--window", WINDOW, help="Seconds to measure live traffic over.")
    ] = 1.0,
) -> None:
    """What runs where, with live requests/s, p50/p99 latency and error rate."""
    from mllib.cli.deploy_status import print_status
    from mllib.serving.control.status import status as read_status

    ctx = deploy_context(read_only=True)
    rows = read_status(ctx, env, window_s=window)
    if ctx.ws.recorded:  # what went live and the team server was not told of yet
        report_deployments(deploy_context().ws)
    if json_:
        output.print_json(rows)
        return
    print_status(rows, output.out())
    for r in rows:
        if r["state"] in ("failed", "crashed") and r.get("error"):
            output.err().print(f"{r['env']}: {r['error']}", markup=False)


@app.command()
def rollback(
    env: EnvOpt,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why (audited).", show_default=False)
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Take a canary, A/B test or shadow down at once; else put back the version that was live
    before the current one. On prod, the cooldown doubles."""
    from mllib.serving.clock import human_duration
    from mllib.serving.control.deploy import rollback as do_rollback

    ctx = deploy_context()
    outcome = do_rollback(ctx, env, reason=reason, progress=_say)
    report_deployments(ctx.ws)
    if json_:
        output.print_json(outcome_dict(env, outcome))
    console = output.err()
    dep = outcome.deployment
    if outcome.rolled_back:
        console.print(
            styled(
                "[green]✔[/] Took {} down on {}: {} serves every request at {}",
                outcome.rolled_back,
                env,
                dep.label,
                dep.url,
            )
        )
    else:
        console.print(styled("[green]✔[/] Rolled {} back to {} at {}", env, dep.label, dep.url))
    if outcome.cooldown_s:
        console.print(
            f"  Your next prod deploy of {outcome.deployment.model} waits {human_duration(outcome.cooldown_s)}."
        )


@app.command()
def stop(env: EnvOpt, json_: JsonOpt = False) -> None:
    """Stop the environment's server and every process it started."""
    from mllib.serving.control.deploy import stop as do_stop

    ctx = deploy_context()
    stopped = do_stop(ctx, env, progress=_say)
    for dep in stopped:
        output.err().print(f"Stopped {dep.label} on {env}.")
    report_deployments(ctx.ws)  # the server's NAME@ENV: nothing deployed there now
    if json_:
        output.print_json(
            [{"env": env, "deployment_id": d.id, "model": d.model, "version": d.version,
              "state": d.state} for d in stopped]
        )  # fmt: skip


@app.command()
def logs(
    env: EnvOpt,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines.")
    ] = False,
    tail: Annotated[
        int | None,
        number_option("--tail", COUNT, help="Only the last N lines (then new ones with -f)."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Only lines from this long ago (30s, 10m, 2h) or this UTC time "
            "(2026-01-31T12:00:00Z) on.",
            show_default=False,
        ),
    ] = None,
    json_: Annotated[
        bool, typer.Option("--json", help="Print the raw JSON lines (for log shippers).")
    ] = False,
) -> None:
    """The server log of the environment's deployment (its rotated copies first): one JSON line
    per request, plus errors."""
    from mllib.serving.control.status import log_source
    from mllib.serving.logs import follow as read_lines
    from mllib.serving.logs import pretty

    start = _since_time(since) if since is not None else None
    path, alive = log_source(deploy_context(read_only=True), env)
    try:
        for line in read_lines(path, follow=follow, alive=alive, tail=tail, since=start):
            # --json: the server's JSON lines, control characters escaped as JSON escapes them
            shown = line.decode("utf-8", "replace") if json_ else output.printable(pretty(line))
            sys.stdout.write(shown + "\n")
            sys.stdout.flush()
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


def _since_time(text: str) -> str:
    """`--since` as the ISO 8601 UTC text log lines carry: a duration back from now, or a time."""
    import time
    from datetime import UTC, datetime

    from mllib.errors import UsageError

    if text[:1].isdigit() and "-" not in text and ":" not in text:
        moment = datetime.fromtimestamp(time.time() - parse_duration(text, "--since"), UTC)
    else:
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise UsageError(
                f"--since must be a duration like 10m or a time like 2026-01-31T12:00:00Z, "
                f"not {text!r}"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)  # the log's times are UTC
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@app.command()
def history(
    env: OnlyEnvOpt = None,
    limit: Annotated[int, number_option("--limit", COUNT, help="At most this many entries.")] = 30,
    json_: JsonOpt = False,
) -> None:
    """The audit log: deploys, rollbacks, stops, refusals, overrides, load tests, key events."""

    from mllib.serving.audit import history as read_history

    rows = read_history(deploy_context(read_only=True).ws.registry, env=env, limit=limit)
    if json_:
        output.print_json(rows)
        return
    if not rows:
        output.err().print("Nothing deployed yet.")
        return
    table = output.table(
        "TIME", "USER", "ENV", "ACTION", "RESULT", "MODEL", "DETAIL", whole=("TIME",)
    )
    for r in rows:
        model = (
            f"{r['model']} v{r['version']}"
            if r["model"]
            else (f"key {r['key_id']}" if r["key_id"] else "")
        )
        style = {"refused": "yellow", "failed": "red", "forced": "magenta", "flagged": "red"}.get(
            r["result"], ""
        )
        table.add_row(
            output.fmt_time(r["at"]),
            r["user"] or "-",
            r["env"] or "-",
            r["action"],
            output.text(r["result"], style),
            model,
            r["reason"] or "",
        )
    output.print_table(table)
