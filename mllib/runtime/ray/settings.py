"""The `[ray]` table of mllib.toml: which cluster runs go to, and what each run asks of it.

>>> RaySettings().address
'http://127.0.0.1:8265'
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from mllib.config import Config, read_table
from mllib.errors import ConfigError

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
FILES = ("auto", "ship", "shared")


@dataclass(frozen=True)
class RaySettings:
    """[ray]: the cluster's Jobs API address and how runs use it."""

    address: str = ""  # the head's dashboard URL; empty: $RAY_ADDRESS, else DEFAULT_ADDRESS
    auth: str = "token"  # token (Ray 2.60's default) or disabled; $RAY_AUTH_MODE wins
    python: str = ""  # the workers' interpreter on the nodes; empty: this one (a shared install)
    num_gpus: float = 0.0  # entrypoint_num_gpus of each run's job
    lost_after_s: float = 30.0  # a head unreachable this long has lost the run (a system error)
    # How the job reaches the run's code, inputs and datasets: "ship" (in the job's runtime_env,
    # outputs back through its log), "shared" (the same paths on the nodes: a head here, NFS),
    # "auto": shared for a head on this machine's loopback, else ship.
    files: str = "auto"
    # At most this many of mllib's jobs PENDING on the cluster at once (0: no limit): a run
    # beyond it stays queued here, in mllib's order, and is submitted once fewer are.
    max_pending: int = 0
    # The most a shipped run's model, artifacts and prediction may weigh (compressed, in MB):
    # they come back through the job's log, which the head keeps whole. A run
    # with more fails as a user error naming this key.
    max_output_mb: float = 256.0

    @classmethod
    def from_config(cls, config: Config) -> RaySettings:
        settings = read_table(cls, config, "ray", non_negative=True)
        if settings.auth not in ("token", "disabled"):
            raise ConfigError(
                f"{config.where}: [ray] auth must be token or disabled, got {settings.auth!r}"
            )
        if settings.files not in FILES:
            raise ConfigError(
                f"{config.where}: [ray] files must be one of {', '.join(FILES)}, "
                f"got {settings.files!r}"
            )
        return settings

    @property
    def max_output_bytes(self) -> int:
        return int(self.max_output_mb * 1e6)

    @property
    def cluster(self) -> str:
        """The address runs are submitted to."""
        return self.address or os.environ.get("RAY_ADDRESS", "") or DEFAULT_ADDRESS

    @property
    def ships(self) -> bool:
        """Whether runs ship their files to the job (see `files`)."""
        if self.files != "auto":
            return self.files == "ship"
        host = urlsplit(self.cluster if "://" in self.cluster else f"http://{self.cluster}")
        try:
            return not ipaddress.ip_address(host.hostname or "").is_loopback
        except ValueError:
            return host.hostname != "localhost"
