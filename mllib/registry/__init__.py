"""The SQLite registry of runs, params, metrics, artifacts and model versions."""

from mllib.registry.db import Registry

__all__ = ["Registry"]
