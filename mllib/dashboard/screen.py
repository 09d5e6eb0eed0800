"""What the run and compare screens share: they read what they show through the app's one refresh
reader, in the background from a team server (saying "loading" meanwhile), so a slow server never
holds up a key."""

from __future__ import annotations

from typing import Any

from textual.screen import Screen

from mllib.dashboard.data import DashboardData


class LiveScreen(Screen):
    """A screen over some runs, read by the app's refresh (`read` off the UI thread for a team
    server, then `show` on it). Its first read, and one the user asks for (another metric), are
    due at the next refresh, which `ask` starts."""

    def __init__(self, data: DashboardData) -> None:
        super().__init__()
        self.data = data
        self.due = True  # read it all at the next refresh, changed or not

    def on_mount(self) -> None:
        self.ask()

    def ask(self) -> None:
        """Read again now: from a team server in the background, showing "loading" meanwhile."""
        self.due = True
        if self.data.runs.remote:
            self.show_loading()
        self.app.refresh_data()

    def take_due(self) -> bool:
        """Whether the next read is a full one (on the UI thread, as a refresh starts)."""
        due, self.due = self.due, False
        return due

    def read(self, records: set[str], metrics: set[str], due: bool) -> Any:
        """What changed of it (`records`: runs whose record changed; `metrics`: whose points);
        everything when `due`. None: nothing to draw."""
        raise NotImplementedError

    def show(self, fetched: Any) -> None:
        """Draw what `read` found."""
        raise NotImplementedError

    def show_loading(self) -> None:
        """Say that a read from the team server is under way."""
        raise NotImplementedError
