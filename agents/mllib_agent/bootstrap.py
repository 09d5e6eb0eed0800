"""Install or update the agent on its host: the venv, its pinned dependencies, mllib's sources.

Standard library only: `mllib agents add` runs this file's source with the host's python3
(`python3 -c SOURCE ARGS_JSON`) after uploading the payload over SFTP. Every step is skipped when
already done, so running it again is cheap. Prints one JSON line; exit code 10 means no venv
(python3-venv missing), 11 a failed dependency install, 12 a bad payload, 13 another install
holding the lock too long.
"""

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import venv


def fail(code, message, detail=""):
    print(json.dumps({"ok": False, "message": message, "detail": detail[-4000:]}))
    sys.exit(code)


def write_atomic(path, text):
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def ensure_venv(root):
    python = os.path.join(root, "venv", "bin", "python")
    if os.path.exists(python):
        return python
    try:
        venv.create(os.path.join(root, "venv"), with_pip=True, clear=True)
    except Exception as exc:
        shutil.rmtree(os.path.join(root, "venv"), ignore_errors=True)
        fail(
            10,
            f"{sys.executable} cannot create a venv ({exc}); on Debian/Ubuntu install it with "
            "`apt-get install python3-venv`",
        )
    return python


def ensure_deps(root, python, deps, stamp):
    stamp_file = os.path.join(root, "venv", ".mllib-deps")
    if os.path.exists(stamp_file):
        with open(stamp_file) as handle:
            if handle.read() == stamp:
                return False
    proc = subprocess.run(
        [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *deps],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        fail(11, "installing the agent's dependencies with pip failed", proc.stdout + proc.stderr)
    write_atomic(stamp_file, stamp)
    return True


def ensure_lib(root, payload, sha):
    lib = os.path.join(root, "lib", sha)
    if not os.path.isdir(lib):
        tmp = f"{lib}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            with tarfile.open(payload) as tar:
                for member in tar.getmembers():  # Python < 3.11.4 has no extraction filters
                    parts = member.name.split("/")
                    if not member.isfile() or member.name.startswith("/") or ".." in parts:
                        fail(12, f"the agent payload holds an unsafe entry: {member.name}")
                tar.extractall(tmp)
        except (OSError, tarfile.TarError) as exc:
            fail(12, f"the agent payload could not be unpacked: {exc}")
        os.replace(tmp, lib)
    return lib


def link_lib(python, lib):
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    write_atomic(os.path.join(purelib, "mllib_agent.pth"), lib + "\n")


def prune(root, keep):
    """Remove old payloads (keeping a few: a running supervisor may still import from them)."""
    base = os.path.join(root, "lib")
    olds = sorted(
        (d for d in os.listdir(base) if d != keep and ".tmp-" not in d),
        key=lambda d: os.stat(os.path.join(base, d)).st_mtime,
    )
    for name in olds[:-2]:
        shutil.rmtree(os.path.join(base, name), ignore_errors=True)


def main():
    args = json.loads(sys.argv[1])
    root = args["root"]
    started = time.monotonic()
    for sub in ("lib", "incoming", "store"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    os.chmod(root, 0o700)
    fd = install_lock(os.path.join(root, "install.lock"))  # two clients updating take turns
    try:
        install(root, args, started)
    finally:
        os.close(fd)


INSTALL_LOCK_TIMEOUT_S = 900  # installing the dependencies takes minutes


def install_lock(path):
    """mllib.locks' rules with the standard library alone (mllib is not installed yet): no
    symlink followed, no mode changed, a bounded wait that names the holder's pid."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    deadline = time.monotonic() + INSTALL_LOCK_TIMEOUT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
                fail(13, f"another install (process {holder}) holds {path}; try again later")
            time.sleep(0.2)
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def install(root, args, started):
    installed = os.path.join(root, "installed")
    if os.path.exists(installed):
        with open(installed) as handle:
            if handle.read().strip() == args["version"]:  # the other client just did it
                os.unlink(args["payload"])
                print(json.dumps({"ok": True, "deps_installed": False, "seconds": 0}))
                return
    python = ensure_venv(root)
    deps_installed = ensure_deps(root, python, args["deps"], args["deps_stamp"])
    lib = ensure_lib(root, args["payload"], args["payload_sha"])
    link_lib(python, lib)
    write_atomic(installed, args["version"])
    os.unlink(args["payload"])
    prune(root, args["payload_sha"])
    print(
        json.dumps(
            {
                "ok": True,
                "python": python,
                "deps_installed": deps_installed,
                "seconds": round(time.monotonic() - started, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
