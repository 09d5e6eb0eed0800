"""Workspace: the one context object commands pass around (project, registry, store), opened lazily."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from mllib.project import Project

if TYPE_CHECKING:
    from mllib.registry import Registry
    from mllib.store import LocalBlobStore


@dataclass
class Workspace:
    """A project with its registry and store; the registry opens on first use."""

    project: Project
    _closed: bool = field(default=False, repr=False)

    @classmethod
    def find(cls, start: Path | str | None = None) -> Workspace:
        return cls(Project.find(start))

    @cached_property
    def registry(self) -> Registry:
        from mllib.registry import Registry

        self.project.secure_state()
        settings = self.project.config.registry
        return Registry.open(self.project.registry_path, busy_timeout_s=settings.busy_timeout_s)

    @cached_property
    def store(self) -> LocalBlobStore:
        from mllib.store import LocalBlobStore

        self.project.secure_state()
        return LocalBlobStore(self.project.store_path)

    def run_dir(self, run_id: str) -> Path:
        return self.project.runs_dir / run_id
