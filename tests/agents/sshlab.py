"""Real SSH hosts on loopback for the agent tests: one sshd and one OS user per host.

Each host has its own user (own home, so agents never share files), its own sshd on a random
loopback port with its own config and ed25519 host key, key-only auth. Everything made here is
removed by `Lab.close()`: sshd processes, every process of the users, the users, the files.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

SSHD = "/usr/sbin/sshd"
SYSTEM_PYTHON = "/usr/bin/python3"


def missing_prerequisite() -> str | None:
    """Why real SSH hosts cannot be made here, or None."""
    if os.geteuid() != 0:
        return "the agent tests create OS users and need root"
    for tool in (SSHD, "/usr/bin/ssh-keygen", "/usr/sbin/useradd", SYSTEM_PYTHON):
        if not os.path.exists(tool):
            return f"{tool} is missing (scripts/test.sh installs openssh-server)"
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import ensurepip, venv"], capture_output=True)
    if probe.returncode != 0:
        return "python3-venv is missing (scripts/test.sh installs it)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float = 20.0, what: str = "condition", interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@dataclass
class Host:
    """One agent host: an OS user and an sshd serving it on 127.0.0.1:port."""

    base: Path
    index: int
    user: str
    port: int = field(default_factory=free_port)

    @property
    def dir(self) -> Path:
        return self.base / f"sshd-{self.index}"

    @property
    def home(self) -> Path:
        return self.base / "home" / self.user

    @property
    def host_key(self) -> Path:
        return self.dir / "host_key"

    @property
    def pid_file(self) -> Path:
        return self.dir / "sshd.pid"

    def create(self, public_key: str) -> None:
        (self.base / "home").mkdir(exist_ok=True)
        subprocess.run(
            [
                "useradd",
                "--create-home",
                "--home-dir",
                str(self.home),
                "--shell",
                "/bin/bash",
                "--user-group",
                self.user,
            ],
            check=True,
            capture_output=True,
        )
        subprocess.run(["usermod", "-p", "*", self.user], check=True)  # no password, not locked
        keys = self.base / "authorized_keys"
        keys.mkdir(exist_ok=True, mode=0o755)
        (keys / self.user).write_text(public_key)
        os.chmod(keys / self.user, 0o644)
        self.dir.mkdir()
        self.new_host_key()
        (self.dir / "sshd_config").write_text(
            f"""Port {self.port}
ListenAddress 127.0.0.1
HostKey {self.host_key}
PidFile {self.pid_file}
AuthorizedKeysFile {keys}/%u
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowUsers {self.user}
Subsystem sftp internal-sftp
PrintMotd no
PermitUserEnvironment yes
MaxStartups 100
MaxSessions 100
LogLevel VERBOSE
"""
        )

    @property
    def agent_root(self) -> Path:
        return self.home / ".mllib-agent"

    @property
    def uid(self) -> int:
        return pwd.getpwnam(self.user).pw_uid

    @property
    def gid(self) -> int:
        return pwd.getpwnam(self.user).pw_gid

    @contextmanager
    def in_group(self, group: str) -> Iterator[None]:
        """The host's user is a member of `group` (e.g. docker) for new logins while this lasts."""
        _retry_on_lock(["gpasswd", "--add", self.user, group])
        try:
            yield
        finally:
            _retry_on_lock(["gpasswd", "--delete", self.user, group])

    def use_package_sources(self) -> None:
        """The host's user gets this machine's own pip package sources (its index, extra
        indexes and find-links, as `pip config` has them): the wheels only this machine's disk
        holds (torch's CPU build) are then there for the agent's venvs too, as a real host has
        its own mirror."""
        found = subprocess.run(
            [SYSTEM_PYTHON, "-m", "pip", "config", "list"], capture_output=True, text=True
        ).stdout
        wanted = ("index-url", "extra-index-url", "find-links")
        settings = {}
        for line in found.splitlines():
            key, _, value = line.partition("=")
            if key.startswith("global.") and key[len("global.") :] in wanted:
                settings[key[len("global.") :]] = value.strip().strip("'\"")
        if not settings:
            return
        config = self.home / ".config" / "pip" / "pip.conf"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text("[global]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()))
        for path in (config.parent.parent, config.parent, config):
            os.chown(path, self.uid, self.gid)

    @contextmanager
    def path_first(self, folder: Path) -> Iterator[None]:
        """New logins find programs in `folder` first (~/.ssh/environment sets their PATH)."""
        ssh_dir = self.home / ".ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        os.chown(ssh_dir, self.uid, self.gid)
        environment = ssh_dir / "environment"
        environment.write_text(f"PATH={folder}:/usr/local/bin:/usr/bin:/bin\n")
        try:
            yield
        finally:
            environment.unlink(missing_ok=True)

    @contextmanager
    def full_disk(self, folder: Path) -> Iterator[None]:
        """`folder` (made the user's if missing) is a filesystem with no space left: a tmpfs
        mounted over it and filled, unmounted afterwards."""
        folder.mkdir(parents=True, exist_ok=True)
        os.chown(folder, self.uid, self.gid)
        options = f"size=64k,mode=0700,uid={self.uid},gid={self.gid}"
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], check=True)
        try:
            with open(folder / "filler", "wb", buffering=0) as filler, contextlib.suppress(OSError):
                while filler.write(bytes(4096)):  # until ENOSPC
                    pass
            yield
        finally:
            subprocess.run(["umount", "--lazy", str(folder)], check=True)

    def new_host_key(self) -> None:
        self.host_key.unlink(missing_ok=True)
        Path(f"{self.host_key}.pub").unlink(missing_ok=True)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.host_key)], check=True
        )

    def start(self) -> None:
        Path("/run/sshd").mkdir(exist_ok=True)
        subprocess.run(
            [SSHD, "-f", str(self.dir / "sshd_config"), "-E", str(self.dir / "sshd.log")],
            check=True,
        )

        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            except OSError:
                return False

        wait_for(listening, what=f"sshd on port {self.port}")

    @property
    def sshd_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def connection_pids(self) -> list[int]:
        """The per-connection sshd processes (monitor and session) under this host's sshd;
        not the commands they run, so detached runs are left alone."""
        import psutil

        pid = self.sshd_pid
        if not pid:
            return []
        try:
            children = psutil.Process(pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        found = []
        for child in children:
            try:
                if child.name() == "sshd":
                    found.append(child.pid)
            except psutil.NoSuchProcess:
                continue
        return found

    def cut_connections(self) -> int:
        """Kill every open SSH connection to this host (SIGKILL its per-connection sshd)."""
        pids = self.connection_pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return len(pids)

    def stop(self) -> None:
        pid = self.sshd_pid
        if pid:
            for child in self.connection_pids():
                _kill(child)
            _kill(pid)
        self.pid_file.unlink(missing_ok=True)

    def processes(self) -> list:
        """Every process running as this host's user."""
        import psutil

        uid = pwd.getpwnam(self.user).pw_uid
        found = []
        for proc in psutil.process_iter(["uids", "cmdline", "status"]):
            try:
                # Zombies are gone already (this machine's init may never reap them).
                if proc.info["status"] == psutil.STATUS_ZOMBIE:
                    continue
                if proc.info["uids"] and proc.info["uids"].real == uid:
                    found.append(proc)
            except psutil.NoSuchProcess:
                continue
        return found

    def _pids_running(self, module: str) -> list[int]:
        return [p.pid for p in self.processes() if module in (p.info["cmdline"] or [])]

    def worker_pids(self) -> list[int]:
        """The runs' workers (`python -m mllib.worker`) on this host."""
        return self._pids_running("mllib.worker")

    def supervisor_pids(self) -> list[int]:
        """mllib's run supervisors (`python -m mllib_agent.runner supervise`) on this host."""
        return self._pids_running("mllib_agent.runner")

    def destroy(self) -> None:
        self.stop()
        for proc in self.processes():
            _kill(proc.pid)
        # --force: a zombie of the user's (this machine's init may never reap them) would
        # otherwise make userdel refuse; its group and home go too.
        subprocess.run(["userdel", "--force", "--remove", self.user], capture_output=True)


def _retry_on_lock(command: list[str], tries: int = 50) -> None:
    """Run a user/group tool; other test sessions may hold /etc/group's lock for a moment."""
    for _ in range(tries):
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.strip()}")


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass
class Lab:
    base: Path
    key: Path
    hosts: list[Host]

    @classmethod
    def create(cls, count: int = 2) -> Lab:
        base = Path(tempfile.mkdtemp(prefix="mllib-agents-", dir="/tmp"))
        os.chmod(base, 0o755)
        lab = cls(base, base / "client_key", [])
        try:
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(lab.key)], check=True
            )
            public = Path(f"{lab.key}.pub").read_text()
            tag = secrets.token_hex(3)
            for i in range(count):
                host = Host(base, i, f"mlt{tag}h{i}")
                lab.hosts.append(host)
                host.create(public)
                host.use_package_sources()
                host.start()
        except BaseException:
            lab.close()
            raise
        return lab

    def spec_args(self, host: Host) -> dict:
        return {"host": "127.0.0.1", "port": host.port, "user": host.user, "key": str(self.key)}

    def close(self) -> None:
        """Remove everything the lab made, and say so loudly if anything is left behind."""
        for host in self.hosts:
            host.destroy()
        shutil.rmtree(self.base, ignore_errors=True)
        left = []
        for host in self.hosts:
            try:
                pwd.getpwnam(host.user)
                left.append(f"user {host.user}")
            except KeyError:
                pass
        if self.base.exists():
            left.append(str(self.base))
        if left:
            raise RuntimeError(f"the SSH test lab left behind: {', '.join(left)}")
