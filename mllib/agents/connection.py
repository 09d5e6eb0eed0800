"""An SSH connection to an agent, tuned for throughput and for noticing dead peers.

TCP_NODELAY on our own socket, a 64 MiB receive window (downloads), AES-GCM preferred, and
timeouts on connect/banner/auth. Commands run with an absolute interpreter path (shell rc files
may put another python first on PATH).
"""

from __future__ import annotations

import shlex
import socket
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mllib.agents import hostkeys
from mllib.agents.config import AgentSpec
from mllib.errors import RuntimeUnavailableError

if TYPE_CHECKING:
    import paramiko

CONNECT_TIMEOUT_S = 10.0
WINDOW_SIZE = 64 << 20
PREFERRED_CIPHERS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-ctr",
    "aes256-ctr",
)


class AgentUnreachable(RuntimeUnavailableError):
    """The agent host cannot be reached or logged into right now."""


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


class Connection:
    """One SSH session to an agent: run commands, open SFTP, open channels for the agent RPC."""

    def __init__(self, spec: AgentSpec, client: paramiko.SSHClient) -> None:
        self.spec = spec
        self.client = client
        self.transport = client.get_transport()
        self._sftp: paramiko.SFTPClient | None = None
        self._home: str | None = None

    @property
    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            self._sftp = self.client.open_sftp()
        return self._sftp

    @property
    def home(self) -> str:
        """The login user's home directory on the host (absolute)."""
        if self._home is None:
            self._home = self.sftp.normalize(".")
        return self._home

    def run(self, argv: list[str], *, timeout: float = 600.0, stdin: bytes | None = None) -> Result:
        """Run a command (argv, quoted for the remote shell) and wait for it."""
        chan = self.transport.open_session(timeout=CONNECT_TIMEOUT_S)
        chan.settimeout(timeout)
        chan.exec_command(shlex.join(argv))
        if stdin is not None:
            chan.sendall(stdin)
        chan.shutdown_write()
        err: list[bytes] = []  # read stderr alongside, so a chatty command never blocks on it
        reader = threading.Thread(target=lambda: err.append(chan.makefile_stderr("rb").read()))
        reader.start()
        out = chan.makefile("rb").read()
        reader.join()
        code = chan.recv_exit_status()
        chan.close()
        return Result(code, out.decode(errors="replace"), b"".join(err).decode(errors="replace"))

    def open_channel(self, argv: list[str]) -> paramiko.Channel:
        chan = self.transport.open_session(timeout=CONNECT_TIMEOUT_S)
        chan.exec_command(shlex.join(argv))
        return chan

    @property
    def alive(self) -> bool:
        return self.transport is not None and self.transport.is_active()

    def close(self) -> None:
        try:
            if self._sftp is not None:
                self._sftp.close()
        finally:
            self.client.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(
    spec: AgentSpec,
    *,
    trust_host_key: bool = False,
    confirm: hostkeys.Confirm | None = None,
    timeout: float = CONNECT_TIMEOUT_S,
) -> Connection:
    """Log into the agent; unknown host keys need trust (or confirm), changed ones are refused."""
    import paramiko

    client = paramiko.SSHClient()
    hostkeys.load_into(client)
    client.set_missing_host_key_policy(
        hostkeys.policy(spec.name, trust=trust_host_key, confirm=confirm)
    )
    try:
        sock = socket.create_connection((spec.host, spec.port), timeout=timeout)
    except OSError as exc:
        raise AgentUnreachable(
            f"Cannot reach agent {spec.name} at {spec.host}:{spec.port}: {exc.strerror or exc}",
            hint="Check that the host is up and sshd listens on that port "
            f"(`mllib agents check {spec.name}`).",
        ) from exc
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)

    def transport_factory(s, **kwargs):
        transport = paramiko.Transport(s, default_window_size=WINDOW_SIZE, **kwargs)
        options = transport.get_security_options()
        available = options.ciphers
        options.ciphers = tuple(c for c in PREFERRED_CIPHERS if c in available) + tuple(
            c for c in available if c not in PREFERRED_CIPHERS
        )
        return transport

    try:
        client.connect(
            spec.host,
            port=spec.port,
            username=spec.user,
            key_filename=spec.key,
            look_for_keys=spec.key is None,
            allow_agent=spec.key is None,
            sock=sock,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
            transport_factory=transport_factory,
        )
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise hostkeys.changed_key_error(
            spec.name, hostkeys.host_label(spec.host, spec.port), exc
        ) from None
    except paramiko.AuthenticationException as exc:
        client.close()
        raise AgentUnreachable(
            f"Agent {spec.name}: logging in as {spec.user or 'the local user'} failed: {exc}",
            hint="Check --user and --key (the public key must be in the host's authorized_keys).",
        ) from None
    except hostkeys.HostKeyError:
        client.close()
        raise
    except (paramiko.SSHException, OSError, EOFError) as exc:
        client.close()
        raise AgentUnreachable(
            f"Cannot open an SSH session to agent {spec.name} ({spec.address}): {exc}",
            hint=f"Run `mllib agents check {spec.name}`.",
        ) from None
    transport = client.get_transport()
    transport.set_keepalive(15)
    return Connection(spec, client)
