"""Errors of dataset uploads and downloads, each mapped to the CLI exit code it deserves."""

from __future__ import annotations

from mllib.errors import MllibError, UsageError


class DatasetTooLargeError(UsageError):
    """The upload exceeds `[data] max_size_gb`; nothing of it is kept."""


class SourceError(MllibError):
    """A URL cannot be downloaded: a 4xx answer, a bad URL, or retries exhausted (`resumable`)."""

    def __init__(self, message: str, *, hint: str | None = None, resumable: bool = False) -> None:
        super().__init__(message, hint=hint)
        self.resumable = resumable


class DatasetChangedError(MllibError):
    """A file changed while it was read, or a stored chunk no longer matches its hash."""


class ChunksMissingError(DatasetChangedError):
    """A version's chunks are not all stored when it is recorded (lost, or never sent):
    `missing` names them, and an upload sends them again once by itself."""

    def __init__(self, message: str, missing: list[str], *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.missing = missing


class DatasetInUseError(UsageError):
    """A dataset version cannot be removed while a run that uses it is active."""


def too_large(what: str, size: int | None, limit: int) -> DatasetTooLargeError:
    from mllib.datasets.format import human_bytes

    shown = f" ({human_bytes(size)})" if size is not None else ""
    return DatasetTooLargeError(
        f"{what}{shown} is larger than the dataset size limit of {limit / 1e9:g} GB",
        hint="Raise `max_size_gb` under [data] in mllib.toml if this is intended.",
    )
