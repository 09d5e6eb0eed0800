"""The parts mllib loads by name: the one table that names modules of several packages.

No package imports a higher one (the README's Architecture section; tests/test_architecture.py
checks it), yet the registry migrates every feature's tables and a run's backend may live above
mllib.runs. They find those parts here, by "module:attribute", and import them only when they
are used (as metaflow's plugins/__init__.py does): nothing heavy is imported before it is chosen,
and a feature's tables or a new place to run work is one line here. This module imports nothing
of mllib.

>>> load(BACKENDS["local"]).name
'local'
"""

from __future__ import annotations

import importlib
from typing import Any

# Each feature's migration set ("module:function" returning a sqlite_utils.Migrations), applied
# in this order whenever a registry is opened.
MIGRATIONS: tuple[str, ...] = (
    "mllib.registry.schema:migrations",  # runs, params, metrics, evaluations, models, aliases
    "mllib.agents.schema:migrations",  # attempts, sync cursors, pins
    "mllib.datasets.schema:migrations",  # datasets, run_datasets
    "mllib.serving.schema:migrations",  # deployments, audit log, keys, load tests, rules' state
    "mllib.registry.changes:migrations",  # the runs' change feed (live views poll deltas)
    "mllib.tuning.schema:migrations",  # studies, and the run of each trial
    "mllib.schedules.schema:migrations",  # scheduled evaluations and their runs
)

# A team server's database adds these sets (`mllib server init`, `mllib server start`).
SERVER_MIGRATIONS: tuple[str, ...] = (
    "mllib.queue.schema:migrations",  # jobs
    "mllib.server.accounts:migrations",  # users, tokens
    "mllib.server.schedules:migrations",  # scheduled evaluations the server runs
    "mllib.server.deployments:migrations",  # what clients deployed, which NAME@prod follows
    "mllib.server.studies:migrations",  # tuning studies' Optuna journals
)

# A tuning study's Optuna journal on a team server (mllib.tuning.storage reads it through this).
STUDY_JOURNAL = "mllib.client.studies:ServerJournal"
SERVER_STUDIES = "mllib.client.studies:list_server_studies"

# Run backends (subclasses of mllib.runs.backend.Backend) by name.
BACKENDS: dict[str, str] = {
    "local": "mllib.runs.local:LocalBackend",
    "agents": "mllib.agents.backend:AgentsBackend",
    "cluster": "mllib.runs.cluster:ClusterBackend",
    "server": "mllib.client.backend:ServerBackend",
}

REMOTE_RUNTIME = "ssh"  # the `runtime` recorded for a run that executes on an agent host
SERVER_RUNTIME = "server"  # ... and for a run queued on a team server (its agents run it)
# The backend of runs recorded with each runtime; runs of any other runtime have "local".
RUNTIME_BACKENDS: dict[str, str] = {
    REMOTE_RUNTIME: "agents",
    "ray": "cluster",
    SERVER_RUNTIME: "server",
}


def load(ref: str) -> Any:
    """Import "module:attribute" and return the attribute."""
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)
