"""Optuna's side of a study: its storage, sampler and pruner (Optuna is imported here, lazily).

Locally a study lives in Optuna's JournalStorage, one append-only journal file per project
(`.mllib/tune/journal.log`), which Optuna keeps consistent under parallel writers with a lock
file: measured here at ~120 TPE trials/s with 4 processes against ~49 on its SQLite storage
(README, "Tuning"). A team server's database takes its place when one is configured (the
`storage` argument of `open_study`).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mllib.errors import MllibError
from mllib.filemodes import private_dir

if TYPE_CHECKING:
    import optuna

    from mllib.tuning.records import StudyRecord
    from mllib.workspace import Workspace

JOURNAL = "journal.log"


def import_optuna() -> Any:
    """Optuna, with its log handler removed (its records go to Python's logging, shown with
    `mllib -v`); a missing Optuna is one clear error naming the extra that brings it."""
    try:
        import optuna
    except ImportError:
        raise MllibError(
            "mllib tune needs Optuna, which is not installed",
            hint="Install the tune extra: pip install 'mllib[tune]'.",
        ) from None
    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
    return optuna


@contextmanager
def quiet_warnings() -> Iterator[None]:
    """Optuna's warnings about its own features (experimental, deprecated arguments) are not the
    user's business: hidden while mllib calls it."""
    optuna = import_optuna()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", FutureWarning)
        yield


def tune_dir(ws: Workspace) -> Path:
    """Where a project's studies live (.mllib/tune/, 0700)."""
    path = ws.project.state_dir / "tune"
    path.mkdir(parents=True, exist_ok=True)
    private_dir(path)
    return path


def journal_storage(ws: Workspace) -> optuna.storages.BaseStorage:
    """The project's Optuna storage: a JournalStorage on `.mllib/tune/journal.log`."""
    optuna = import_optuna()
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    path = tune_dir(ws) / JOURNAL
    with quiet_warnings():
        # An open(O_EXCL) lock file: works on every filesystem (the symlink lock does not on some).
        backend = JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path)))
        storage: optuna.storages.BaseStorage = optuna.storages.JournalStorage(backend)
    return storage


def sampler(name: str, seed: int | None, parallel: int) -> optuna.samplers.BaseSampler:
    """The sampler `name` (tpe, random, cmaes), seeded; TPE lies about running trials (constant
    liar) when several run at once, so parallel trials do not all sample the same point."""
    optuna = import_optuna()
    with quiet_warnings():
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        if name == "cmaes":
            try:
                import cmaes  # noqa: F401  (Optuna's CMA-ES sampler imports it when sampling)
            except ImportError:
                raise MllibError(
                    "--sampler cmaes needs the cmaes package",
                    hint="Install the tune extra: pip install 'mllib[tune]'.",
                ) from None
            return optuna.samplers.CmaEsSampler(seed=seed)
        constant_liar = parallel > 1
        return optuna.samplers.TPESampler(seed=seed, constant_liar=constant_liar)


def pruner(name: str) -> optuna.pruners.BasePruner:
    """The pruner `name` (median, hyperband, none) with Optuna's defaults."""
    optuna = import_optuna()
    if name == "median":
        return optuna.pruners.MedianPruner()
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


def open_study(
    ws: Workspace, study: StudyRecord, *, create: bool, seed_offset: int = 0
) -> optuna.Study:
    """The Optuna study behind `study` (created when `create`), with its sampler and pruner.

    A sampler's state is not stored: a resumed study gets one seeded with the seed plus the
    number of trials it already has (`seed_offset`), so it does not draw the same points again.
    """
    optuna = import_optuna()
    settings = study.settings
    seed = settings.get("seed")
    with quiet_warnings():
        kwargs = {
            "study_name": study.name,
            "storage": journal_storage(ws),
            "sampler": sampler(
                settings["sampler"],
                None if seed is None else seed + seed_offset,
                settings["parallel"],
            ),
            "pruner": pruner(settings["pruner"]),
        }
        if create:
            return optuna.create_study(direction=study.direction, **kwargs)
        return optuna.load_study(**kwargs)


def load_study(ws: Workspace, name: str) -> optuna.Study:
    """The Optuna study behind the recorded study `name`, read from the project's storage."""
    from mllib.tuning.records import get_study

    return open_study(ws, get_study(ws.registry, name), create=False)


def live_trial(study: optuna.Study, frozen: optuna.trial.FrozenTrial) -> optuna.Trial:
    """A trial another process left running, as a Trial this one can report to and tell (what
    Optuna's own ask() builds, from the trial's storage id)."""
    optuna = import_optuna()
    trial: optuna.Trial = optuna.trial.Trial(study, frozen._trial_id)
    return trial
