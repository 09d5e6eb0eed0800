"""Datasets: files, folders and URLs uploaded once into a chunked, content-addressed store,
versioned in the registry, and handed read-only to runs.

What notebooks and scripts call: upload, list_datasets, show, remove, pending (the `mllib data`
commands).
What runs and agents use: mllib.datasets.binding (a run's versions, materialised) and
mllib.datasets.remote (a remote run's versions materialised on its agent; the agents package
sends the chunks, as this package never imports mllib.agents).
"""

from mllib.datasets.api import (
    RemoveResult,
    UploadResult,
    list_datasets,
    pending,
    remove,
    show,
    upload,
)

__all__ = ["RemoveResult", "UploadResult", "list_datasets", "pending", "remove", "show", "upload"]
