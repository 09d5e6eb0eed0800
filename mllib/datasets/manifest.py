"""A dataset version's manifest: its files, each a list of fixed-size sha256 chunks.

The manifest is canonical JSON stored as a blob; its sha256 names the version, so the same files
with the same contents give the same version digest wherever they are uploaded. Reading a
manifest checks every path (relative, no `..`, no file inside a file) before anything trusts it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import PurePosixPath

from mllib.errors import MllibError

CHUNK_SIZE = 8 * 1024 * 1024  # 8 MiB: few enough chunks for a 10 GB file, small enough to resend
FORMAT = 1
FILE, FOLDER = "file", "folder"


class ManifestError(MllibError):
    """A manifest is malformed or names a path outside its dataset."""


@dataclass(frozen=True)
class FileEntry:
    path: str  # POSIX, relative to the dataset's root
    size: int
    sha256: str  # of the whole file, as `sha256sum` prints it
    chunks: tuple[str, ...]  # sha256 of each CHUNK_SIZE piece, in order
    executable: bool = False

    def as_dict(self) -> dict:
        return {
            "path": self.path,
            "size": self.size,
            "sha256": self.sha256,
            "chunks": list(self.chunks),
            "executable": self.executable,
        }


@dataclass(frozen=True)
class Manifest:
    kind: str  # FILE (one file: runs get the file's path) or FOLDER (runs get the folder's path)
    files: tuple[FileEntry, ...]
    chunk_size: int = CHUNK_SIZE

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @cached_property
    def chunk_digests(self) -> list[str]:
        """Every chunk once, in first-use order."""
        return list(dict.fromkeys(c for f in self.files for c in f.chunks))

    def to_bytes(self) -> bytes:
        data = {
            "format": FORMAT,
            "kind": self.kind,
            "chunk_size": self.chunk_size,
            "files": [f.as_dict() for f in sorted(self.files, key=lambda f: f.path)],
        }
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Manifest:
        """Parse and check a stored manifest; a ManifestError says what is wrong."""
        try:
            data = json.loads(raw)
            kind, chunk_size = data["kind"], int(data["chunk_size"])
            files = tuple(
                FileEntry(
                    f["path"],
                    int(f["size"]),
                    f["sha256"],
                    tuple(f["chunks"]),
                    bool(f.get("executable")),
                )
                for f in data["files"]
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ManifestError(f"Malformed dataset manifest: {exc}") from None
        manifest = cls(kind, files, chunk_size)
        manifest.check()
        return manifest

    def check(self) -> None:
        """Paths safe and unique, chunk counts matching sizes, the kind consistent."""
        if self.kind not in (FILE, FOLDER) or (self.kind == FILE and len(self.files) != 1):
            raise ManifestError(f"Malformed dataset manifest: kind {self.kind!r}")
        if self.chunk_size <= 0:
            raise ManifestError("Malformed dataset manifest: chunk size")
        seen: set[str] = set()
        for entry in self.files:
            safe_relative(entry.path)
            if entry.path in seen:
                raise ManifestError(f"Dataset manifest names {entry.path!r} twice")
            seen.add(entry.path)
            expected = -(-entry.size // self.chunk_size)
            if len(entry.chunks) != expected or not all(_is_hex(c) for c in entry.chunks):
                raise ManifestError(f"Dataset manifest: wrong chunk list for {entry.path!r}")
        folders = {p.as_posix() for e in self.files for p in PurePosixPath(e.path).parents}
        if folders & seen:
            raise ManifestError("Dataset manifest names a file that is also a folder")


def _is_hex(digest: str) -> bool:
    return len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)


def safe_relative(path: str) -> PurePosixPath:
    """A path that stays inside its dataset: relative, no `..` or `.`, no empty parts or backslashes."""
    pure = PurePosixPath(path)
    if (
        not path
        or pure.is_absolute()
        or path != pure.as_posix()
        or any(p in ("..", ".", "") for p in path.split("/"))
        or "\\" in path
        or "\0" in path
    ):
        raise ManifestError(
            f"Unsafe path {path!r} in a dataset",
            hint="Dataset paths are relative and never contain `..`.",
        )
    return pure
