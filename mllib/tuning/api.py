"""The Python API of tuning: start a study, resume one, read the best params. `mllib tune` and its
subcommands are thin layers over these functions.

>>> study = mllib.tune("model.py", {"lr": "loguniform:1e-4:1e-1"}, metric="val_loss", trials=20)  # doctest: +SKIP
>>> study.best_params, study.best_value  # doctest: +SKIP
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mllib.errors import UsageError
from mllib.identity import current_user
from mllib.runs.target import ModelTarget, locate_model, require_methods
from mllib.tuning.driver import Driver, Launch, Progress, Tally
from mllib.tuning.drivers import Presence
from mllib.tuning.records import (
    StudyRecord,
    create_study,
    get_study,
    trial_runs,
    update_study,
)
from mllib.tuning.remote import on_server, publish
from mllib.tuning.settings import TuneSettings, default_direction
from mllib.tuning.space import parse_space, space_texts
from mllib.tuning.storage import load_study
from mllib.workspace import Workspace

if TYPE_CHECKING:
    import optuna


def start(
    target: ModelTarget,
    space_items: Sequence[str],
    settings: TuneSettings,
    *,
    fixed: Mapping[str, Any] | None = None,
    launch: Launch | None = None,
) -> StudyRecord:
    """Check a new study whole (its space against the model's params, its settings) and record
    it; nothing runs yet. `space_items`: `NAME=KIND:ARGS` (`--param`), on top of `[tune.params]`."""
    config_items = settings.param_items()
    given = {item.partition("=")[0].strip() for item in space_items}
    space = parse_space(
        [i for i in config_items if i.partition("=")[0].strip() not in given],
        target.info.params,
        where="[tune.params] of mllib.toml",
    ) | parse_space(space_items, target.info.params)
    if not space:
        raise UsageError(
            "Nothing to tune: no search space",
            hint="Give one with --param NAME=KIND:ARGS (e.g. --param lr=loguniform:1e-4:1e-1), "
            "or [tune.params] in mllib.toml.",
        )
    if settings.metric is None:
        raise UsageError(
            "Which metric should the study optimize?",
            hint="Give --metric NAME (a key of evaluate()'s dict, or a metric the model logs), "
            "or `metric` in [tune] of mllib.toml.",
        )
    fixed = _typed_fixed(target, fixed or {})
    both = sorted(set(fixed) & set(space))
    if both:
        raise UsageError(
            f"`{both[0]}` is both fixed (--{both[0]}=...) and searched (--param {both[0]}=...)",
            hint="Drop one of them.",
        )
    require_methods(target, "train")
    ws = target.ws
    name = settings.name or _new_name(ws, target.name)
    launch = launch or Launch()
    seed = settings.seed if settings.seed is not None else launch.seed
    record = StudyRecord(
        name=name,
        model=target.name,
        model_ref=_model_ref(target),
        metric=settings.metric,
        direction=settings.direction or default_direction(settings.metric),
        settings={
            "trials": settings.trials,
            "parallel": settings.parallel,
            "timeout_s": settings.timeout_s,
            "sampler": settings.sampler,
            "pruner": settings.pruner,
            "seed": seed if seed is not None else ws.project.config.seed,
        },
        space=space_texts(space),
        fixed=fixed,
        launch=asdict(launch),
        status="created",
        user=current_user(),
    )
    server = _study_server(ws, launch)
    if server is not None:
        from mllib.tuning.remote import server_record

        record.settings["server"] = server  # its journal is kept there (mllib.tuning.storage)
        if server_record(ws, name) is not None:  # started on another machine
            raise UsageError(
                f"A study named {name!r} exists already on the team server",
                hint=f"Continue it with `mllib tune resume {name}`, or pick another --name.",
            )
    elif launch.data:
        from mllib.datasets.binding import resolve_bindings

        resolve_bindings(ws, launch.data)  # an unknown dataset: refused before anything runs
    create_study(ws.registry, record)
    return record


def run(
    target: ModelTarget,
    name: str,
    *,
    progress: Progress | None = None,
    resume: bool = False,
    trials: int | None = None,
) -> Tally:
    """Drive the study `name` to its end in this process (trials run here or where `launch`
    says); returns its tally. With `resume`, first settles the trials a previous `mllib tune`
    left: a finished run is told to Optuna (none is lost or rerun), a run that died with it is
    failed as a system error and tried again, a run still going on an agent is followed.
    `trials` raises (or lowers) the number of trials the study runs to."""
    from mllib.runs.control import reconcile
    from mllib.tuning.storage import open_study

    ws = target.ws
    study = get_study(ws.registry, name)
    if trials is not None:
        if trials < 1:
            raise UsageError(f"--trials must be at least 1, got {trials}")
        study.settings["trials"] = trials
        update_study(ws.registry, name, settings=StudyRecord.to_row(study)["settings"])
    space = parse_space(
        [f"{k}={v}" for k, v in study.space.items()], target.info.params, where=f"study {name}"
    )
    with _driving(ws, study):
        optuna_study = open_study(ws, study, create=not resume)
        publish(optuna_study, get_study(ws.registry, name))  # a server study: its record too
        presence = Presence(optuna_study) if on_server(study) else None
        ended: dict[str, Any] | None = None  # how this drive ended, once it has
        try:
            with presence or nullcontext():  # beating before it takes over trials of others
                if resume:
                    reconcile(ws)  # runs whose supervisor died with it: failed as system errors
                _reseed(optuna_study, study, presence, resumed=resume)
                driver = Driver(
                    target,
                    study,
                    optuna_study,
                    space,
                    evaluate="evaluate" in target.info.methods or not target.info.complete,
                    progress=progress,
                    max_attempts=ws.project.config.retry.max_attempts,
                    presence=presence,
                )
                if resume:
                    _take_over(ws, driver, optuna_study, name)
                try:
                    with _warm_workers(target, driver.launch):
                        tally = driver.run()
                except KeyboardInterrupt:
                    ended = {"status": "interrupted"}
                    raise
                except Exception as exc:
                    why = (str(exc).splitlines() or [type(exc).__name__])[0]
                    ended = {"status": "stopped", "error": why}
                    raise
                ended = {"status": "finished", "error": None}
        finally:
            if ended is not None:  # after this driver's beat has ended (see _ended)
                _ended(ws, optuna_study, study, presence, **ended)
    return tally


def tune(
    model: str | Path | None = None,
    space: Mapping[str, str] | Sequence[str] | None = None,
    *,
    metric: str | None = None,
    direction: str | None = None,
    trials: int | None = None,
    parallel: int | None = None,
    timeout: str | float | None = None,
    sampler: str | None = None,
    pruner: str | None = None,
    name: str | None = None,
    params: Mapping[str, Any] | None = None,
    runtime: str | None = None,
    remote: bool = False,
    agent: str | None = None,
    data: Sequence[str] | None = None,
    seed: int | None = None,
    target: ModelTarget | None = None,
    progress: Progress | None = None,
) -> optuna.Study:
    """Tune `model`'s params over `space` ({name: "KIND:ARGS"} or ["NAME=KIND:ARGS"]): each trial
    trains (and evaluates) as an ordinary run; returns the Optuna study (`best_params`,
    `best_value`, `trials`). Options left None come from `[tune]` of mllib.toml; `params` fixes
    params for every trial."""
    target = target or locate_model(model)
    items = (
        [f"{k}={v}" for k, v in space.items()] if isinstance(space, Mapping) else list(space or [])
    )
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
    launch = Launch(runtime, remote or agent is not None, agent, list(data or []) or None, seed)
    study = start(target, items, settings, fixed=params, launch=launch)
    run(target, study.name, progress=progress)
    return load_study(target.ws, study.name)


def resume(
    name: str,
    *,
    trials: int | None = None,
    ws: Workspace | None = None,
    progress: Progress | None = None,
) -> optuna.Study:
    """Continue study `name` after Ctrl-C or a crash (see `run`); returns the Optuna study."""
    ws = ws or Workspace.find()
    target = study_target(ws, name)
    run(target, name, progress=progress, resume=True, trials=trials)
    return load_study(ws, name)


def study_target(ws: Workspace, name: str) -> ModelTarget:
    """The model a recorded study tunes, found again from its project."""
    from mllib.tuning.remote import adopt

    study = adopt(ws, name)  # a study started on another machine is taken up here
    return locate_model(str(ws.project.root / study.model_ref))


def best_params(ws: Workspace, name: str, *, model: str | None = None) -> dict[str, Any]:
    """The params of the study's best trial, fixed ones included: what `mllib train --from-study`
    trains with (`model`: the model they are for, which must be the study's)."""
    from mllib.tuning.remote import find_study
    from mllib.tuning.views import best_trial

    study = find_study(ws, name)
    if model is not None and model != study.model:
        raise UsageError(
            f"Study {name} tuned {study.model}, not {model}",
            hint=f"Train {study.model_ref} with it, or pick a study of {model} (`mllib tune list`).",
        )
    best = best_trial(ws, study)
    if best is None:
        raise UsageError(
            f"Study {name} has no finished trial yet",
            hint=f"See its trials with `mllib tune show {name}`, or continue it with "
            f"`mllib tune resume {name}`.",
        )
    return {**study.fixed, **best["params"]}


# -- helpers ----------------------------------------------------------------------------------
@contextmanager
def _driving(ws: Workspace, study: StudyRecord) -> Iterator[None]:
    """Held while this process drives the study: a second `mllib tune` of it is refused."""
    from mllib.locks import try_lock
    from mllib.runtime.processes import create_time
    from mllib.tuning.storage import tune_dir

    with try_lock(tune_dir(ws) / f"{study.name}.lock") as held:
        if not held:
            raise UsageError(
                f"Study {study.name} is being run by another mllib tune (pid {study.driver_pid})",
                hint="Wait for it to end, or stop it (Ctrl-C there) and resume it here.",
            )
        pid = os.getpid()
        update_study(
            ws.registry,
            study.name,
            status="running",
            error=None,
            driver_pid=pid,
            driver_ctime=create_time(pid),
        )
        yield


def _ended(
    ws: Workspace,
    optuna_study: optuna.Study,
    study: StudyRecord,
    presence: Presence | None,
    **values: Any,
) -> None:
    """Record how the study's drive ended (here, and with its journal on a server). Of a study
    other drivers still drive, a finished drive leaves it running unless its trial budget is
    reached with no trial left running; a stopped one leaves it to them (mllib.tuning.drivers)."""
    from mllib.tuning.drivers import ends_study

    if presence is not None:
        if values["status"] == "finished":
            target = int(get_study(ws.registry, study.name).settings["trials"])
            if not ends_study(optuna_study, target, presence):
                return
        elif presence.others_driving():
            return
    update_study(ws.registry, study.name, **values)
    publish(optuna_study, get_study(ws.registry, study.name))


def _reseed(
    optuna_study: optuna.Study, study: StudyRecord, presence: Presence | None, *, resumed: bool
) -> None:
    """The sampler of this drive (samplers keep no state, so a resumed study must not draw the
    points it drew before): of a study kept on a server, the study's seed plus this driver's
    number (the order the server's journal gives drivers, so the same drivers in the same order
    draw the same points); of a resumed local one, plus the number of trials it has."""
    from mllib.tuning.storage import reseed

    if presence is not None:
        reseed(optuna_study, study, presence.number)
    elif resumed:
        reseed(optuna_study, study, len(optuna_study.get_trials(deepcopy=False)))


def _take_over(ws: Workspace, driver: Driver, optuna_study: optuna.Study, name: str) -> None:
    """Settle (or follow) each trial an earlier `mllib tune` of the study left running; of a
    server-kept study, not those of drivers still driving it on other machines."""
    from mllib.registry.runs import get_run
    from mllib.tuning.drivers import DRIVER_ATTR, live_drivers
    from mllib.tuning.storage import import_optuna, live_trial

    links = trial_runs(ws.registry, name)
    running = (import_optuna().trial.TrialState.RUNNING,)
    left = {t.number for t in optuna_study.get_trials(deepcopy=False, states=running)}
    # Read after the trials: a driver beats before it asks for its first trial, so the driver
    # of any trial above is among the beats, and has named itself on it once they are watched.
    me = driver.presence
    live = live_drivers(optuna_study, me=me.id) if me is not None else set()
    for frozen in optuna_study.get_trials(deepcopy=False, states=running):
        if frozen.number not in left or frozen.user_attrs.get(DRIVER_ATTR) in live:
            continue  # its driver runs it, and tells how it ends
        trial = live_trial(optuna_study, frozen)
        link = links.get(frozen.number)
        retry_of = frozen.user_attrs.get("retry_of")
        run = get_run(ws.registry, link["run_id"]) if link else None
        if run is not None and not run.finished:
            driver.adopt(trial, run, retry_of)
        else:
            driver.settle(trial, run, retry_of)


@contextmanager
def _warm_workers(target: ModelTarget, launch: Launch) -> Iterator[None]:
    """Trials that run here as processes are forked from a worker that has imported mllib and
    the model's libraries once (mllib.runtime.forkserver); other runtimes are unaffected."""
    if launch.remote or launch.agent:
        yield
        return
    from mllib.runtime.forkserver import model_imports, warm_workers

    with warm_workers(model_imports(target.info.file)):
        yield


def _study_server(ws: Workspace, launch: Launch) -> str | None:
    """The team server that keeps the study's journal: the one its trials are queued on
    (`--remote` with a server configured), else None (the project's journal file)."""
    from mllib.credentials import configured_server
    from mllib.plugins import SERVER_RUNTIME

    if (launch.remote and not launch.agent) or launch.runtime == SERVER_RUNTIME:
        return configured_server(ws.project.config)
    return None


def _typed_fixed(target: ModelTarget, given: Mapping[str, Any]) -> dict[str, Any]:
    """Params fixed for every trial, as their declared types (a study records them). A secret is
    refused: the registry would hold it; it belongs in the env file, where every trial reads it."""
    from mllib.params import convert

    fixed = {}
    for name, raw in given.items():
        spec = target.info.params[name]
        if spec.secret:
            where = spec.env or "the variable its env= names"
            raise UsageError(
                f"`{name}` is a secret param: a study records its fixed params, so it cannot be "
                "given on the command line",
                hint=f"Put {where}=... in .env.local (or export it): every trial reads it there.",
            )
        fixed[name] = convert(name, raw, spec.type_name, where="on the command line")
    return fixed


def _new_name(ws: Workspace, model: str) -> str:
    """`MODEL-YYYYMMDD-HHMMSS`, with a counter when that is taken."""
    from mllib.tuning.records import list_studies

    base = f"{model}-{time.strftime('%Y%m%d-%H%M%S')}"
    taken = {s.name for s in list_studies(ws.registry)}
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return name


def _model_ref(target: ModelTarget) -> str:
    ref = target.rel_file
    if not target.is_configured or target.ws.project.config.model:
        ref += f":{target.info.class_name}"
    return ref
