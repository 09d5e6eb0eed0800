"""What the control plane and a server process agree on: the ServerSpec a server is started with
(written as JSON into its folder, read by `python -m mllib.serving.server SPEC.json`), the model
it serves (a Servable, loaded from a bundle of `model/` and `code/`), and the status.json the
server keeps up to date for whoever started it. Light to import: no LitServe here.

The spec is the one object passed down: the control plane builds it once (and a deployment's
registry row from it); inside the server, the model API, the gateway and the LitServer all read
this same object rather than copies of its fields.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mllib.serving import logs

# Where predictions are made: in the HTTP processes themselves, or in LitServe worker processes.
INLINE, WORKER = "inline", "worker"
INFERENCE_MODES = (INLINE, WORKER)
SPEC_FILE = "server.json"
STATUS_FILE = "status.json"
MODEL_DIR = "model"  # a bundle's saved model, as the training run stored it
CODE_DIR = "code"  # a bundle's code snapshot, which the model file is imported from
MODEL, LITAPI = "model", "litapi"  # what a Servable is: a trained model, or a LitServe API


@dataclass(frozen=True)
class Servable:
    """A model version, with everything needed to load it again: a trained model (its saved
    model and code), or a LitServe API (its code: kind LITAPI)."""

    model: str
    version: int | None
    run_id: str
    model_sha256: str
    code_hash: str
    model_file: str  # relative to the code snapshot
    model_class: str
    kind: str = MODEL  # MODEL: a trained model's predict; LITAPI: a LitServe API as it is

    @property
    def artifact(self) -> str:
        """The identity of what is served: the same bytes of model and code are the same artifact."""
        return f"{self.model_sha256}:{self.code_hash}"

    @property
    def label(self) -> str:
        return (
            f"{self.model} v{self.version}" if self.version else f"{self.model} (run {self.run_id})"
        )

    @property
    def ref(self) -> str:
        """How to name it on the command line."""
        return f"{self.model}:{self.version}" if self.version else self.run_id

    @property
    def version_label(self) -> str:
        """The `version` label of metrics and logs: "3", or "run:abcd" for a run without one."""
        return str(self.version) if self.version else f"run:{self.run_id}"


@dataclass(frozen=True)
class KeyCheck:
    """With it, /predict needs an API key of the server's environment from this registry."""

    registry_path: str
    refresh_s: float = 1.0  # keys are re-read this often (a revoke lands within it)
    flag_interval_s: float = 300.0  # a key bursting past its limit is flagged at most this often


@dataclass(frozen=True)
class PythonEnv:
    """The Python a server runs with: mllib's own (MLLIB_ENV), or a venv of what the model's
    predict needs (VENV), chosen by mllib.serving.control.environment."""

    kind: str = "mllib"
    python: str = ""  # the interpreter ("": the one running mllib)
    key: str = ""  # the venv's key in the environment cache
    why: str = ""  # why this one
    variables: dict[str, str] = field(default_factory=dict)  # added to its processes' environment
    lock: str = ""  # the venv's lock file: held (shared) by the server so the venv stays

    def summary(self) -> dict[str, str]:
        """What `deploy status --json` shows of it."""
        python = self.python or sys.executable  # mllib's own: the one reading this
        return {"kind": self.kind, "key": self.key, "python": python, "why": self.why}


MLLIB_ENV, VENV = "mllib", "venv"  # PythonEnv kinds


@dataclass(frozen=True)
class ServerSpec:
    """Everything one server process needs: what it serves, where, with how many processes,
    under which limits."""

    servable: Servable
    bundle_dir: str  # holds model/ and code/ (control.servable.materialize writes it)
    env: str  # dev, staging or prod
    state_dir: str  # status.json and metrics/ live here
    deployment: str = "dev"  # the deployment id (logs, metrics, /info)
    host: str = "127.0.0.1"
    port: int = 8000
    inference: str = INLINE  # inline: the HTTP processes predict; worker: LitServe workers do
    workers: int = 1  # processes holding the model
    api_servers: int = 1  # HTTP processes (inline: = workers)
    max_batch: int = 1  # inline, requests a model's predict_batch() may answer at once
    timeout_s: float = 30.0  # a request waiting longer for its prediction gets 504
    max_body_bytes: int = 10_000_000
    drain_s: float = 5.0  # on stop, in-flight requests get this long to finish
    restart_workers: bool = True
    keys: KeyCheck | None = None  # set: /predict needs a key of this env
    log_format: str = logs.JSON
    reuse_port: bool = False  # may share the port with the deployment it replaces
    listen_when_ready: bool = False  # listen only once every worker has loaded the model
    show_errors: bool = True  # put predict()'s exception message in 500 replies (not on prod)
    # As a server of a deployment: which variant it serves; the link its processes answer
    # forwarded requests on (process i: link.process_address(link, i)); the deployment's
    # shared metrics folder, its routes and this server's counters (the controller's); and
    # how many processes it may grow to.
    variant: str = "stable"
    replica: str = ""  # its id in the deployment
    link: str = ""
    link_token: str = ""
    metrics_dir: str = ""  # shared with the deployment's other processes; "" = its own, afresh
    routes_path: str = ""
    counters_path: str = ""
    max_workers: int = 0  # 0: workers
    python_env: PythonEnv = field(default_factory=PythonEnv)

    @property
    def labels(self) -> dict[str, str]:
        """What every metric and log line of this server is labelled with."""
        return {
            "env": self.env,
            "model": self.servable.model,
            "version": self.servable.version_label,
            "variant": self.variant,
        }

    @property
    def inline(self) -> bool:
        return self.inference == INLINE

    @property
    def ceiling(self) -> int:
        """The most HTTP processes it may run (a deployment's controller may add some)."""
        return max(self.max_workers, self.workers)

    @property
    def url(self) -> str:
        return http_url(self.host, self.port)

    def write(self, path: Path) -> None:
        write_private(path, json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")

    @classmethod
    def read(cls, path: Path) -> ServerSpec:
        return cls.from_dict(json.loads(path.read_text()))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServerSpec:
        """The spec `dataclasses.asdict` gave (a spec written before a field existed gets its
        default)."""
        data = dict(data)
        keys = data.pop("keys")
        return cls(
            servable=Servable(**data.pop("servable")),
            keys=KeyCheck(**keys) if keys else None,
            python_env=PythonEnv(**data.pop("python_env", {})),
            **data,
        )


def http_url(host: str, port: int) -> str:
    """Where clients reach a server bound to `host` (a wildcard host is reached on loopback)."""
    host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` whole (temp file, renamed), readable by this user only: specs
    carry link tokens."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def http_processes(inference: str, workers: int, api_servers: int) -> int:
    """HTTP processes a server runs: inline, each of the `workers` is one; else `api_servers`."""
    return workers if inference == INLINE else api_servers


def write_status(state_dir: Path, state: str, **fields: Any) -> None:
    """status.json: starting, ready, failed or stopped (written whole, then renamed)."""
    tmp = state_dir / f".{STATUS_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps({"state": state, "pid": os.getpid(), "time": time.time(), **fields}))
    os.replace(tmp, state_dir / STATUS_FILE)


def read_status(state_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((state_dir / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return {}
