"""Several machines driving one study kept on a team server at once (`mllib tune resume STUDY`
on each): the server's journal is the one order they all see, and its lock arbitrates.

- **Room for a trial.** A driver asks for a new trial only while the study's trials (complete,
  pruned, failed for good, running, waiting to be retried) are fewer than its target, counted
  from the journal as it read it; the trial is created only if nobody appended to the journal
  since (mllib.tuning.storage.ask_in_turn: an append the server makes only at that length),
  else it counts again. So drivers together create the study's trials, never more; a trial
  waiting to be retried goes to one of them (Optuna's journal settles who took it first).
- **Whose trial.** Each driver names itself on the trials it runs (`driver`), and beats: a study
  attribute `mllib.driver.ID` it counts up every BEAT_S while it drives, and sets to "ended"
  when it stops. A driver that resumes the study leaves alone the running trials of drivers
  whose beat moved while it watched (their own driver tells Optuna how they end), and settles or
  follows the others as before (their driver died).
- **Which driver.** A driver's number is its place among the drivers of the study in the order
  the server's journal holds their first beats (0: the first ever): the server hands them out
  in turn. Its sampler is seeded with the study's seed plus that number, so the same sequence of
  drivers draws the same points, and no two drivers draw the same ones.
- **When the study is finished.** A driver that runs out of trials to start marks the study
  finished only when its trial budget is reached with none of its trials running or waiting to
  be retried, or when no other driver drives it; otherwise the drivers still at it do, when
  they end. A driver stopped (Ctrl-C, an error) while others drive leaves the study to them.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mllib.tuning.storage import import_optuna, quiet_warnings

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

DRIVER_ATTR = "driver"  # on a trial: the id of the driver that runs it
BEAT_ATTR = "mllib.driver."  # + a driver's id, on the study: its beat (a count, or "ended")
BEAT_S = 2.0
ENDED = "ended"


class Presence:
    """This driver on a server-kept study: its id, its beat on a thread while it drives."""

    def __init__(self, optuna_study: optuna.Study) -> None:
        self.study = optuna_study
        self.id = uuid.uuid4().hex[:12]
        self.number = 0  # this driver's place in the order drivers joined (set on entering)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Presence:
        self._beat(0)
        self.number = _driver_ids(self.study).index(self.id)
        self._thread = threading.Thread(target=self._run, name="tune-beat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=BEAT_S * 2)
        try:
            self._beat(ENDED)
        except Exception:  # the server is down: the beat stops moving, which says as much
            pass

    def others_driving(self) -> bool:
        """Whether another driver of the study has not ended (a dead one's beat stays, so it
        counts until the study is resumed: the trial it left is not settled either)."""
        return bool(set(_beats(self.study)) - {self.id})

    def claim(self, trial: optuna.Trial) -> None:
        """Name this driver on `trial`, which it runs."""
        with quiet_warnings():
            trial.set_user_attr(DRIVER_ATTR, self.id)

    def _run(self) -> None:
        count = 0
        while not self._stop.wait(BEAT_S):
            count += 1
            try:
                self._beat(count)
            except Exception:  # a moment without the server: the next beat tries again
                continue

    def _beat(self, value: int | str) -> None:
        with quiet_warnings():
            self.study.set_user_attr(BEAT_ATTR + self.id, value)


def live_drivers(optuna_study: optuna.Study, *, me: str, watch_s: float = BEAT_S * 2.5) -> set[str]:
    """The ids of the drivers other than `me` whose beat moves: watched for `watch_s` when any
    has not ended."""
    before = {name: beat for name, beat in _beats(optuna_study).items() if name != me}
    if not before:
        return set()
    time.sleep(watch_s)
    after = _beats(optuna_study)
    return {name for name, beat in after.items() if before.get(name) != beat}


def has_room(target: int) -> Callable[[list[FrozenTrial]], bool]:
    """Whether a study of `target` trials may run one more, from its trials as read: a trial
    waiting to be retried (already counted), or fewer trials counted than its target."""
    states = import_optuna().trial.TrialState

    def room(trials: list[FrozenTrial]) -> bool:
        if any(t.state == states.WAITING for t in trials):
            return True
        return sum(1 for t in trials if counts(t)) < target

    return room


def ends_study(optuna_study: optuna.Study, target: int, me: Presence) -> bool:
    """Whether driver `me`, which ran out of trials to start and has stopped beating, finishes
    the study: no other driver drives it, or `target` trials were counted and none of them runs
    or waits to be retried. (Each driver stops beating before it asks, so of two ending at once
    the later sees the earlier gone.)"""
    if not me.others_driving():
        return True
    states = import_optuna().trial.TrialState
    trials = optuna_study.get_trials(deepcopy=False)
    if any(t.state in (states.RUNNING, states.WAITING) for t in trials):
        return False
    return sum(1 for t in trials if counts(t)) >= target


def counts(frozen: FrozenTrial) -> bool:
    """Whether a trial counts toward the study's target (a failed one tried again does not)."""
    states = import_optuna().trial.TrialState
    if frozen.state == states.FAIL:
        return not bool(frozen.user_attrs.get("retried"))
    return True


def _driver_ids(optuna_study: optuna.Study) -> list[str]:
    """Every driver's id, in the order of their first beats in the journal (Optuna replays a
    study's attributes in journal order, and a dict keeps the order its keys came in)."""
    with quiet_warnings():
        attrs = optuna_study.user_attrs
    return [key[len(BEAT_ATTR) :] for key in attrs if key.startswith(BEAT_ATTR)]


def _beats(optuna_study: optuna.Study) -> dict[str, Any]:
    with quiet_warnings():
        attrs = optuna_study.user_attrs
    return {
        key[len(BEAT_ATTR) :]: value
        for key, value in attrs.items()
        if key.startswith(BEAT_ATTR) and value != ENDED
    }
