"""Which team server this user talks to, and the login token for it.

`mllib login URL` stores the URL and token in credentials.json (0600) in the user's config folder
(mllib.userdirs: ~/.config/mllib, or $MLLIB_HOME/config); the token is never printed. The server used is `MLLIB_SERVER`, else `[server] url` of
mllib.toml, else the one logged in to; none means runs stay local (the embedded default).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mllib.errors import ConfigError, UsageError

CREDENTIALS_FILE = "credentials.json"


def _file() -> Path:
    from mllib.userdirs import config_file

    return config_file(CREDENTIALS_FILE)


def _read() -> dict[str, Any]:
    path = _file()
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from None
    return data if isinstance(data, dict) else {}


def normalize(url: str) -> str:
    """`url` without a trailing slash; a usage error for anything but a printable http(s) URL
    (an escape sequence or a space in it was an httpx traceback)."""
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")) or not url.isprintable() or " " in url:
        raise UsageError(
            f"Not a server URL: {url!r}",
            hint="Give it as http(s)://HOST:PORT, e.g. http://server:8750.",
        )
    return url


def configured_server(config: Any = None) -> str | None:
    """The team server runs go to: MLLIB_SERVER, `[server] url`, else the one logged in to."""
    url = os.environ.get("MLLIB_SERVER")
    if not url and config is not None:
        url = config.get("server.url", None, str)
    if not url:
        url = _read().get("current")
    return normalize(str(url)) if url else None


def token_for(url: str) -> str | None:
    token = _read().get("tokens", {}).get(normalize(url))
    return str(token) if token else None


def save_login(url: str, token: str) -> None:
    """Remember `token` for `url` (and make it the server runs go to), in a 0600 file."""
    from mllib.filemodes import private_dir, write_private
    from mllib.locks import file_lock

    path = _file()
    private_dir(path.parent)
    with file_lock(path.with_suffix(".lock"), what="the team server logins"):
        data = _read()
        data.setdefault("tokens", {})[normalize(url)] = token
        data["current"] = normalize(url)
        write_private(path, json.dumps(data, indent=2) + "\n")


def forget_login(url: str) -> bool:
    """Drop the token for `url`; False when there was none."""
    from mllib.filemodes import write_private
    from mllib.locks import file_lock

    path = _file()
    if not path.is_file():
        return False
    with file_lock(path.with_suffix(".lock"), what="the team server logins"):
        data = _read()
        had = data.get("tokens", {}).pop(normalize(url), None) is not None
        if data.get("current") == normalize(url):
            data.pop("current")
        write_private(path, json.dumps(data, indent=2) + "\n")
    return had
