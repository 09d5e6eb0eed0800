"""Build mllib's Python base image from Debian packages, with no image registry.

No registry (Docker Hub included) has to be reachable: the root filesystem comes from
``debootstrap`` against the host's own Debian mirror and is imported into the local engine with
the docker SDK. Images built on top of it can ``pip install`` from the host's package index,
behind a TLS-intercepting proxy too, because the build trusts the host's CA bundle::

    from mllib.runtime.base_image import build_base_image, build_pip_image

    base_id = build_base_image(progress=print)  # ~1 min the first time, ~20 ms afterwards
    child_id = build_pip_image("me/app:1", ["cloudpickle"], progress=print)

``docker`` is imported inside functions only: mllib's CLI must start without it.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from docker import DockerClient

DEFAULT_TAG = "mllib/base:bookworm-py3"
SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "python3-pip", "ca-certificates")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
ENGINE_SCRIPT = "scripts/lib/docker-engine.sh"

_LOCK_PATH = "/run/lock/mllib-base-image.lock"
_PACKAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
# Docker's predefined build args: passed through from the host, and left out of `docker history`.
_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
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


class BaseImageError(Exception):
    """A base or child image could not be built; the message says what failed and what to do."""


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
        previous = _image_id(client, tag)
        if previous and not rebuild:
            return previous
        _check_can_build()
        with _build_lock():
            current = _image_id(client, tag)
            if current and (not rebuild or current != previous):
                return current  # built by a concurrent caller while we waited for the lock
            return _build(client, tag, mirror or host_debian_mirror(), packages, current, say)
    finally:
        client.close()


def host_debian_mirror(suite: str = SUITE, apt_dir: str | os.PathLike[str] = "/etc/apt") -> str:
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
    :class:`BaseImageError`: the legacy builder records build-arg values in ``docker history``
    and has no build secrets, so a credential would end up in the image for anyone to read.
    """
    env = os.environ if environ is None else environ
    skipped: list[str] = []
    if config_list is None:
        config_list = _pip_config_list(skipped)
    values = _parse_pip_config(config_list, env)

    def http_only(key: str) -> list[str]:
        kept = []
        for url in values.get(key, "").split():
            if urlsplit(url).scheme in ("http", "https"):
                _refuse_credentials(key, url)
                kept.append(url)
            else:
                skipped.append(f"{key} {url}: a local location is not visible inside a build")
        return kept

    index = http_only("index-url")
    candidates = (values.get("cert"), env.get("REQUESTS_CA_BUNDLE"), env.get("SSL_CERT_FILE"))
    ca_bundle = next((p for p in (*candidates, HOST_CA_BUNDLE) if p and os.path.isfile(p)), None)
    proxies = {name: env[name] for name in _PROXY_VARS if env.get(name)}
    return {
        "index_url": index[0] if index else None,
        "extra_index_urls": http_only("extra-index-url"),
        "find_links": http_only("find-links"),
        "trusted_hosts": values.get("trusted-host", "").split(),
        "ca_bundle": ca_bundle,
        "proxies": proxies,
        "skipped": skipped,
    }


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
    import docker.errors

    say = progress or (lambda _msg: None)
    settings = pip_build_settings() if settings is None else settings
    files = {"requirements.txt": "".join(f"{req}\n" for req in requirements).encode()}
    ca_bundle = settings.get("ca_bundle")
    certs = _split_pem(Path(ca_bundle).read_bytes()) if ca_bundle else []
    for number, cert in enumerate(certs):
        files[f"mllib-ca/host-{number:03d}.crt"] = cert
    files["Dockerfile"] = _pip_dockerfile(base, venv, with_ca=bool(certs)).encode()
    build_args = pip_build_args(settings)

    client = docker_client(timeout=600)
    start = time.monotonic()
    try:
        say(f"building {tag} FROM {base}: pip install {' '.join(requirements)}")
        tail: list[str] = []
        image_id = None
        for chunk in client.api.build(
            fileobj=_tar_context(files),
            custom_context=True,
            tag=tag,
            buildargs=build_args,
            rm=True,
            forcerm=True,
            decode=True,
            network_mode=network_mode,
            labels={"org.mllib.base": base},
        ):
            if "error" in chunk:
                detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
                raise BaseImageError(_build_failure(tag, detail, tail))
            if line := _ANSI.sub("", chunk.get("stream", "")):
                tail = [*tail[-14:], line]
                if line.strip():
                    say(line.rstrip())
            if aux := chunk.get("aux"):
                image_id = aux.get("ID", image_id)
        image_id = str(image_id or client.images.get(tag).id)
        say(f"built {tag} ({image_id[:19]}) in {time.monotonic() - start:.1f} s")
        return image_id
    except docker.errors.APIError as exc:
        raise BaseImageError(f"building {tag} failed: {exc.explanation or exc}") from exc
    finally:
        client.close()


def _build_failure(tag: str, detail: str, tail: Sequence[str]) -> str:
    output = "".join(tail)
    if "CERTIFICATE_VERIFY_FAILED" in output:
        hint = (
            "The build does not trust the TLS proxy's certificate: give it the host's CA bundle "
            f"(pip's `cert` setting, REQUESTS_CA_BUNDLE, or {HOST_CA_BUNDLE})."
        )
    else:
        hint = "Check that the base image exists and the package index is reachable."
    return f"building {tag} failed: {_ANSI.sub('', detail).strip()}\n{output}{hint}"


# --- building the base image ----------------------------------------------------------------


def _build(
    client: DockerClient,
    tag: str,
    mirror: str,
    packages: Sequence[str],
    old_id: str | None,
    say: Progress,
) -> str:
    _refuse_credentials("mirror", mirror, "it would be written to the image's apt sources")
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
        image_id = _import(client, rootfs, tag, _changes(python, packages))
        size = client.images.get(image_id).attrs.get("Size", 0)
        say(
            f"imported {tag} ({image_id[:19]}, {size / 1e6:.0f} MB) in {time.monotonic() - start:.1f} s"
        )
    finally:
        _remove_rootfs(rootfs)
    if old_id and old_id != image_id:
        _remove_if_unused(client, old_id)
    return image_id


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
    image_id: str | None = None
    for line in response.splitlines():
        message = json.loads(line) if line.strip() else {}
        if "error" in message:
            raise BaseImageError(f"docker import of {tag} failed: {message['error']}")
        if str(message.get("status", "")).startswith("sha256:"):
            image_id = str(message["status"])
    if tar.returncode != 0 or not image_id:
        if image_id:
            _remove_if_unused(client, image_id)
        raise BaseImageError(f"docker import of {tag} failed: tar said {stderr.strip()!r}")
    return image_id


def _remove_rootfs(rootfs: Path) -> None:
    """Delete the temporary rootfs, unmounting anything debootstrap left mounted inside it."""
    prefix = str(rootfs) + "/"
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
    for point in sorted(points, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)
    shutil.rmtree(rootfs, ignore_errors=True)


def _remove_if_unused(client: DockerClient, image_id: str) -> None:
    """Drop a replaced image unless containers or child images still use it."""
    import docker.errors

    with contextlib.suppress(docker.errors.APIError):
        client.images.remove(image_id)


# --- checks, locks and the engine -----------------------------------------------------------


def docker_client(timeout: int = 300) -> DockerClient:
    """Return a docker SDK client for the engine in DOCKER_HOST (default: the local socket).

    Raises :class:`BaseImageError` saying how to start the engine when it does not answer.
    """
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    hint = f"start it as root with {ENGINE_SCRIPT}"
    if host.startswith("unix://"):
        # Probe the socket ourselves: the SDK leaks its socket when the connect fails.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(10)
            try:
                probe.connect(host.removeprefix("unix://"))
            except PermissionError as exc:
                raise BaseImageError(
                    f"no permission to use the Docker engine at {host}: run as root "
                    "or as a member of the docker group"
                ) from exc
            except OSError as exc:
                reason = exc.strerror or str(exc)
                raise BaseImageError(
                    f"the Docker engine is not reachable at {host} ({reason}): {hint}"
                ) from exc
    try:
        import docker
    except ImportError as exc:
        raise BaseImageError("the docker Python package is missing: pip install docker") from exc
    try:
        client = docker.from_env(timeout=timeout)
    except docker.errors.DockerException as exc:
        raise BaseImageError(
            f"the Docker engine is not reachable at {host} ({exc}): {hint}"
        ) from exc
    return client


def _image_id(client: DockerClient, tag: str) -> str | None:
    import docker.errors

    try:
        return client.images.get(tag).id
    except docker.errors.ImageNotFound:
        return None


def _debootstrap_path() -> str | None:
    return shutil.which("debootstrap") or shutil.which("debootstrap", path="/usr/sbin:/sbin")


def _check_can_build() -> None:
    if os.geteuid() != 0:
        raise BaseImageError(
            "building the base image runs debootstrap, which needs root: run as root "
            f"(or have root run {ENGINE_SCRIPT} and build it once)"
        )
    if not _debootstrap_path():
        raise BaseImageError(
            f"debootstrap is not installed: apt-get install -y debootstrap (or run {ENGINE_SCRIPT})"
        )


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    """Hold a host-wide lock so concurrent callers build the image once, not twice."""
    os.makedirs(os.path.dirname(_LOCK_PATH), exist_ok=True)
    with open(_LOCK_PATH, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


# --- host configuration ---------------------------------------------------------------------


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


def _refuse_credentials(setting: str, url: str, why: str = "") -> None:
    parts = urlsplit(url)
    if parts.username or parts.password:
        masked = urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))
        why = why or (
            "build args are recorded in `docker history` and this builder has no build secrets"
        )
        raise BaseImageError(
            f"the {setting} {masked} carries credentials, which mllib will not put into an "
            f"image: {why}. Use a {setting} that needs no credentials (a local mirror or proxy)."
        )


# --- build contexts -------------------------------------------------------------------------


def _split_pem(bundle: bytes) -> list[bytes]:
    """Split a PEM bundle into single certificates, as update-ca-certificates expects."""
    pattern = rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----"
    return [cert + b"\n" for cert in re.findall(pattern, bundle, re.S)]


def _pip_dockerfile(base: str, venv: str, *, with_ca: bool) -> str:
    ca_bundle = "/etc/ssl/certs/ca-certificates.crt"
    lines = [f"FROM {base}"]
    if with_ca:
        lines += [
            "COPY mllib-ca/ /usr/local/share/ca-certificates/mllib-host/",
            "RUN update-ca-certificates >/dev/null",
        ]
    lines += [
        f"ENV SSL_CERT_FILE={ca_bundle} REQUESTS_CA_BUNDLE={ca_bundle} PIP_CERT={ca_bundle}",
        "ARG PIP_INDEX_URL",
        "ARG PIP_EXTRA_INDEX_URL",
        "ARG PIP_FIND_LINKS",
        "ARG PIP_TRUSTED_HOST",
        "COPY requirements.txt /tmp/mllib-requirements.txt",
        f"RUN python3 -m venv {venv}"
        f" && {venv}/bin/pip install --no-cache-dir --disable-pip-version-check"
        " -r /tmp/mllib-requirements.txt && rm /tmp/mllib-requirements.txt",
        f"ENV VIRTUAL_ENV={venv} PATH={venv}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ]
    return "\n".join(lines) + "\n"


def _tar_context(files: Mapping[str, bytes]) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer
