"""Talking to the agent program: one `mllib_agent serve` process per connection, JSON lines.

>>> with open_agent(spec) as agent:  # doctest: +SKIP
...     agent.call("info")["gpus"]
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from mllib.agents import install
from mllib.agents.config import AgentSpec
from mllib.agents.connection import AgentUnreachable, Connection, connect
from mllib.agents.hostkeys import Confirm
from mllib.errors import MllibError

CALL_TIMEOUT_S = 60.0
EXIT_STATUS_WAIT_S = 5.0


class AgentError(MllibError):
    """The agent answered a request with an error."""

    def __init__(self, agent: str, method: str, error: dict[str, Any]) -> None:
        super().__init__(
            f"Agent {agent}: {method} failed: {error.get('type')}: {error.get('message')}"
        )
        self.error = error


class AgentBroken(AgentUnreachable):
    """The host answers over SSH, but the agent program there exits instead of serving (a broken
    install, a full disk). Following a run treats it as unreachable; placement as a failure."""


class AgentClient:
    """A connection plus the agent program serving requests on one of its channels."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.spec = conn.spec
        root = install.agent_root(conn)
        self.root = root
        self._chan = conn.open_channel(
            [install.venv_python(conn), "-m", "mllib_agent", "serve", "--root", root]
        )
        self._chan.settimeout(CALL_TIMEOUT_S)
        self._in = self._chan.makefile("rb")
        self._out = self._chan.makefile_stdin("wb")
        self._ids = itertools.count(1)
        self.hello = self._read_line("starting the agent")

    def _read_line(self, doing: str) -> dict[str, Any]:
        try:
            line = self._in.readline()
        except (TimeoutError, OSError, EOFError) as exc:
            raise AgentUnreachable(
                f"Agent {self.spec.name} stopped answering ({doing}): {exc}"
            ) from exc
        if not line:
            # The exit status (or the channel's close, when the connection died) follows EOF.
            self._chan.status_event.wait(EXIT_STATUS_WAIT_S)
            err = b""
            while self._chan.recv_stderr_ready():
                err += self._chan.recv_stderr(65536)
            detail = err.decode(errors="replace").strip()
            if self._chan.exit_status != -1:  # the connection is fine; the program ended
                last = detail.splitlines()[-1] if detail else "no output"
                raise AgentBroken(
                    f"Agent {self.spec.name}: its agent program exited with status "
                    f"{self._chan.exit_status} ({doing}): {last}",
                    hint=detail[-1500:] or None,
                )
            raise AgentUnreachable(
                f"Agent {self.spec.name} closed the connection ({doing})",
                hint=detail[-1500:] or None,
            )
        return json.loads(line)

    def call(self, method: str, *, timeout: float = CALL_TIMEOUT_S, **params: Any) -> Any:
        request_id = next(self._ids)
        self._chan.settimeout(timeout)
        try:
            self._out.write(
                json.dumps({"id": request_id, "method": method, "params": params}) + "\n"
            )
            self._out.flush()
        except (OSError, EOFError) as exc:
            raise AgentUnreachable(f"Agent {self.spec.name}: the connection broke: {exc}") from exc
        answer = self._read_line(method)
        if "error" in answer:
            raise AgentError(self.spec.name, method, answer["error"])
        return answer["result"]

    def close(self) -> None:
        try:
            self._chan.close()
        finally:
            self.conn.close()

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_agent(
    spec: AgentSpec,
    *,
    trust_host_key: bool = False,
    confirm: Confirm | None = None,
    install_if_needed: bool = True,
) -> AgentClient:
    """Connect, update the agent program if its version differs, and start it on a channel."""
    conn = connect(spec, trust_host_key=trust_host_key, confirm=confirm)
    try:
        if install_if_needed:
            install.ensure_installed(conn)
        return AgentClient(conn)
    except BaseException:
        conn.close()
        raise
