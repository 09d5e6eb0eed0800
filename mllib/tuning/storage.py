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

import threading
import warnings
import weakref
from collections.abc import Callable, Iterator
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
    in_turn = threading.local()  # set by ask_in_turn on the thread that asks

    class ServerBackend(BaseJournalBackend):
        """Optuna's side of mllib.client.studies.ServerJournal."""

        def read_logs(self, log_number_from: int) -> list[dict[str, Any]]:
            logs = list(remote.read_logs(log_number_from))
            if getattr(in_turn, "counting", False):  # the journal's length its trials reflect
                in_turn.seen = log_number_from + len(logs)
            return logs

        def append_logs(self, logs: list[dict[str, Any]]) -> None:
            expect = getattr(in_turn, "expect", None)
            if expect is not None and any(log["op_code"] == CREATE_TRIAL for log in logs):
                # a new trial only if nobody appended since its asker counted the trials
                if not remote.append_logs(logs, expect=expect):
                    raise _JournalMoved()
                return
            remote.append_logs(logs)

    with quiet_warnings():
        storage = JournalStorage(ServerBackend())
    _IN_TURN[storage] = in_turn
    return storage


class _JournalMoved(Exception):
    """Another writer appended to a server journal after the asker last read it."""


MAX_TURNS = 100  # reads and tries of one ask_in_turn while other writers keep appending
CREATE_TRIAL = 4  # Optuna's JournalOperation.CREATE_TRIAL (a journal's format, kept stable)
# a server-kept storage, and each study opened on it -> the flag of its asking thread
_IN_TURN: weakref.WeakKeyDictionary[Any, threading.local] = weakref.WeakKeyDictionary()


def ask_in_turn(
    study: optuna.Study,
    distributions: dict[str, BaseDistribution],
    room: Callable[[list[FrozenTrial]], bool],
) -> Trial | None:
    """`study.ask(distributions)`. For a study kept on a team server, which other machines may
    drive at once: only while `room(its trials)` says so (None when not), and a new trial is
    created only if nobody wrote to its journal since those trials were read (the server's lock
    decides; else they are read again). So drivers together never create more than it needs."""
    in_turn = _IN_TURN.get(study)
    if in_turn is None:
        return study.ask(distributions)
    for _ in range(MAX_TURNS):
        in_turn.counting = True
        try:
            trials = study.get_trials(deepcopy=False)
        finally:
            in_turn.counting = False
        if not room(trials):
            return None
        in_turn.expect = in_turn.seen
        try:
            return study.ask(distributions)
        except _JournalMoved:
            continue
        finally:
            in_turn.expect = None
    raise MllibError(
        f"Could not add a trial to study {study.study_name}: its journal kept changing",
        hint="Fewer machines driving it at once, or try again.",
    )


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


def open_study(ws: Workspace, study: StudyRecord, *, create: bool) -> optuna.Study:
    """The Optuna study behind `study` (created when `create`), with its sampler and pruner
    (seeded with the study's seed; a resumed one is given another with `reseed`)."""
    import_optuna()
    import optuna

    settings = study.settings
    seed = settings.get("seed")
    with quiet_warnings():
        storage = study_storage(ws, study)
        chosen = sampler(settings["sampler"], seed, settings["parallel"])
        if create:
            made = optuna.create_study(
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
        else:
            made = optuna.load_study(
                study_name=study.name,
                storage=storage,
                sampler=chosen,
                pruner=pruner(settings["pruner"]),
            )
    if storage in _IN_TURN:
        _IN_TURN[made] = _IN_TURN[storage]
    return made


def reseed(optuna_study: optuna.Study, study: StudyRecord, offset: int) -> None:
    """Give `optuna_study` a sampler seeded with the study's seed plus `offset`. A sampler's
    state is not stored, so a resumed study must not start over from the seed: it would draw
    the same points again (mllib.tuning.api says which offset a drive gets)."""
    seed = study.settings.get("seed")
    if seed is not None:
        settings = study.settings
        optuna_study.sampler = sampler(settings["sampler"], seed + offset, settings["parallel"])


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
