"""`mllib serve model.py`: the trained model's predict (or a LitServe API's, `mllib serve
api.py:MyAPI`) over HTTP on localhost, for development."""

from __future__ import annotations

from typing import Annotated

import typer

from mllib.cli import output
from mllib.cli.model_args import (
    BestOpt,
    HelpOpt,
    ModelArg,
    ParamOpt,
    VersionOpt,
    chosen_target,
    run_option,
)
from mllib.cli.numbers import number_option
from mllib.cli.output import styled
from mllib.ranges import COUNT, SERVE_PORT


def serve(
    ctx: typer.Context,
    model: ModelArg = None,
    run: run_option("The training run to serve.") = None,
    version: VersionOpt = None,
    best: BestOpt = None,
    port: Annotated[
        int | None,
        number_option(
            "--port",
            SERVE_PORT,
            help="Port on localhost (default: [serve] port, 8000).",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        int | None,
        number_option(
            "--workers",
            COUNT,
            help="Processes holding the model (default: [serve] workers, 1).",
            show_default=False,
        ),
    ] = None,
    inference: Annotated[
        str | None,
        typer.Option(
            "--inference",
            help="inline: the HTTP processes predict (CPU models); worker: LitServe worker"
            " processes do (GPU models). Default: [serve] inference, inline.",
            show_default=False,
        ),
    ] = None,
    json_logs: Annotated[
        bool,
        typer.Option("--json-logs", help="Log JSON lines (as deployments do) instead of text."),
    ] = False,
    param: ParamOpt = None,
    help_: HelpOpt = False,
) -> None:
    """Serve a trained model, or a LitServe API as it is (api.py:MyAPI): POST /predict, GET
    /health, GET /metrics, docs at /docs. Ctrl-C stops."""
    from mllib.runs.model_choice import ModelChoice
    from mllib.runs.target import workspace_of
    from mllib.serving.control.dev import dev_spec
    from mllib.serving.control.dev import serve as run_dev
    from mllib.serving.logs import JSON, TEXT

    choice = ModelChoice(version=version, best=best, run=run)
    target, params = chosen_target(ctx, model, param, help_, choice)
    spec = dev_spec(
        target,
        choice=choice,
        params=params,
        port=port,
        workers=workers,
        inference=inference,
        log_format=JSON if json_logs else TEXT,
    )

    def announce(spec) -> None:
        url = f"http://{spec.host}:{spec.port}"
        servable = spec.servable
        console = output.err()
        console.print(
            styled(
                "[bold]Serving {} v{}[/] (run {}) at {}",
                servable.model,
                servable.version_label,
                servable.run_id,
                url,
            )
        )
        console.print(
            f"  POST {url}/predict · GET {url}/health · GET {url}/metrics · docs {url}/docs"
        )
        console.print("  Ctrl-C stops it.")

    code = run_dev(spec, workspace_of(target), announce)
    if code:
        output.err().print(
            styled(
                "[red]Error:[/] the model could not be loaded (see above); run {}",
                spec.servable.run_id,
            )
        )
    raise typer.Exit(code)
