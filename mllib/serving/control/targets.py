"""The deployments Prometheus scrapes: a file in Prometheus' file-based service discovery format
(`file_sd_configs`) that mllib rewrites from the registry whenever a deployment changes state
(records.insert and records.update), so Prometheus finds each server as it starts and forgets it
once stopped, with no restart and no reload.

One target group per live deployment: its host:port, labelled with its env, model, version and
deployment id (`up` and the target's own series carry them; the servers' metrics carry env,
model and version themselves). The file is written whole and renamed into place, so Prometheus
never reads half of it; a write that fails is redone by the next change (or `mllib monitoring
init`), since each write is the registry's whole state.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mllib.registry.db import Registry

TARGETS_DIR = "targets"  # beside the registry: .mllib/serving/targets/
TARGETS_FILE = "deployments.json"


def targets_file(reg: Registry) -> Path:
    """Where the deployments' targets are written, for the registry at `reg.path`."""
    return reg.path.parent / "serving" / TARGETS_DIR / TARGETS_FILE


def target_groups(reg: Registry) -> list[dict[str, Any]]:
    """A file_sd target group for each live deployment, oldest first."""
    rows = reg.query(
        "SELECT id, env, model, version, url FROM deployments"
        " WHERE state = 'live' AND url IS NOT NULL ORDER BY created_at"
    )
    groups = []
    for row in rows:
        address = urlsplit(row["url"]).netloc
        labels = {"env": row["env"], "model": row["model"], "deployment": row["id"]}
        if row["version"] is not None:
            labels["version"] = str(row["version"])
        groups.append({"targets": [address], "labels": labels})
    return groups


def refresh(reg: Registry) -> Path:
    """Rewrite the targets file from the registry; returns its path."""
    path = targets_file(reg)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(target_groups(reg), indent=2) + "\n")
    os.replace(tmp, path)
    return path
