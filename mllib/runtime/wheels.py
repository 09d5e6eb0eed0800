"""Wheels an image build needs from this machine: mllib itself, and host-only package wheels.

``mllib_wheel`` packs the *running* mllib (an editable checkout or an installed copy) into a
wheel, so the container runs exactly the worker code the host runs. It writes the few files of
a pure-Python wheel itself: no build backend, no network, a few milliseconds.
``local_wheels`` finds the wheels of pinned versions that only this machine has (a find-links
folder, a ``file://`` index: torch's CPU build here), and ``serve_wheels`` lends them to a build
over HTTP on 127.0.0.1, so they never become an image layer.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import re
import shutil
import tempfile
import threading
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from functools import cache
from pathlib import Path

from mllib._version import __version__

_PACKAGE = Path(__file__).resolve().parents[1]  # the running mllib package's folder
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_HREF = re.compile(r"""href=["']([^"'#]+)""", re.IGNORECASE)


@cache
def mllib_files() -> tuple[tuple[str, Path], ...]:
    """(path in the wheel, file) for every file of the running mllib package, sorted."""
    package = _PACKAGE
    found = []
    for path in sorted(package.rglob("*")):
        rel = path.relative_to(package)
        if path.is_file() and "__pycache__" not in rel.parts and path.suffix != ".pyc":
            found.append((f"mllib/{rel.as_posix()}", path))
    return tuple(found)


@cache
def mllib_source_hash() -> str:
    """sha256 over the running mllib's files (names and contents): a new one means a new image."""
    digest = hashlib.sha256(__version__.encode())
    for name, path in mllib_files():
        digest.update(f"\0{name}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def mllib_wheel(folder: Path) -> Path:
    """Write `mllib-VERSION-py3-none-any.whl` of the running mllib into `folder`; return its path."""
    dist_info = f"mllib-{__version__}.dist-info"
    entries = [(name, path.read_bytes()) for name, path in mllib_files()]
    entries += [
        (
            f"{dist_info}/METADATA",
            f"Metadata-Version: 2.1\nName: mllib\nVersion: {__version__}\n"
            "Summary: mllib's worker, packed from the running mllib for a container image\n".encode(),
        ),
        (
            f"{dist_info}/WHEEL",
            b"Wheel-Version: 1.0\nGenerator: mllib\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        ),
    ]
    record = [f"{name},sha256={_b64_digest(data)},{len(data)}" for name, data in entries]
    entries.append(
        (f"{dist_info}/RECORD", ("\n".join([*record, f"{dist_info}/RECORD,,"]) + "\n").encode())
    )
    wheel = folder / f"mllib-{__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return wheel


def local_wheels(
    pins: Mapping[str, str], folders: Iterable[Path], indexes: Iterable[Path]
) -> list[Path]:
    """Wheel files of exactly the pinned versions in local find-links folders and file:// indexes.

    Every matching wheel is returned whatever its platform tags; pip in the build picks the one
    that fits the image.
    """
    from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
    from packaging.version import Version

    candidates: list[Path] = []
    for folder in folders:
        candidates += folder.glob("*.whl")
    for index in indexes:
        for name in pins:
            page = index / name / "index.html"
            if page.is_file():
                for href in _HREF.findall(page.read_text(errors="replace")):
                    candidates.append((page.parent / html.unescape(href)).resolve())
    found: dict[str, Path] = {}
    for path in candidates:
        try:
            name, version, _build, _tags = parse_wheel_filename(path.name)
        except InvalidWheelFilename:
            continue
        pinned = pins.get(canonicalize_name(name))
        if pinned is not None and version == Version(pinned) and path.is_file():
            found.setdefault(path.name, path)
    return [found[name] for name in sorted(found)]


@contextlib.contextmanager
def serve_wheels(wheels: Iterable[Path]) -> Iterator[str | None]:
    """Serve `wheels` as a find-links page on 127.0.0.1 for as long as the block runs.

    Yields the URL to pass to pip (None when there is nothing to serve). The files are linked,
    not copied, into a temporary folder that is removed afterwards.
    """
    wheels = list(wheels)
    if not wheels:
        yield None
        return
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    folder = Path(tempfile.mkdtemp(prefix="mllib-wheels-"))
    try:
        for wheel in wheels:
            (folder / wheel.name).symlink_to(wheel)
        server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(folder)))
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/"
        finally:
            server.shutdown()
            server.server_close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _b64_digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
