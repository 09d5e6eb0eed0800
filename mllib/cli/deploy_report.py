"""Each `mllib deploy` command tells the team server (when one is configured) what went live
here, or was stopped, since it last could (mllib.serving.control.reporting), and says what it
did. The deploy itself never waits on the server nor fails for it: when the server cannot be
reached, one line says so, and the next `mllib deploy` command (`mllib deploy status` is enough)
sends it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mllib.cli import output

if TYPE_CHECKING:
    from mllib.workspace import Workspace


def report_deployments(ws: Workspace) -> None:
    """Send the team server each change of a deployment here it was not told of."""
    from mllib.cli.account import server_url
    from mllib.serving.control.reporting import send_pending

    url = server_url()
    if url is None:
        return
    report = send_pending(ws.registry, url)
    console = output.err()

    def say(line: str, **style: str) -> None:
        console.print(line, markup=False, highlight=False, **style)

    if report.sent:
        last = report.sent[-1]
        what = "stopped " if last.stopped else ""
        say(
            f"  Recorded on the team server: {what}{last.deployment.label} on {last.deployment.env}."
        )
    for (model, env), dep in report.unheld.items():
        say(
            f"  The team server does not hold {dep.label} (run {dep.run_id}): its schedules of "
            f"{model}@{env} cannot evaluate what {env} serves (`mllib deploy {model}:VERSION` "
            "deploys one it holds)."
        )
    if report.error is not None and report.left is not None:
        left = report.left
        what = "stop of " if left.stopped else ""
        say(
            f"Not recorded on the team server yet ({report.error}): {what}"
            f"{left.deployment.label} on {left.deployment.env}; the next `mllib deploy` command "
            "(`mllib deploy status`) sends it.",
            style="yellow",
        )
