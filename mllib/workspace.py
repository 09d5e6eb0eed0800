"""Workspace: the one context object commands pass around (project, registry, store), opened lazily."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from mllib.project import Project
from mllib.protocol.folder import RunFolder

if TYPE_CHECKING:
    from mllib.registry import Registry
    from mllib.registry.runs import RunRecord
    from mllib.store import LocalBlobStore


@dataclass
class Workspace:
    """A project with its registry and store; the registry opens on first use."""

    project: Project
    read_only: bool = False  # a command that only reads: it creates no registry where none is
    _closed: bool = field(default=False, repr=False)

    @classmethod
    def find(cls, start: Path | str | None = None, *, read_only: bool = False) -> Workspace:
        return cls(Project.find(start), read_only=read_only)

    @property
    def recorded(self) -> bool:
        """Whether this project has a registry yet (something was ever recorded)."""
        path = self.project.registry_path
        return path.exists()

    @classmethod
    def using(cls, project: Project, registry: Registry) -> Workspace:
        """A workspace over a registry already open (a team server's database connection)."""
        ws = cls(project)
        ws.__dict__["registry"] = registry  # what the cached property below would have opened
        return ws

    @cached_property
    def registry(self) -> Registry:
        from mllib.registry import Registry

        if self.read_only and not self.recorded:
            from mllib.registry.health import check_file

            check_file(self.project.registry_path)  # run folders beside no registry: an error
            return Registry.empty()
        self.project.secure_state()
        settings = self.project.config.registry
        return Registry.open(self.project.registry_path, busy_timeout_s=settings.busy_timeout_s)

    @cached_property
    def store(self) -> LocalBlobStore:
        from mllib.store import LocalBlobStore

        self.project.secure_state()
        return LocalBlobStore(self.project.store_path)

    def run_dir(self, run_id: str) -> Path:
        """Where a new run's folder goes."""
        return self.project.runs_dir / run_id

    def run_folder(self, run: RunRecord) -> RunFolder:
        """A recorded run's folder: where it was recorded to be, else where a new one goes."""
        return RunFolder(Path(run.run_dir) if run.run_dir else self.run_dir(run.id))
