"""Datasets: files, folders and URLs uploaded once into a chunked, content-addressed store,
versioned in the registry, and handed read-only to runs.

What notebooks and scripts call: upload, list_datasets, show, remove, pending (the `mllib data`
commands).
What runtimes and agents use: materialize, sync_version (see mllib.datasets.transfer).
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
