"""Each `mllib deploy` command tells the team server (when one is configured) what went live
here since it last could: a deploy, a rollback, a promotion its controller finished. The deploy
itself never waits on the server nor fails for it: when the server cannot be reached, one line
says so, and the next `mllib deploy` command (`mllib deploy status` is enough) sends it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mllib.cli import output

if TYPE_CHECKING:
    from mllib.serving.control.records import Deployment
    from mllib.workspace import Workspace

TIMEOUT_S = 5.0  # a server that does not answer delays a deploy this long at most


def report_deployments(ws: Workspace) -> None:
    """Send the team server each deployment that went live here and it was not told of."""
    from mllib.cli.account import server_url
    from mllib.client.deployments import record
    from mllib.client.http import Server
    from mllib.errors import MllibError
    from mllib.serving.control import records

    if server_url() is None:
        return
    pending = records.unreported(ws.registry)
    if not pending:
        return
    console = output.err()
    dep = pending[0]
    known: dict[tuple[str, str], bool] = {}  # the newest of each model and env: a version there?
    try:
        server = Server.connect(ws.project.config, timeout=TIMEOUT_S)
        try:
            for dep in pending:
                answer = record(server, _body(dep))
                records.reported(ws.registry, dep.id)
                known[(dep.model, dep.env)] = bool(answer["known"])
        finally:
            server.close()
        console.print(
            f"  Recorded on the team server: {dep.label} on {dep.env}.",
            markup=False,
            highlight=False,
        )
        for (model, env), held in known.items():
            if not held:
                console.print(
                    f"  The team server holds no such version of {model}: its schedules of "
                    f"{model}@{env} cannot evaluate what {env} serves (deploy one it trained).",
                    markup=False,
                    highlight=False,
                )
    except MllibError as exc:
        console.print(
            f"Not recorded on the team server yet ({exc.message}): {dep.label} on {dep.env}; "
            "the next `mllib deploy` command (`mllib deploy status`) sends it.",
            markup=False,
            highlight=False,
            style="yellow",
        )


def _body(dep: Deployment) -> dict[str, object]:
    return {
        "id": dep.id,
        "model": dep.model,
        "version": dep.version,
        "run_id": dep.run_id,
        "env": dep.env,
        "action": dep.action,
        "deployed_at": dep.live_at,
    }
