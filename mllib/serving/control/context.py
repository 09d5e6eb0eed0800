"""The context every deployment command passes along: who deploys, in which workspace, under
which settings and clock (one object, so no function takes them one by one)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mllib.serving import audit
from mllib.serving.clock import Clock, SystemClock
from mllib.serving.control.settings import Settings
from mllib.workspace import Workspace

Progress = Callable[[str], None]


@dataclass
class DeployContext:
    """Who deploys what where, under which rules and clock (one object, passed everywhere)."""

    ws: Workspace
    settings: Settings
    clock: Clock
    user: str

    @classmethod
    def create(
        cls,
        ws: Workspace | None = None,
        *,
        clock: Clock | None = None,
        user: str | None = None,
        read_only: bool = False,
    ) -> DeployContext:
        from mllib.identity import current_user

        ws = ws or Workspace.find(read_only=read_only)
        return cls(
            ws,
            Settings.from_config(ws.project.config),
            clock or SystemClock(),
            user or current_user(),
        )

    def audit(self, **fields) -> None:
        audit.record(self.ws.registry, self.clock, user=self.user, **fields)
