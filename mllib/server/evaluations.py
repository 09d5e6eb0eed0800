"""What a model name means on the team server, and the evaluation of that version a schedule
queues (`mllib evaluate --model NAME@ALIAS --every 1d` with a team server).

The server's model versions are those its agents' runs made (mllib.agents.sync). `NAME` is the
newest version, `NAME:VERSION` that one, `NAME@ALIAS` the version the alias names on the server
when asked; `NAME@prod` and `NAME@staging` the version deployed there (mllib.server.deployments:
found by identity, never by number; nothing after `mllib deploy stop`) or the alias of that name,
whichever was set last. A schedule resolves its name again at each of
its runs, so a new version, a deploy or a moved alias is what the next run evaluates. The evaluation runs the version's own code with its
params and seed on its saved model, as `mllib evaluate --model` does on a client.

>>> resolve(reg, "iris@prod").version  # doctest: +SKIP
3
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mllib.datasets.catalog import get_version, run_links
from mllib.datasets.refs import DatasetRef, parse_binding
from mllib.errors import NotFoundError
from mllib.protocol.folder import RunFolder
from mllib.registry import models
from mllib.registry.models import ModelVersion
from mllib.registry.runs import get_run
from mllib.runs.model_choice import LATEST, parse_ref
from mllib.server import deployments
from mllib.serving.control.settings import ENVS

if TYPE_CHECKING:
    from mllib.registry import Registry
    from mllib.server.submit import Submission


@dataclass(frozen=True)
class Target:
    """The version a name means on the server now, and the deployment serving it when the name
    followed one (`NAME@prod` after a `mllib deploy`)."""

    version: ModelVersion
    deployment: dict[str, Any] | None = None


def resolve(reg: Registry, ref: str) -> ModelVersion:
    """The version `ref` (NAME, NAME:VERSION, NAME@ALIAS) names on the server now."""
    return target(reg, ref).version


def target(reg: Registry, ref: str) -> Target:
    """What `ref` (NAME, NAME:VERSION, NAME@ALIAS) names on the server now (see the module)."""
    parsed = parse_ref(ref)
    if not models.versions(reg, parsed.name):
        raise NotFoundError(
            f"No model {parsed.name!r} on the team server",
            hint="Its versions are made by runs the server ran: "
            "`mllib train model.py --remote` makes one.",
        )
    number: int | None = parsed.version
    if parsed.alias and parsed.alias != LATEST:
        deployed = _deployed(reg, parsed.name, parsed.alias)
        if deployed is not None:
            return deployed
        number = models.alias_version(reg, parsed.name, parsed.alias)
        if number is None:
            raise NotFoundError(
                f"Model {parsed.name!r} has no alias {parsed.alias!r} on the team server",
                hint=f"Name a version ({parsed.name}:VERSION) or the newest ({parsed.name}); "
                f"`mllib deploy {parsed.name}:VERSION --env ENV` records what staging or prod "
                "serves there.",
            )
    found = (
        models.newest_version(reg, parsed.name)
        if number is None
        else models.get_version(reg, parsed.name, number)
    )
    if found is None:
        raise NotFoundError(
            f"No version {number} of model {parsed.name!r} on the team server",
            hint=f"Its newest: {parsed.name}; `mllib models list` shows the versions.",
        )
    return Target(found)


def _deployed(reg: Registry, name: str, env: str) -> Target | None:
    """The version deployed in `env` (prod, staging), unless the alias of that name was set
    after that deploy; None when the alias decides."""
    if env not in ENVS:
        return None
    row = deployments.latest(reg, name, env)
    set_at = models.alias_set_at(reg, name, env)
    if row is None or (set_at is not None and set_at > row["deployed_at"]):
        return None
    if row["action"] == deployments.STOP:
        raise NotFoundError(
            f"{name}@{env}: nothing is deployed there (stopped by {row['user']} at "
            f"{row['deployed_at'][:19]}Z)",
            hint=f"Deploy a version (`mllib deploy {name}:VERSION --env {env}`), or point the "
            f"alias at one: mllib models alias {name}:VERSION {env}.",
        )
    version = deployments.served(reg, row)
    if version is None:
        raise NotFoundError(
            f"{name}@{env} serves a version the team server does not hold ({row['user']}'s "
            f"v{row['version']}, run {row['run_id']}): it cannot evaluate it",
            hint=f"Deploy one of the server's versions (`mllib deploy {name}:VERSION --env {env}` "
            f"names them), or point the alias at one: mllib models alias {name}:VERSION {env}.",
        )
    return Target(version, deployments.public(row))


def evaluation(
    reg: Registry, version: ModelVersion, data: list[str], body: dict[str, Any]
) -> Submission:
    """The evaluation of `version` on the newest version of each dataset in `data` (KEY=NAME;
    KEY=NAME@VERSION keeps that one), or without `data` of each its training read; `body` gives
    the run's id and idempotency key."""
    from mllib.server.submit import rerun_of

    trained = get_run(reg, version.run_id)
    sub = rerun_of(reg, trained, body)
    sub.action = "evaluate"
    sub.spec |= {
        "actions": ["evaluate"],
        "cli_params": {},
        "config_params": {},
        "input_model": RunFolder.INPUT_MODEL,
    }
    sub.secret_params = {}  # a version's secret params are not kept: the schedule gives its own
    sub.source_run_id, sub.rerun_of = trained.id, None
    bindings = [parse_binding(b) for b in data] or [
        (link["env"], DatasetRef(link["name"])) for link in run_links(reg, trained.id)
    ]
    sub.datasets = [
        {"env": env, "name": ref.name, "version": get_version(reg, ref).version}
        for env, ref in bindings
    ]
    return sub


def evaluated_version(reg: Registry, run_id: str) -> ModelVersion | None:
    """The model version evaluation run `run_id` evaluated (its source run's), if any."""
    rows = reg.query("SELECT source_run_id FROM runs WHERE id = ?", (run_id,))
    source = rows[0]["source_run_id"] if rows else None
    return models.version_of_run(reg, source) if source else None


def data_of(schedule: dict[str, Any]) -> list[str]:
    """A schedule's `--data` as given."""
    return list(json.loads(schedule.get("data") or "[]"))
