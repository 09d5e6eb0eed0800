"""Which trained model version a command uses: the model registry's vocabulary, one resolver for
`predict`, `evaluate`, `serve` and `deploy`.

    NAME             the newest version of model NAME
    NAME:3           its version 3 (`NAME:v3` too)
    NAME@champion    the version its alias `champion` names (`mllib models alias NAME:3 champion`);
                     `NAME@latest` is always the newest
    --best METRIC    the version whose latest evaluation has the best METRIC: the lowest for
                     loss-like names, else the highest (the rule `runs compare` marks with)
    --run RUN_ID     the version a training run made (deploy takes a run id in place of NAME)

With none of them, a command that reads a model.py uses the newest version of that model, or,
when params are given on the command line, the newest version trained with those params.

>>> chosen = choose(ws, ModelChoice(version="iris@champion"))  # doctest: +SKIP
>>> chosen.label, chosen.run.id  # doctest: +SKIP
('iris v3', 'k3x9a1b2c3d4')
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mllib.display import fmt_value
from mllib.errors import NotFoundError, UsageError
from mllib.metric_values import best_of, lower_is_better
from mllib.ranges import INT64_MAX, Range
from mllib.registry import models
from mllib.registry.evaluations import latest_evaluations
from mllib.registry.runs import RunRecord, get_run
from mllib.runs.target import ModelTarget, check_trained, given_run, newest_with_params
from mllib.terminal import Notify
from mllib.workspace import Workspace

VERSION = Range(1, INT64_MAX, integer=True)  # a model's version number

LATEST = "latest"  # NAME@latest: the newest version, an alias no one sets
ALIAS = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class ModelRef:
    """`NAME`, `NAME:VERSION` or `NAME@ALIAS`, parsed."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}:{self.version}"
        return f"{self.name}@{self.alias}" if self.alias else self.name


def parse_ref(text: str) -> ModelRef:
    """Read `NAME`, `NAME:VERSION` (or `NAME:vVERSION`) or `NAME@ALIAS`; a usage error otherwise."""
    example = "For example: iris, iris:3 or iris@champion."
    name, at, alias = text.strip().partition("@")
    if at:
        if not name or ":" in name:
            raise UsageError(f"{text!r} is not NAME@ALIAS", hint=example)
        return ModelRef(name, alias=check_alias(alias))
    name, colon, number = name.partition(":")
    if not name:
        raise UsageError(f"{text!r} names no model", hint=example)
    if not colon:
        return ModelRef(name)
    digits = number[1:] if number[:1] in ("v", "V") else number
    if not (digits.isascii() and digits.isdigit()):
        raise UsageError(f"{text!r}: the version after ':' must be a number from 1", hint=example)
    version = VERSION.check(int(digits), f"The version in {text!r}", hint=example)
    return ModelRef(name, version=int(version))


def check_alias(alias: str) -> str:
    """An alias is a word: a letter, then letters, digits, `_`, `.` or `-` (64 at most)."""
    if not ALIAS.fullmatch(alias):
        raise UsageError(
            f"{alias!r} is not an alias: start with a letter, then letters, digits, _ . or -",
            hint="For example: champion, staging-candidate, v2-baseline.",
        )
    return alias


@dataclass(frozen=True)
class ModelChoice:
    """How a command names the trained model it uses (its --model, --best and --run)."""

    version: str | None = None  # NAME, NAME:VERSION or NAME@ALIAS
    best: str | None = None  # a metric of the versions' evaluations
    run: str | None = None  # a training run's id

    @property
    def names_model(self) -> bool:
        """Whether it names the model itself, so no model.py is needed to find it."""
        return self.version is not None

    def check(self) -> None:
        if self.run and (self.version or self.best):
            raise UsageError(
                "--run names one training run: give --run, or --model/--best, not both"
            )
        if self.best is not None and not self.best.strip():
            raise UsageError("--best needs a metric name", hint="For example: --best accuracy")


@dataclass(frozen=True)
class Chosen:
    """The trained model version a command uses, and why (None: just as the user named it)."""

    run: RunRecord
    model: str
    version: int | None
    why: str | None = None

    @property
    def label(self) -> str:
        return (
            f"{self.model} v{self.version}" if self.version else f"{self.model} (run {self.run.id})"
        )

    def line(self) -> str:
        """The line telling a person which version a command uses, and why."""
        run = f" (run {self.run.id})" if self.version else ""
        return f"using {self.label}{run}: {self.why}" if self.why else f"using {self.label}{run}"


def choose(
    ws: Workspace,
    choice: ModelChoice,
    target: ModelTarget | None = None,
    cli_params: Mapping[str, Any] | None = None,
    *,
    env_target: str = "local",
    data_env: Mapping[str, str] | None = None,
    notify: Notify | None = None,
) -> Chosen:
    """The training run (and model version) `choice` names; without a name, the newest version of
    `target`'s model (trained with `cli_params`, when given: resolved for `env_target`, with the
    datasets' paths `data_env`). `notify` hears which, and why."""
    choice.check()
    params = dict(cli_params or {})
    if choice.names_model and target is not None:
        named = parse_ref(choice.version or "").name
        if named != target.name:
            raise UsageError(
                f"{target.info.ref} is the model {target.name!r}, but --model names {named!r}",
                hint="Give --model alone (no model.py is needed), or a version of that model.",
            )
    if choice.run:
        if target is None:
            raise UsageError("--run needs the model file, or use --model NAME[:VERSION]")
        chosen = _from_run(ws, given_run(target, choice.run, params), why=None)
    elif choice.version or choice.best:
        if params:
            raise params_refused(sorted(params))
        default = target.name if target is not None else None
        chosen = choose_version(ws, choice.version, best=choice.best, default_model=default)
    elif target is None:
        raise UsageError("Name the model: --model NAME[:VERSION], or give the model file")
    elif params:
        run = newest_with_params(target, params, env_target, data_env)
        chosen = _from_run(ws, run, why="the newest version trained with these params")
    else:
        chosen = _newest(ws, target)
    if notify is not None:
        notify(chosen.line())
    return chosen


def params_refused(given: list[str]) -> UsageError:
    """The error for params given with --model or --best: they cannot change a trained model."""
    return UsageError(
        f"Params given with --model or --best ({', '.join(given)}) cannot change a trained model",
        hint="Drop them to use the version as it was trained.",
    )


def choose_version(
    ws: Workspace,
    ref: str | None,
    *,
    best: str | None = None,
    default_model: str | None = None,
    run_ids: bool = False,
) -> Chosen:
    """The version `ref` names (NAME, NAME:VERSION, NAME@ALIAS; with `run_ids`, a training run's
    id too); with `best`, the best version of NAME (`ref`, else `default_model`) by that metric."""
    if best is not None:
        parsed = parse_ref(ref) if ref else None
        if parsed is not None and (parsed.version is not None or parsed.alias):
            raise UsageError(
                f"--best picks one of a model's versions: give the model's name, not {ref!r}",
                hint=f"For example: --model {parsed.name} --best {best}",
            )
        name = parsed.name if parsed is not None else default_model
        if name is None:
            raise UsageError("--best needs a model", hint=f"For example: NAME --best {best}")
        return _best(ws, name, best.strip())
    if ref is None:
        raise UsageError("Name a model version: NAME, NAME:VERSION or NAME@ALIAS")
    parsed = parse_ref(ref)
    if not models.versions(ws.registry, parsed.name):
        if run_ids and parsed.version is None and parsed.alias is None:
            try:  # deploy takes a run id where a model name goes
                return _from_run(ws, get_run(ws.registry, parsed.name), why=None)
            except NotFoundError:
                raise NotFoundError(
                    f"{ref!r} is neither a model name nor a run id in this registry",
                    hint=unknown_model(ws, ref).hint,
                ) from None
        raise unknown_model(ws, parsed.name)
    if parsed.version is not None:
        return _version(ws, parsed.name, parsed.version, why=None)
    if parsed.alias and parsed.alias != LATEST:
        return _alias(ws, parsed.name, parsed.alias)
    return _newest(ws, None, parsed.name)


def _from_run(ws: Workspace, run: RunRecord, *, why: str | None) -> Chosen:
    check_trained(run)
    version = models.version_of_run(ws.registry, run.id)
    return Chosen(run, run.model, version.version if version else None, why)


def _version(ws: Workspace, name: str, number: int, *, why: str | None) -> Chosen:
    row = models.get_version(ws.registry, name, number)
    if row is None:
        raise NotFoundError(f"No version {number} of model {name!r}", hint=_versions_hint(ws, name))
    return Chosen(get_run(ws.registry, row.run_id), name, number, why)


def _newest(ws: Workspace, target: ModelTarget | None, name: str | None = None) -> Chosen:
    name = name or (target.name if target is not None else "")
    row = models.newest_version(ws.registry, name)
    if row is None:
        train = f"mllib train {target.rel_file}" if target is not None else "mllib train model.py"
        raise NotFoundError(
            f"No successful training run of {name} yet: it has no model version",
            hint=f"Train one first: `{train}`; `mllib models list` shows the trained models.",
        )
    why = f"the newest version of {name}"
    if target is not None:  # chosen for a model file, not named: say how to name another
        why += f"; pick another with --model {name}:VERSION"
    return Chosen(get_run(ws.registry, row.run_id), name, row.version, why)


def _alias(ws: Workspace, name: str, alias: str) -> Chosen:
    number = models.alias_version(ws.registry, name, alias)
    if number is None:
        raise unknown_alias(ws, name, alias)
    if models.get_version(ws.registry, name, number) is None:
        raise NotFoundError(
            f"{name}@{alias} names version {number}, which is not in this registry",
            hint=f"Point it at a version that is: `mllib models alias {name}:VERSION {alias}`.",
        )
    return _version(ws, name, number, why=f"{name}@{alias}")


def unknown_alias(ws: Workspace, name: str, alias: str) -> NotFoundError:
    """The error for `NAME@ALIAS` when model `name` has no such alias, naming those it has."""
    known = models.aliases(ws.registry, name).get(name, {})
    hint = (
        "Its aliases: " + ", ".join(f"{a} (v{v})" for a, v in known.items()) + "."
        if known
        else f"It has none yet: `mllib models alias {name}:VERSION {alias}` sets one."
    )
    return NotFoundError(f"Model {name!r} has no alias {alias!r}", hint=hint)


def _best(ws: Workspace, name: str, metric: str) -> Chosen:
    """The version of `name` whose latest evaluation has the best `metric`."""
    rows = models.versions(ws.registry, name)
    if not rows:
        raise unknown_model(ws, name)
    evaluations = latest_evaluations(ws.registry, [r.run_id for r in rows])
    values = {
        r.version: evaluations[r.run_id].metrics.get(metric)
        for r in rows
        if r.run_id in evaluations
    }
    winner = best_of(values, metric)
    if winner is None:
        have = sorted({m for e in evaluations.values() for m in e.metrics})
        hint = (
            f"Their evaluations have: {', '.join(have)}."
            if have
            else f"None of its {len(rows)} version(s) is evaluated yet: "
            f"`mllib evaluate --model {name}:VERSION` evaluates one."
        )
        raise NotFoundError(
            f"No version of {name} has an evaluation with the metric {metric!r}", hint=hint
        )
    counted = sum(1 for v in values.values() if v is not None)
    rule = "lowest" if lower_is_better(metric) else "highest"
    why = (
        f"the best {metric} ({fmt_value(values[winner])}, {rule} wins) of {counted} evaluated "
        f"version{'s' if counted != 1 else ''} of {name}"
    )
    return _version(ws, name, winner, why=why)


def _versions_hint(ws: Workspace, name: str) -> str:
    numbers = sorted(r.version for r in models.versions(ws.registry, name))
    shown = ", ".join(str(n) for n in numbers[-10:])
    return f"Versions of {name}: {shown}{' (the newest 10)' if len(numbers) > 10 else ''}."


def unknown_model(ws: Workspace, name: str) -> NotFoundError:
    """The error for a model name with no version here, naming the models there are."""
    newest = models.newest_numbers(ws.registry)
    if not newest:
        hint = "Nothing is trained yet: `mllib train model.py` makes a model version."
    else:
        known = ", ".join(f"{n} (v1..v{v})" for n, v in newest.items())
        hint = f"Models here: {known}; `mllib models list` shows them."
    return NotFoundError(f"No model {name!r} in this registry", hint=hint)
