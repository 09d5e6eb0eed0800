"""SSH host keys: never accepted silently. mllib keeps its own known_hosts file (0600).

First contact shows the key's fingerprint and asks (or `--trust-host-key` accepts it for
scripts); a key that differs from the recorded one is refused with what to check. Every change
to the file happens under one lock (known_hosts.lock): a trusted key is appended as one line, so
two first contacts at once (agents added in parallel, a sync beside a run) both keep theirs.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from mllib.errors import MllibError
from mllib.userdirs import config_file

if TYPE_CHECKING:
    import paramiko

KNOWN_HOSTS = "known_hosts"
LOCK_FILE = "known_hosts.lock"

# confirm(host_label, key_type, fingerprint) -> True to trust the key
Confirm = Callable[[str, str, str], bool]


class HostKeyError(MllibError):
    """An agent's host key is unknown and was not trusted, or changed since it was recorded."""

    exit_code = 3


def known_hosts_path() -> Path:
    return config_file(KNOWN_HOSTS)


def fingerprint(key: paramiko.PKey) -> str:
    """The key's SHA256 fingerprint as OpenSSH prints it (`ssh-keygen -lf`)."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def host_label(host: str, port: int) -> str:
    """How known_hosts names a host: `host` on port 22, else `[host]:port`."""
    return host if port == 22 else f"[{host}]:{port}"


def ensure_file() -> Path:
    path = known_hosts_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    os.chmod(path, 0o600)
    return path


@contextlib.contextmanager
def _locked() -> Iterator[Path]:
    """Hold the lock every writer of the known_hosts file takes; yields the file's path."""
    from mllib.locks import file_lock

    path = ensure_file()
    with file_lock(path.with_name(LOCK_FILE), what="the known host keys"):
        yield path


def record(label: str, key: paramiko.PKey) -> None:
    """Add `key` for `label` to the known_hosts file: one appended line, under the lock, after
    reading the file again (another process may have recorded it meanwhile). The file stays 0600."""
    import paramiko

    line = f"{label} {key.get_name()} {key.get_base64()}\n"
    with _locked() as path:
        known = paramiko.HostKeys(str(path)).lookup(label) or {}
        if known.get(key.get_name()) == key:
            return
        text = path.read_bytes()
        if text and not text.endswith(b"\n"):  # a hand-edited file's last line
            line = "\n" + line
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(path, 0o600)


def load_into(client: paramiko.SSHClient) -> Path:
    path = ensure_file()
    client.load_host_keys(str(path))
    return path


def policy(agent: str, *, trust: bool, confirm: Confirm | None) -> paramiko.MissingHostKeyPolicy:
    """A policy for unknown keys: trust (and record) when told to or confirmed, else refuse."""
    import paramiko

    class AskPolicy(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, client, hostname, key) -> None:
            shown = fingerprint(key)
            if not (trust or (confirm is not None and confirm(hostname, key.get_name(), shown))):
                raise HostKeyError(
                    f"The host key of agent {agent} ({hostname}) is not known, and was not trusted: "
                    f"{key.get_name()} {shown}",
                    hint="Compare the fingerprint with `ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub` "
                    "on the host, then run again in a terminal and answer yes, or pass --trust-host-key.",
                )
            client.get_host_keys().add(hostname, key.get_name(), key)
            record(hostname, key)

    return AskPolicy()


def changed_key_error(agent: str, label: str, exc: paramiko.BadHostKeyException) -> HostKeyError:
    return HostKeyError(
        f"The host key of agent {agent} ({label}) has CHANGED: mllib recorded "
        f"{fingerprint(exc.expected_key)}, the host now presents {exc.key.get_name()} "
        f"{fingerprint(exc.key)}. mllib refused to connect: someone may be intercepting the "
        "connection, or the host was reinstalled or its SSH keys regenerated.",
        hint=f"Check the new fingerprint with the host's administrator (`ssh-keygen -lf "
        f"/etc/ssh/ssh_host_*_key.pub` on the host). Only if it is expected, run "
        f"`mllib agents forget-host-key {agent}` and connect again to record the new key.",
    )


def forget(host: str, port: int) -> bool:
    """Remove the recorded key(s) of host:port from mllib's known_hosts; True if one was there."""
    label = host_label(host, port)
    with _locked() as path:
        lines = path.read_text().splitlines(keepends=True)
        kept = [line for line in lines if not _names_host(line, label)]
        if len(kept) == len(lines):
            return False
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.writelines(kept)
        os.replace(tmp, path)
    return True


def _names_host(line: str, label: str) -> bool:
    """Whether a known_hosts line is for `label` (plain or hashed `|1|` names)."""
    import paramiko

    fields = line.split()
    if not fields or fields[0].startswith("#"):
        return False
    for name in fields[0].split(","):
        if name.startswith("|1|"):
            if paramiko.HostKeys.hash_host(label, name) == name:
                return True
        elif name == label:
            return True
    return False
