"""The team server's chores that no request asks for: freeing the dataset chunks that only
abandoned uploads kept (a laptop gone mid-upload, a server killed during one), at start and
every SWEEP_S, so a server's disk does not wait for someone's `mllib data rm` to get them back.

Each sweep first reads the leases' headers alone (mllib.datasets.leases): a store with no
expired lease is not scanned.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mllib.server.periodic import Periodic, log

if TYPE_CHECKING:
    from mllib.server.context import ServerContext

SWEEP_S = 600.0  # how often a running server looks for expired upload leases


class Housekeeping(Periodic):
    """The thread of `mllib server start` that sweeps every SWEEP_S (the first at once)."""

    name, every_s = "housekeeping", SWEEP_S

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        super().__init__()

    def step(self) -> None:
        sweep(self.ctx)


def sweep(ctx: ServerContext) -> None:
    """One pass: free what abandoned uploads alone kept, saying so on the server's log."""
    from mllib.datasets.format import human_bytes
    from mllib.datasets.settings import cache_dir
    from mllib.server.datasets import collect_abandoned

    project = ctx.project
    with ctx.registry() as reg:
        freed = collect_abandoned(reg, ctx.datasets, cache_dir(project.config, project.state_dir))
    if freed is not None and freed.chunks:
        log(f"freed {freed.chunks} chunk(s), {human_bytes(freed.bytes)}, of abandoned uploads")
