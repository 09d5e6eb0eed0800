"""Aliases of model versions: `mllib models alias NAME:3 champion` points `NAME@champion` at
version 3 (moving it from the version it named before); `--rm` removes it.

>>> set_alias(ws, "iris:3", "champion")  # doctest: +SKIP
AliasChange(model='iris', alias='champion', version=3, before=2)
"""

from __future__ import annotations

from dataclasses import dataclass

from mllib.errors import UsageError
from mllib.identity import current_user
from mllib.registry import models
from mllib.runs.model_choice import LATEST, check_alias, choose_version, parse_ref, unknown_alias
from mllib.workspace import Workspace


@dataclass(frozen=True)
class AliasChange:
    """What an alias named before a change (`before`) and after it (`version`; None: removed)."""

    model: str
    alias: str
    version: int | None
    before: int | None


def set_alias(ws: Workspace, ref: str, alias: str, *, user: str | None = None) -> AliasChange:
    """Point `MODEL@alias` at the version `ref` names (MODEL:VERSION, MODEL@OTHER or MODEL, its
    newest); an alias names one version of a model at a time."""
    check_alias(alias)
    if alias == LATEST:
        raise UsageError(
            f"{LATEST!r} is not an alias one sets: NAME@{LATEST} always names the newest version"
        )
    chosen = choose_version(ws, ref)
    assert chosen.version is not None  # a name, not a run id: always a version
    before = models.set_alias(
        ws.registry, chosen.model, alias, chosen.version, user or current_user()
    )
    return AliasChange(chosen.model, alias, chosen.version, before)


def remove_alias(ws: Workspace, ref: str, alias: str | None = None) -> AliasChange:
    """Remove `MODEL@ALIAS` (given as `ref`, or as `ref` MODEL and `alias`)."""
    parsed = parse_ref(ref)
    if parsed.version is not None or (parsed.alias and alias):
        raise UsageError(
            f"Name the alias to remove as MODEL@ALIAS, not {ref!r}"
            + (f" {alias!r}" if alias else ""),
            hint="For example: mllib models alias --rm iris@champion",
        )
    if not (alias or parsed.alias):
        raise UsageError(
            f"Which alias of {parsed.name}? Name it as MODEL@ALIAS",
            hint=f"For example: mllib models alias --rm {parsed.name}@champion",
        )
    name, alias = parsed.name, check_alias(alias or parsed.alias or "")
    before = models.remove_alias(ws.registry, name, alias)
    if before is None:
        raise unknown_alias(ws, name, alias)
    return AliasChange(name, alias, None, before)
