"""Build mllib's Python base image from Debian packages, with no image registry.

No registry (Docker Hub included) has to be reachable: the root filesystem comes from
``debootstrap`` against the host's own Debian mirror and is imported into the local engine with
the docker SDK. Images built on top of it can ``pip install`` from the host's package index,
behind a TLS-intercepting proxy too, because the build trusts the host's CA bundle::

    from mllib.runtime.base_image import build_base_image, build_pip_image

    base_id = build_base_image(progress=print)  # ~1 min the first time, ~20 ms afterwards
    child_id = build_pip_image("me/app:1", ["cloudpickle"], progress=print)

``mllib runtime build-base`` runs ``build_base_image``; point ``[runtime] base_image`` at the tag
it prints (the default already is). ``docker`` is imported inside functions only.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mllib.config import RuntimeSettings
from mllib.runtime.engine import ENGINE_SCRIPT, BaseImageError, docker_client, image_id
from mllib.runtime.host_settings import (
    host_debian_mirror,
    pip_build_args,
    pip_build_settings,
    refuse_credentials,
)
from mllib.runtime.image_build import (
    build_image,
    ca_files,
    host_lock,
    pip_dockerfile_lines,
    venv_env_line,
)

if TYPE_CHECKING:
    from docker import DockerClient

__all__ = [
    "DEFAULT_TAG",
    "BaseImageError",
    "build_base_image",
    "build_pip_image",
    "docker_client",
    "host_debian_mirror",
    "pip_build_args",
    "pip_build_settings",
]

DEFAULT_TAG = RuntimeSettings.base_image  # what `[runtime] base_image` defaults to
SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "python3-pip", "ca-certificates")

_LOCK_NAME = "mllib-base-image"
_PACKAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
# The same paths Debian's "-slim" images leave out; also written to dpkg's config in the image
# so packages installed later in child images stay slim too.
_DPKG_EXCLUDES = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
"""

Progress = Callable[[str], None]


def build_base_image(
    tag: str = DEFAULT_TAG,
    *,
    mirror: str | None = None,
    packages: Sequence[str] = (),
    rebuild: bool = False,
    progress: Progress | None = None,
) -> str:
    """Return the id of a Debian bookworm + Python 3 image tagged ``tag``, building it if absent.

    The tag is the identity: if it exists and ``rebuild`` is false the existing image is returned
    at once, since every import makes a new image id that invalidates cached child images.
    Building needs root, ``debootstrap`` and a reachable Docker engine; ``mirror`` defaults to
    the host's apt mirror and ``packages`` are extra Debian packages to include.
    """
    say = progress or (lambda _msg: None)
    for name in packages:
        if not _PACKAGE_NAME.match(name):
            raise BaseImageError(f"{name!r} is not a Debian package name")
    client = docker_client()
    try:
        previous = image_id(client, tag)
        if previous and not rebuild:
            return previous
        _check_can_build()
        with host_lock(_LOCK_NAME):
            current = image_id(client, tag)
            if current and (not rebuild or current != previous):
                return current  # built by a concurrent caller while we waited for the lock
            return _build(client, tag, mirror or host_debian_mirror(), packages, current, say)
    finally:
        client.close()


def build_pip_image(
    tag: str,
    requirements: Sequence[str],
    *,
    base: str = DEFAULT_TAG,
    venv: str = "/opt/venv",
    settings: Mapping[str, Any] | None = None,
    network_mode: str | None = None,
    progress: Progress | None = None,
) -> str:
    """Build ``tag`` FROM ``base`` with a venv holding ``requirements``; return its image id.

    The host's CA bundle is installed into the image's trust store (so pip works behind a
    TLS-intercepting proxy, at build and at run time) and the host's http(s) pip indexes are
    passed as build args (see :func:`pip_build_settings`). Build containers are always removed.
    """
    say = progress or (lambda _msg: None)
    settings = pip_build_settings() if settings is None else settings
    certs = ca_files(settings.get("ca_bundle"))
    dockerfile = [
        f"FROM {base}",
        *pip_dockerfile_lines(with_ca=bool(certs)),
        "COPY requirements.txt /tmp/mllib-requirements.txt",
        f"RUN python3 -m venv {venv}"
        f" && {venv}/bin/pip install --no-cache-dir --disable-pip-version-check"
        " -r /tmp/mllib-requirements.txt && rm /tmp/mllib-requirements.txt",
        venv_env_line(venv),
    ]
    files = {
        **certs,
        "requirements.txt": "".join(f"{req}\n" for req in requirements).encode(),
        "Dockerfile": ("\n".join(dockerfile) + "\n").encode(),
    }
    client = docker_client(timeout=600)
    start = time.monotonic()
    try:
        say(f"building {tag} FROM {base}: pip install {' '.join(requirements)}")
        built = build_image(
            client,
            tag,
            files,
            buildargs=pip_build_args(settings),
            labels={"org.mllib.base": base},
            network_mode=network_mode,
            progress=say,
        )
        say(f"built {tag} ({built[:19]}) in {time.monotonic() - start:.1f} s")
        return built
    finally:
        client.close()


# --- building the base image ----------------------------------------------------------------


def _build(
    client: DockerClient,
    tag: str,
    mirror: str,
    packages: Sequence[str],
    old_id: str | None,
    say: Progress,
) -> str:
    refuse_credentials("mirror", mirror, "it would be written to the image's apt sources")
    include = list(dict.fromkeys([*BASE_PACKAGES, *packages]))
    rootfs = Path(tempfile.mkdtemp(prefix="mllib-rootfs-", dir="/var/tmp"))
    try:
        start = time.monotonic()
        say(f"debootstrap {SUITE} from {mirror} (about a minute)")
        _debootstrap(rootfs, mirror, include, say)
        say(f"debootstrap done in {time.monotonic() - start:.1f} s")
        _trim(rootfs)
        python = _package_version(rootfs, "python3")
        start = time.monotonic()
        say(f"importing {tag} into the Docker engine")
        new_id = _import(client, rootfs, tag, _changes(python, packages))
        size = client.images.get(new_id).attrs.get("Size", 0)
        say(
            f"imported {tag} ({new_id[:19]}, {size / 1e6:.0f} MB) in {time.monotonic() - start:.1f} s"
        )
    finally:
        _remove_rootfs(rootfs)
    if old_id and old_id != new_id:
        _remove_if_unused(client, old_id)
    return new_id


def _debootstrap(rootfs: Path, mirror: str, include: Sequence[str], say: Progress) -> None:
    cmd = [
        _debootstrap_path() or "debootstrap",
        "--variant=minbase",
        f"--include={','.join(include)}",
        SUITE,
        str(rootfs),
        mirror,
    ]
    tail: list[str] = []
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            tail = [*tail[-19:], line]
            say(f"debootstrap: {line.rstrip()}")
    if proc.returncode != 0:
        log = rootfs / "debootstrap" / "debootstrap.log"
        log_tail = log.read_text(errors="replace").splitlines()[-20:] if log.exists() else []
        raise BaseImageError(
            f"debootstrap of {SUITE} from {mirror} failed (exit {proc.returncode}):\n"
            + "".join(tail)
            + "\n".join(log_tail)
            + "\nCheck that the mirror is reachable (pass mirror=... to use another one)."
        )


def _trim(rootfs: Path) -> None:
    """Remove docs, locales, apt lists and caches, and host identity that debootstrap copied."""
    share = rootfs / "usr/share"
    for name in ("man", "info", "groff", "lintian", "linda", "locale"):
        _empty_dir(share / name)
    doc = share / "doc"
    if doc.is_dir():
        for path in sorted(doc.rglob("*"), reverse=True):
            if path.name == "copyright" and path.parent.parent == doc:
                continue
            if path.is_dir() and not path.is_symlink():
                with contextlib.suppress(OSError):
                    path.rmdir()  # keeps package dirs that still hold their copyright
            else:
                path.unlink()
    for name in ("var/lib/apt/lists", "var/cache/apt/archives", "var/log"):
        for path in (rootfs / name).rglob("*"):
            if path.is_file() or path.is_symlink():
                path.unlink()
    for path in (rootfs / "var/cache/apt").glob("*.bin"):
        path.unlink()
    # Docker bind-mounts these at run time; the host's copies must not go into the image.
    (rootfs / "etc/resolv.conf").write_text("")
    (rootfs / "etc/hostname").write_text("localhost\n")
    (rootfs / "etc/hosts").write_text("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n")
    if (rootfs / "etc/machine-id").exists():
        (rootfs / "etc/machine-id").write_text("")
    dpkg_cfg = rootfs / "etc/dpkg/dpkg.cfg.d"
    dpkg_cfg.mkdir(parents=True, exist_ok=True)
    (dpkg_cfg / "mllib-slim").write_text(_DPKG_EXCLUDES)


def _empty_dir(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        for child in path.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()


def _package_version(rootfs: Path, package: str) -> str:
    """Return the upstream version of an installed package, read from the rootfs's dpkg status."""
    status = (rootfs / "var/lib/dpkg/status").read_text(errors="replace")
    for stanza in status.split("\n\n"):
        if re.search(rf"^Package: {re.escape(package)}$", stanza, re.M):
            match = re.search(r"^Version: (?:\d+:)?([^-\s+~]+)", stanza, re.M)
            if match:
                return match.group(1)
    return "unknown"


def _changes(python: str, packages: Sequence[str]) -> list[str]:
    labels = {
        "org.mllib.base": "1",
        "org.mllib.debian.suite": SUITE,
        "org.mllib.python": python,
        "org.mllib.packages": ",".join(packages),
    }
    label_args = " ".join(f"{key}={json.dumps(value)}" for key, value in labels.items())
    return [
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "ENV LANG=C.UTF-8",
        'CMD ["python3"]',
        f"LABEL {label_args}",
    ]


def _import(client: DockerClient, rootfs: Path, tag: str, changes: list[str]) -> str:
    import docker.errors
    from docker.utils import parse_repository_tag

    repository, image_tag = parse_repository_tag(tag)
    # GNU tar streams the tree (numeric owners, never crossing into a leftover mount); the SDK
    # sends it to the engine as a chunked upload, so the rootfs is never copied to disk again.
    tar = subprocess.Popen(
        ["tar", "--numeric-owner", "--one-file-system", "-C", str(rootfs), "-c", "."],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert tar.stdout is not None
    stdout = tar.stdout
    try:
        response = client.api.import_image(
            src=iter(lambda: stdout.read(1 << 20), b""),
            repository=repository,
            tag=image_tag,
            changes=changes,
            stream_src=True,
        )
    except docker.errors.APIError as exc:
        raise BaseImageError(f"docker import of {tag} failed: {exc.explanation or exc}") from exc
    finally:
        stdout.close()
        stderr = tar.stderr.read().decode(errors="replace") if tar.stderr else ""
        tar.wait()
    new_id: str | None = None
    for line in response.splitlines():
        message = json.loads(line) if line.strip() else {}
        if "error" in message:
            raise BaseImageError(f"docker import of {tag} failed: {message['error']}")
        if str(message.get("status", "")).startswith("sha256:"):
            new_id = str(message["status"])
    if tar.returncode != 0 or not new_id:
        if new_id:
            _remove_if_unused(client, new_id)
        raise BaseImageError(f"docker import of {tag} failed: tar said {stderr.strip()!r}")
    return new_id


def _remove_rootfs(rootfs: Path) -> None:
    """Delete the temporary rootfs, unmounting anything debootstrap left mounted inside it."""
    prefix = str(rootfs) + "/"
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
    for point in sorted(points, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)
    shutil.rmtree(rootfs, ignore_errors=True)


def _remove_if_unused(client: DockerClient, unused_id: str) -> None:
    """Drop a replaced image unless containers or child images still use it."""
    import docker.errors

    with contextlib.suppress(docker.errors.APIError):
        client.images.remove(unused_id)


# --- checks ---------------------------------------------------------------------------------


def _debootstrap_path() -> str | None:
    return shutil.which("debootstrap") or shutil.which("debootstrap", path="/usr/sbin:/sbin")


def base_build_problem() -> str | None:
    """None when this process can build the base image, else what is missing."""
    if os.geteuid() != 0:
        return (
            "building the base image runs debootstrap, which needs root: run as root "
            f"(or have root run {ENGINE_SCRIPT} and build it once)"
        )
    if not _debootstrap_path():
        return (
            f"debootstrap is not installed: apt-get install -y debootstrap (or run {ENGINE_SCRIPT})"
        )
    return None


def _check_can_build() -> None:
    if problem := base_build_problem():
        raise BaseImageError(problem)
