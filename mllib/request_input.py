"""A request body a user gives on the command line (`--input`): JSON text, `@FILE` or `-` for
standard input, read up to a cap (`[serve] max_body_mb`, what a server would accept), so
`--input @/dev/zero` is a clear error instead of reading until memory runs out."""

from __future__ import annotations

import sys
from typing import BinaryIO

from mllib.errors import UsageError

HINT = """For example: --input '{"x": 1}', --input @request.json, or --input - (standard input)"""


def read_request(text: str, *, max_bytes: int, option: str = "--input") -> tuple[bytes, str]:
    """The body `text` names and where it came from (`--input`, a file, `stdin`)."""
    if text == "-":
        return _capped(sys.stdin.buffer, "stdin", max_bytes), "stdin"
    if text.startswith("@"):
        path = text[1:]
        try:
            with open(path, "rb") as handle:
                return _capped(handle, path, max_bytes), path
        except OSError as exc:
            raise UsageError(
                f"Cannot read the request file {path}: {exc.strerror or exc}", hint=HINT
            ) from None
    data = text.encode()
    if len(data) > max_bytes:
        raise _too_large(option, max_bytes)
    return data, option


def _capped(handle: BinaryIO, source: str, max_bytes: int) -> bytes:
    data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise _too_large(source, max_bytes)
    return data


def _too_large(source: str, max_bytes: int) -> UsageError:
    return UsageError(
        f"The request from {source} is larger than {max_bytes / 1e6:g} MB, the most a server "
        "takes ([serve] max_body_mb)",
        hint="Send a smaller request, or raise [serve] max_body_mb in mllib.toml.",
    )
