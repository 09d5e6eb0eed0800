"""What the host knows about package sources, read so image builds download where the host does.

``host_debian_mirror()`` is the apt mirror debootstrap uses for the base image;
``pip_build_settings()`` the pip index, CA bundle and proxies an image build passes on, and
``local_pip_locations()`` the host-only sources (find-links folders, ``file://`` indexes) whose
wheels a build cannot see unless mllib hands them over.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from mllib.protocol.failure import SYSTEM_ERROR
from mllib.runtime.engine import ImageBuildError

DEFAULT_MIRROR = "http://deb.debian.org/debian"
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
# Docker's predefined build args: passed through from the host, and left out of `docker history`.
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")


def host_debian_mirror(
    suite: str = "bookworm", apt_dir: str | os.PathLike[str] = "/etc/apt"
) -> str:
    """Return the Debian mirror URL the host's apt uses, so debootstrap downloads where apt does.

    Reads ``sources.list`` and ``sources.list.d/*.list`` (one-line form) and ``*.sources``
    (deb822 form). Prefers an entry for ``suite`` itself, then any ``.../debian`` archive that is
    not the security archive, then ``http://deb.debian.org/debian``.
    """
    entries = list(_apt_entries(Path(apt_dir)))
    for uri, suites in entries:
        if suite in suites:
            return uri
    for uri, _suites in entries:
        if uri.rstrip("/").endswith("/debian"):
            return uri
    return DEFAULT_MIRROR


def pip_build_settings(
    *, config_list: str | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Return the host's pip index, CA and proxy settings that an image build can use.

    Keys: ``index_url`` (None: pip's default), ``extra_index_urls``, ``find_links``,
    ``trusted_hosts``, ``ca_bundle`` (a host path or None), ``proxies`` and ``skipped`` (what was
    left out and why). Only http(s) locations are kept: ``file://`` indexes and local paths on the
    host are not visible inside a build. ``config_list`` is ``pip config list`` output (read from
    pip when None) and ``environ`` defaults to ``os.environ``.

    An index URL that carries credentials (``user:password@``) is refused with
    :class:`ImageBuildError`: the legacy builder records build-arg values in ``docker history``
    and has no build secrets, so a credential would end up in the image for anyone to read.
    """
    env = os.environ if environ is None else environ
    values, skipped = pip_config_values(config_list=config_list, environ=env)

    def http_only(key: str) -> list[str]:
        kept = []
        for url in values.get(key, "").split():
            if urlsplit(url).scheme in ("http", "https"):
                refuse_credentials(key, url)
                kept.append(url)
            else:
                skipped.append(f"{key} {url}: a local location is not visible inside a build")
        return kept

    index = http_only("index-url")
    candidates = (values.get("cert"), env.get("REQUESTS_CA_BUNDLE"), env.get("SSL_CERT_FILE"))
    ca_bundle = next((p for p in (*candidates, HOST_CA_BUNDLE) if p and os.path.isfile(p)), None)
    return {
        "index_url": index[0] if index else None,
        "extra_index_urls": http_only("extra-index-url"),
        "find_links": http_only("find-links"),
        "trusted_hosts": values.get("trusted-host", "").split(),
        "ca_bundle": ca_bundle,
        "proxies": host_proxies(env),
        "skipped": skipped,
    }


def host_proxies(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The proxy variables set on the host, for builds and runs that must go through them too."""
    env = os.environ if environ is None else environ
    return {name: env[name] for name in PROXY_VARS if env.get(name)}


def pip_build_args(settings: Mapping[str, Any]) -> dict[str, str]:
    """Turn :func:`pip_build_settings` into Docker build args; empty settings are left out.

    The proxy variables are Docker's predefined build args, which ``docker history`` omits.
    """
    args = {
        "PIP_INDEX_URL": settings.get("index_url") or "",
        "PIP_EXTRA_INDEX_URL": " ".join(settings.get("extra_index_urls") or ()),
        "PIP_FIND_LINKS": " ".join(settings.get("find_links") or ()),
        "PIP_TRUSTED_HOST": " ".join(settings.get("trusted_hosts") or ()),
        **(settings.get("proxies") or {}),
    }
    return {name: value for name, value in args.items() if value}


def local_pip_locations(
    *, config_list: str | None = None, environ: Mapping[str, str] | None = None
) -> tuple[list[Path], list[Path]]:
    """The host's local package sources: (find-links folders, ``file://`` simple-index roots).

    These are what :func:`pip_build_settings` skips: a build sees them only through mllib.
    """
    values, _skipped = pip_config_values(config_list=config_list, environ=environ)
    folders: list[Path] = []
    indexes: list[Path] = []
    for key in ("find-links", "index-url", "extra-index-url"):
        for location in values.get(key, "").split():
            parts = urlsplit(location)
            if parts.scheme in ("http", "https"):
                continue
            path = Path(unquote(parts.path) if parts.scheme == "file" else location)
            if path.is_dir():
                (folders if key == "find-links" else indexes).append(path)
    return folders, indexes


def pip_config_values(
    *, config_list: str | None = None, environ: Mapping[str, str] | None = None
) -> tuple[dict[str, str], list[str]]:
    """The host's pip settings for installs (config files, then PIP_* variables) and any problems."""
    env = os.environ if environ is None else environ
    skipped: list[str] = []
    if config_list is None:
        config_list = _pip_config_list(skipped)
    return _parse_pip_config(config_list, env), skipped


def refuse_credentials(
    setting: str, url: str, why: str = "", *, failure_class: str = SYSTEM_ERROR
) -> None:
    """Raise ImageBuildError when `url` carries a user or password, without echoing them."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        masked = urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))
        why = why or (
            "build args are recorded in `docker history` and this builder has no build secrets"
        )
        raise ImageBuildError(
            f"the {setting} {masked} carries credentials, which mllib will not put into an "
            f"image: {why}. Use a {setting} that needs no credentials (a local mirror or proxy).",
            failure_class=failure_class,
        )


def _apt_entries(apt_dir: Path) -> Iterator[tuple[str, list[str]]]:
    """Yield (uri, suites) for each enabled ``deb`` source of the host's apt."""
    one_line = [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*.list"))]
    for path in one_line:
        if not path.is_file():
            continue
        for raw in path.read_text(errors="replace").splitlines():
            line = re.sub(r"\[[^]]*\]", " ", raw.split("#", 1)[0]).split()
            if len(line) >= 3 and line[0] == "deb" and _usable_uri(line[1]):
                yield line[1], [line[2]]
    for path in sorted((apt_dir / "sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text(errors="replace")):
            fields = _deb822(stanza)
            if "deb" not in fields.get("types", "").split():
                continue
            if fields.get("enabled", "yes").lower() == "no":
                continue
            for uri in fields.get("uris", "").split():
                if _usable_uri(uri):
                    yield uri, fields.get("suites", "").split()


def _deb822(stanza: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    key = None
    for line in stanza.splitlines():
        if line.startswith("#"):
            continue
        if line[:1].isspace() and key:
            fields[key] += " " + line.strip()
        elif ":" in line:
            key, value = line.split(":", 1)
            key = key.strip().lower()
            fields[key] = value.strip()
    return fields


def _usable_uri(uri: str) -> bool:
    return urlsplit(uri).scheme in ("http", "https", "file", "ftp")


def _pip_config_list(skipped: list[str]) -> str:
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        skipped.append(f"pip config list: {exc}; used PIP_* environment variables only")
        return ""
    if result.returncode != 0:
        skipped.append("pip config list failed; used PIP_* environment variables only")
        return ""
    return result.stdout


def _parse_pip_config(config_list: str, env: Mapping[str, str]) -> dict[str, str]:
    """Merge ``pip config list`` lines and PIP_* variables with pip's precedence for installs."""
    rank = {"global": 0, "install": 1, ":env:": 2}
    best: dict[str, tuple[int, str]] = {}
    for line in config_list.splitlines():
        match = re.match(r"^(?P<section>[^.=]+)\.(?P<key>[^=]+)=(?P<value>.*)$", line.strip())
        if not match or match["section"] not in rank:
            continue
        value = match["value"].strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        level = rank[match["section"]]
        if match["key"] not in best or level >= best[match["key"]][0]:
            best[match["key"]] = (level, value)
    for key in ("index-url", "extra-index-url", "find-links", "trusted-host", "cert"):
        env_value = env.get("PIP_" + key.upper().replace("-", "_"))
        if env_value:
            best[key] = (rank[":env:"], env_value)
    return {key: value for key, (_level, value) in best.items()}
