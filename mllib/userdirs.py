"""Where mllib keeps a user's own files: the platform's folders (platformdirs: the XDG folders on
Linux), or all of them under one folder when `MLLIB_HOME` is set. Nothing else in mllib works out
a per-user path (tests/test_architecture.py checks that), so one variable moves everything.

    config   ~/.config/mllib        $MLLIB_HOME/config   credentials.json, agents.json, known_hosts
    state    ~/.local/state/mllib   $MLLIB_HOME/state    locks/
    data     ~/.local/share/mllib   $MLLIB_HOME/data     server/ (a team server's default home)
    cache    ~/.cache/mllib         $MLLIB_HOME/cache    envs/, what imports and requirements read

A file of the old layout (~/.mllib/NAME, or $MLLIB_HOME/NAME) is moved to its new place the
first time it is needed, with a one-line notice; where it cannot be moved it is used where it is.
An old server home (~/.mllib/server) stays in use where it is.

>>> config_file("credentials.json")  # doctest: +SKIP
PosixPath('/home/ana/.config/mllib/credentials.json')
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

APP = "mllib"
HOME_VAR = "MLLIB_HOME"
LEGACY_DIR = ".mllib"  # the one folder of every per-user file before (~/.mllib)


def config_dir() -> Path:
    """What the user chose: the server logged in to and its token, agents added, trusted host
    keys."""
    return _folder("config", "user_config_path")


def state_dir() -> Path:
    """What mllib keeps for itself between commands and may lose (locks)."""
    return _folder("state", "user_state_path")


def data_dir() -> Path:
    """What must last and is not configuration: a team server's home (its database and store)."""
    return _folder("data", "user_data_path")


def cache_dir() -> Path:
    """What can be made again: venvs, the names imports and requirements resolve to."""
    return _folder("cache", "user_cache_path")


def env_cache_dir() -> Path:
    """The cache of environments (project venvs, what each environment has installed):
    `MLLIB_ENV_CACHE`, else `cache_dir()/envs`. Shared by the venv runtime and the worker."""
    configured = os.environ.get("MLLIB_ENV_CACHE")
    return Path(configured) if configured else cache_dir() / "envs"


def packages_cache_dir() -> Path:
    """Where workers record what each environment has installed (mllib.worker.package_cache):
    `packages/` in the environment cache; the Docker runtime lends it to its containers."""
    return env_cache_dir() / "packages"


def legacy_dir() -> Path:
    """The old single folder: `MLLIB_HOME` itself, else ~/.mllib."""
    return _override() or Path.home() / LEGACY_DIR


def config_file(name: str) -> Path:
    """`config_dir()/name`, after moving a file of the old layout there (once). Where the old
    file cannot be moved (a read-only home, say), it is the one used, so nothing is lost."""
    new = config_dir() / name
    old = legacy_dir() / name
    if new.exists() or not old.is_file() or old == new:
        return new
    return new if _move(old, new) else old


def server_home() -> Path:
    """A team server's default home: an old one (~/.mllib/server) where it is, else
    `data_dir()/server`. A server's database is never moved behind its admin's back."""
    old = legacy_dir() / "server"
    return old if old.is_dir() else data_dir() / "server"


def systemd_user_dir() -> Path:
    """Where systemd looks for this user's units (`$XDG_CONFIG_HOME/systemd/user`): systemd's
    folder, so `MLLIB_HOME` does not move it."""
    from platformdirs import user_config_path

    return user_config_path("systemd", appauthor=False) / "user"


def pyenv_versions() -> Path:
    """pyenv's installed Pythons (`$PYENV_ROOT/versions`, else ~/.pyenv/versions)."""
    return Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"


def _override() -> Path | None:
    value = os.environ.get(HOME_VAR)
    return Path(os.path.abspath(os.path.expanduser(value))) if value else None


def _folder(kind: str, attribute: str) -> Path:
    root = _override()
    if root is not None:
        return root / kind
    from platformdirs import PlatformDirs

    path: Path = getattr(PlatformDirs(APP, appauthor=False), attribute)
    return path


def _move(old: Path, new: Path) -> bool:
    """Move `old` to `new` without ever replacing a file at `new` or losing `old`'s bytes: a hard
    link (or a synced copy across file systems), then the old name goes. False if it could not."""
    from mllib.filemodes import fsync_dir, private_dir, private_file

    try:
        private_dir(new.parent)
        try:
            os.link(old, new, follow_symlinks=True)
        except FileExistsError:
            pass  # another process moved it, or wrote a newer one: `new` is the one that counts
        except OSError:  # another file system, or one without hard links
            _copy_to(old, new)
        private_file(new)  # 0600, as mllib writes them
        fsync_dir(new.parent)
        if old.read_bytes() != new.read_bytes():
            return True  # a newer file was written there meanwhile; the old one is left as it was
        old.unlink()
    except FileNotFoundError:
        return new.exists()  # moved by another process meanwhile
    except OSError:
        return False
    from mllib.terminal import notice

    notice(f"moved {old} to {new} (mllib's own files follow the platform's folders now)")
    return True


def _copy_to(old: Path, new: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=new.parent, prefix=f".{new.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle, old.open("rb") as source:
            shutil.copyfileobj(source, handle)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, new)
    finally:
        os.unlink(tmp)
