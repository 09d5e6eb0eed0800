"""How a deployment splits traffic: routes.json, written whole (then renamed) by the deployment's
controller, read by every HTTP process of its stable server when the generation in its counters
says it changed.

A deployment serves one or two variants: `stable`, and during a rollout a candidate, `canary`
(a share of requests, by chance or sticky by key or header for an A/B test) or `shadow` (a copy
of a share of requests, whose answers are compared and thrown away). The stable server's own
processes are stable's replicas here; the routes list the replicas reached over a link: the
candidate's processes, and stable replicas on other hosts.

>>> parse_address("unix:@mllib-d1-s1-0"), parse_address("tcp:10.0.0.2:9100")
(('unix', '\\x00mllib-d1-s1-0'), ('tcp', ('10.0.0.2', 9100)))
>>> routes = Routes(1, (Variant("canary", "3", 10.0, (Replica("s2.0", 1, "unix:@s2-0"),)),))
>>> routes.variant("canary").live[0].id
's2.0'
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

STABLE, CANARY, SHADOW = "stable", "canary", "shadow"
VARIANTS = (STABLE, CANARY, SHADOW)
ROUTES_FILE = "routes.json"
VARIANT_HEADER = b"x-mllib-variant"  # an admin key may force a variant with it (debugging)


@dataclass(frozen=True)
class Replica:
    """One replica another server's process reaches over a link: an HTTP process of a
    candidate's server, or a server on another host."""

    id: str
    slot: int  # its row in the senders' counters
    address: str  # "unix:@name" or "tcp:host:port" (see link.py)
    token: str = ""  # the link's shared secret, checked when a connection opens
    processes: int = 1  # how many processes answer on it (its load is shared among them)
    draining: bool = False  # no new requests; it is stopped once its in-flight ones finish
    host: str = "local"  # where it runs: local, or an agent's name


@dataclass(frozen=True)
class Variant:
    name: str  # stable, canary or shadow
    version: str  # the `version` label of its metrics and logs
    weight: float  # percent of requests (shadow: percent copied to it)
    replicas: tuple[Replica, ...] = ()
    run_id: str = ""

    @property
    def live(self) -> tuple[Replica, ...]:
        """Replicas that take new requests."""
        return tuple(r for r in self.replicas if not r.draining)


@dataclass(frozen=True)
class Routes:
    generation: int
    variants: tuple[Variant, ...] = ()
    sticky_by: str | None = None  # None: a random split; "key", or "header:NAME" (A/B)
    model: str = ""
    draining: bool = False  # the whole deployment is stopping
    extra: dict[str, Any] = field(default_factory=dict)

    def variant(self, name: str) -> Variant | None:
        return next((v for v in self.variants if v.name == name), None)

    def with_generation(self, generation: int) -> Routes:
        return replace(self, generation=generation)

    def write(self, path: Path) -> None:
        """Whole or not at all: a temp file of its own (0600: it holds link tokens), renamed."""
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(asdict(self), handle, sort_keys=True)
        os.replace(tmp, path)

    @classmethod
    def read(cls, path: Path) -> Routes:
        data = json.loads(path.read_text())
        variants = tuple(
            Variant(
                **{k: v for k, v in item.items() if k != "replicas"},
                replicas=tuple(Replica(**r) for r in item["replicas"]),
            )
            for item in data.pop("variants")
        )
        return cls(variants=variants, **data)


def parse_sticky(value: str | None) -> str | None:
    """`key`, `header:NAME` (NAME lower-cased, as HTTP headers compare) or None; ValueError else."""
    if value is None or value == "":
        return None
    if value == "key":
        return "key"
    kind, sep, name = value.partition(":")
    if kind == "header" and sep and name.strip():
        return f"header:{name.strip().lower()}"
    raise ValueError(f"--sticky-by must be 'key' or 'header:NAME', not {value!r}")


def parse_address(address: str) -> tuple[str, Any]:
    """("unix", name) with `@` for the abstract namespace, or ("tcp", (host, port))."""
    kind, _, rest = address.partition(":")
    if kind == "unix" and rest:
        return "unix", "\0" + rest[1:] if rest.startswith("@") else rest
    if kind == "tcp":
        host, _, port = rest.rpartition(":")
        return "tcp", (host.strip("[]"), int(port))
    raise ValueError(f"not a link address: {address!r}")


def process_address(address: str, index: int) -> str:
    """Where HTTP process `index` of a replica whose link is `address` listens: a name of its
    own (unix), or the port after the previous process's (tcp)."""
    kind, where = parse_address(address)
    if kind == "unix":
        return f"{address}-{index}"
    host, port = where
    return f"tcp:{host}:{port + index}"
