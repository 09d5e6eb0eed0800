"""The `[ray]` table of mllib.toml: which cluster runs go to, and what each run asks of it.

>>> RaySettings().address
'http://127.0.0.1:8265'
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from mllib.config import Config, read_table
from mllib.errors import ConfigError

DEFAULT_ADDRESS = "http://127.0.0.1:8265"


@dataclass(frozen=True)
class RaySettings:
    """[ray]: the cluster's Jobs API address and how runs use it."""

    address: str = ""  # the head's dashboard URL; empty: $RAY_ADDRESS, else DEFAULT_ADDRESS
    auth: str = "token"  # token (Ray 2.60's default) or disabled; $RAY_AUTH_MODE wins
    python: str = ""  # the workers' interpreter on the nodes; empty: this one (a shared install)
    num_gpus: float = 0.0  # entrypoint_num_gpus of each run's job
    lost_after_s: float = 30.0  # a head unreachable this long has lost the run (a system error)

    @classmethod
    def from_config(cls, config: Config) -> RaySettings:
        settings = read_table(cls, config, "ray", non_negative=True)
        if settings.auth not in ("token", "disabled"):
            raise ConfigError(
                f"{config.where}: [ray] auth must be token or disabled, got {settings.auth!r}"
            )
        return settings

    @property
    def cluster(self) -> str:
        """The address runs are submitted to."""
        return self.address or os.environ.get("RAY_ADDRESS", "") or DEFAULT_ADDRESS
