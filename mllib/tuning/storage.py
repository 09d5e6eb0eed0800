"""Optuna's side of a study: its storage, sampler and pruner (Optuna is imported here, lazily).

Locally a study lives in Optuna's JournalStorage, one append-only journal file per project
(`.mllib/tune/journal.log`), which Optuna keeps consistent under parallel writers with a lock
file: measured here at ~120 TPE trials/s with 4 processes against ~49 on its SQLite storage
(README, "Tuning"). A study started with `--remote` while a team server is configured keeps
its journal in the server's database instead (mllib.client.studies over HTTP, the server's
mllib.server.studies), recorded as the study's `settings["server"]`, so it is the same study
from any machine its user logs in from.
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
    from optuna.distributions import BaseDistribution
    from optuna.pruners import BasePruner
    from optuna.samplers import BaseSampler
    from optuna.storages import BaseStorage
    from optuna.trial import FrozenTrial, Trial

    from mllib.tuning.records import StudyRecord
    from mllib.workspace import Workspace

JOURNAL = "journal.log"


def import_optuna() -> Any:
    """Optuna, with its log handler removed (its records go to Python's logging, shown with
    `mllib -v`); a missing Optuna is one clear error naming the extra that brings it. The
    functions below import it again by name after this, for its types."""
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


def journal_storage(ws: Workspace) -> BaseStorage:
    """The project's Optuna storage: a JournalStorage on `.mllib/tune/journal.log`."""
    import_optuna()
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    path = tune_dir(ws) / JOURNAL
    with quiet_warnings():
        # An open(O_EXCL) lock file: works on every filesystem (the symlink lock does not on some).
        backend = JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path)))
        return JournalStorage(backend)


def study_storage(ws: Workspace, study: StudyRecord) -> BaseStorage:
    """Where `study`'s trials live: the team server's journal of it when it was started there
    (`settings["server"]`), else the project's journal file."""
    url = study.settings.get("server")
    return journal_storage(ws) if url is None else server_storage(str(url), study.name)


def server_storage(url: str, name: str) -> BaseStorage:
    """A JournalStorage on study `name`'s journal kept by the team server at `url`."""
    import_optuna()
    from optuna.storages import JournalStorage
    from optuna.storages.journal import BaseJournalBackend

    from mllib.plugins import STUDY_JOURNAL, load

    remote = load(STUDY_JOURNAL)(url, name)

    class ServerBackend(BaseJournalBackend):
        """Optuna's side of mllib.client.studies.ServerJournal."""

        def read_logs(self, log_number_from: int) -> list[dict[str, Any]]:
            return list(remote.read_logs(log_number_from))

        def append_logs(self, logs: list[dict[str, Any]]) -> None:
            remote.append_logs(logs)

    with quiet_warnings():
        return JournalStorage(ServerBackend())


def sampler(name: str, seed: int | None, parallel: int) -> BaseSampler:
    """The sampler `name` (tpe, random, cmaes), seeded; TPE lies about running trials (constant
    liar) when several run at once, so parallel trials do not all sample the same point."""
    import_optuna()
    from optuna import samplers

    with quiet_warnings():
        if name == "random":
            return samplers.RandomSampler(seed=seed)
        if name == "cmaes":
            import importlib.util

            if importlib.util.find_spec("cmaes") is None:  # Optuna's CMA-ES sampler imports it
                raise MllibError(
                    "--sampler cmaes needs the cmaes package",
                    hint="Install the tune extra: pip install 'mllib[tune]'.",
                )
            return samplers.CmaEsSampler(seed=seed)
        return samplers.TPESampler(seed=seed, constant_liar=parallel > 1)


def pruner(name: str) -> BasePruner:
    """The pruner `name` (median, hyperband, none) with Optuna's defaults."""
    import_optuna()
    from optuna import pruners

    if name == "median":
        return pruners.MedianPruner()
    if name == "hyperband":
        return pruners.HyperbandPruner()
    return pruners.NopPruner()


def open_study(
    ws: Workspace, study: StudyRecord, *, create: bool, seed_offset: int = 0
) -> optuna.Study:
    """The Optuna study behind `study` (created when `create`), with its sampler and pruner.

    A sampler's state is not stored: a resumed study gets one seeded with the seed plus the
    number of trials it already has (`seed_offset`), so it does not draw the same points again.
    """
    import_optuna()
    import optuna

    settings = study.settings
    seed = settings.get("seed")
    with quiet_warnings():
        storage = study_storage(ws, study)
        chosen = sampler(
            settings["sampler"], None if seed is None else seed + seed_offset, settings["parallel"]
        )
        if create:
            return optuna.create_study(
                study_name=study.name,
                storage=storage,
                sampler=chosen,
                pruner=pruner(settings["pruner"]),
                direction=(
                    optuna.study.StudyDirection.MINIMIZE
                    if study.direction == "minimize"
                    else optuna.study.StudyDirection.MAXIMIZE
                ),
            )
        return optuna.load_study(
            study_name=study.name,
            storage=storage,
            sampler=chosen,
            pruner=pruner(settings["pruner"]),
        )


def load_study(ws: Workspace, name: str) -> optuna.Study:
    """The Optuna study behind the study `name` this project records, read from its storage."""
    from mllib.tuning.records import get_study

    return open_study(ws, get_study(ws.registry, name), create=False)


def live_trial(study: optuna.Study, frozen: FrozenTrial) -> Trial:
    """A trial another process left running, as a Trial this one can report to and tell (what
    Optuna's own ask() builds, from the trial's storage id)."""
    import_optuna()
    from optuna.trial import Trial

    return Trial(study, frozen._trial_id)


def distribution(kind: str, low: float | None, high: float | None, step: int | None,
                 choices: tuple[Any, ...]) -> BaseDistribution:  # fmt: skip
    """The Optuna distribution of a search-space dimension (mllib.tuning.space.Dimension)."""
    import_optuna()
    from optuna import distributions as d

    if kind == "choice":
        return d.CategoricalDistribution(choices)
    assert low is not None and high is not None
    if kind in ("int", "logint"):
        return d.IntDistribution(int(low), int(high), log=kind == "logint", step=step or 1)
    return d.FloatDistribution(float(low), float(high), log=kind == "loguniform")
