"""The load generator behind `mllib loadtest`: worker processes, each an event loop (uvloop) of
raw keep-alive HTTP/1.1 connections sending one prebuilt request and reading only each answer's
status line and length (httptools, in C, for anything else), so that the client, not the server,
is rarely what is measured. Per answer it keeps a latency in an array and a count by status.
A process costs about what wrk does per request; a second one on the same cores costs more (more
wake-ups, each with less to read), so there is one per four CPU cores.

Two models of load:
- closed (`concurrency`): each connection sends its next request as soon as the last is
  answered; the connections are shared out among the workers.
- open (`rate`, or a ramp `rate_from` → `rate_to` over the duration): requests leave at their
  scheduled times whatever the answers, each on an idle connection (a new one while fewer than
  `max_in_flight` are open); an arrival with every connection busy is `skipped` (counted, not
  sent: in flight stays bounded). Latency counts from the scheduled time, so a server that
  falls behind shows it (no coordinated omission).

Each worker reports its answers by status, every latency, its errors and the CPU time it used:
a client that used all of its CPUs was itself the limit, which `loadtest` says.
"""

from __future__ import annotations

import asyncio
import gc
import math
import multiprocessing as mp
import os
import time
from array import array
from collections import Counter, deque
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Load:
    """What to send, where, how hard and for how long."""

    url: str  # the server's base URL
    body: bytes
    headers: dict[str, str]
    duration_s: float
    concurrency: int = 0  # closed model: connections; 0 with a rate
    rate_from: float = 0.0  # open model: requests/s at the start...
    rate_to: float = 0.0  # ...and at the end (the same: a fixed rate)
    max_in_flight: int = 64  # open model: connections (requests in flight) at most
    timeout_s: float = 10.0

    @property
    def open(self) -> bool:
        return self.rate_to > 0

    def request(self) -> bytes:
        """The request bytes every worker sends, built once."""
        parts = urlsplit(self.url)
        host = parts.netloc
        lines = [
            f"POST {parts.path.rstrip('/')}/predict HTTP/1.1",
            f"Host: {host}",
            "Content-Type: application/json",
            f"Content-Length: {len(self.body)}",
            *(f"{name}: {value}" for name, value in self.headers.items()),
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body

    def arrivals(self, share: float) -> list[float]:
        """Seconds from the start at which this worker's requests leave (its `share` of the
        rate): evenly spaced at the rate of that moment, along a linear ramp."""
        r0, r1, d = self.rate_from * share, self.rate_to * share, self.duration_s
        times, n = [], 1
        while True:
            if r1 == r0:
                t = n / r0
            else:  # r0 t + (r1 - r0) t² / (2d) = n
                a = (r1 - r0) / (2 * d)
                t = (-r0 + math.sqrt(r0 * r0 + 4 * a * n)) / (2 * a)
            if t >= d:
                return times
            times.append(t)
            n += 1


@dataclass
class Tally:
    """What came back to one worker, or to all of them added up."""

    statuses: Counter = field(default_factory=Counter)  # "200", "503", "error:refused", ...
    latencies: array = field(default_factory=lambda: array("d"))  # seconds, answered ones
    errors: int = 0  # non-2xx/3xx answers and failed requests
    skipped: int = 0  # open model: arrivals with every connection busy
    cpu_s: float = 0.0
    wall_s: float = 0.0

    @property
    def requests(self) -> int:
        return len(self.latencies) + sum(
            v for k, v in self.statuses.items() if k.startswith("error:")
        )

    def merge(self, other: Tally) -> None:
        self.statuses.update(other.statuses)
        self.latencies.extend(other.latencies)
        self.errors += other.errors
        self.skipped += other.skipped
        self.cpu_s += other.cpu_s
        self.wall_s = max(self.wall_s, other.wall_s)


class _Connection(asyncio.Protocol):
    """One keep-alive connection: `send` writes the request; each answer is counted by its
    status and latency, and in the closed model the next request leaves at once.

    A whole answer in one read with a `content-length` and no `connection` header (what
    mllib's servers send) is taken from its status line and length alone; anything else
    (split over reads, chunked, closing) goes through httptools' parser (C)."""

    __slots__ = ("client", "closed", "codes", "parser", "pending", "started", "transport")

    def __init__(self, client: _Client) -> None:
        self.client = client
        self.codes = client.codes
        self.parser: Any = None  # httptools' parser, made on the first answer that needs it
        self.pending = False  # an answer is part-way through the parser
        self.transport: Any = None
        self.started = 0.0  # when the request in flight left (0: none in flight)
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        import socket

        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, started: float) -> None:
        self.started = started
        self.transport.write(self.client.request)

    def data_received(self, data: bytes) -> None:
        if not self.pending:
            end = data.find(b"\r\n\r\n")
            at = data.find(b"\r\ncontent-length: ", 0, end)
            if at > 0 and data.find(b"\r\nconnection:", 0, end) < 0:
                stop = data.find(b"\r\n", at + 18)
                started = self.started
                if started and stop > 0 and len(data) == end + 4 + int(data[at + 18 : stop]):
                    now = perf_counter()
                    status = data[9:12]
                    codes = self.codes
                    codes[status] = codes.get(status, 0) + 1
                    client = self.client
                    client.append(now - started)
                    if client.closed_model and now < client.deadline:
                        self.started = now
                        self.transport.write(client.request)
                    else:
                        self.started = 0.0
                        client.idle.append(self)
                    return
        self._parse(data)

    def _parse(self, data: bytes) -> None:
        import httptools

        if self.parser is None:
            self.parser = httptools.HttpResponseParser(self)
        self.pending = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._fail("error:bad_response")
            self.transport.close()

    def on_message_complete(self) -> None:
        self.pending = False
        started, self.started = self.started, 0.0
        status = str(self.parser.get_status_code()).encode()
        if not self.parser.should_keep_alive():
            self.closed = True
            self.transport.close()
        self.client.answered(self, status, started)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.started:
            self._fail("error:connection_lost")
        self.client.lost(self)

    def _fail(self, kind: str) -> None:
        started, self.started = self.started, 0.0
        if started:
            self.client.failed(kind)


class _Client:
    """One worker's connections and what they got back: a latency per answer in an array,
    counts by status; nothing else is kept per request."""

    def __init__(self, load: Load, tally: Tally, progress: Any) -> None:
        self.load = load
        self.request = load.request()
        self.tally = tally
        self.append = tally.latencies.append
        self.codes: dict[bytes, int] = {}  # answers by status, as the status line has it
        self.failures: Counter = Counter()  # "error:refused", ...: no answer
        self.closed_model = not load.open
        self.progress = progress
        self.reported = 0
        self.idle: deque[_Connection] = deque()
        self.open = 0
        self.deadline = 0.0
        self.loop = asyncio.get_running_loop()
        parts = urlsplit(load.url)
        self.address = (parts.hostname or "127.0.0.1", parts.port or 80)

    async def connect(self) -> _Connection | None:
        self.open += 1
        try:
            _, conn = await asyncio.wait_for(
                self.loop.create_connection(lambda: _Connection(self), *self.address),
                self.load.timeout_s,
            )
            return conn  # type: ignore[return-value]
        except (OSError, TimeoutError) as exc:
            self.open -= 1
            self.failed(
                "error:refused" if isinstance(exc, ConnectionRefusedError) else "error:connect"
            )
            return None

    def answered(self, conn: _Connection, status: bytes, started: float) -> None:
        """An answer the parser read (the fast path in data_received does the same inline)."""
        now = perf_counter()
        if started:
            self.codes[status] = self.codes.get(status, 0) + 1
            self.append(now - started)
        if conn.closed:
            return
        if self.closed_model and now < self.deadline:
            conn.send(now)
        else:
            self.idle.append(conn)

    def failed(self, kind: str) -> None:
        self.failures[kind] += 1

    def lost(self, conn: _Connection) -> None:
        self.open -= 1
        try:
            self.idle.remove(conn)
        except ValueError:
            pass
        if self.closed_model and perf_counter() < self.deadline:
            self.loop.create_task(self._replace())  # closed model: keep the concurrency

    async def _replace(self) -> None:
        conn = await self.connect()
        if conn is not None and perf_counter() < self.deadline:
            conn.send(perf_counter())

    def report(self) -> None:
        """Add what was done since the last report to the shared progress count (every
        PROGRESS_S, not per answer)."""
        done = len(self.tally.latencies) + sum(self.failures.values())
        with self.progress.get_lock():
            self.progress.value += done - self.reported
        self.reported = done

    def settle(self) -> None:
        """Move the counts into the tally (statuses as text; errors: no answer, or >= 400)."""
        tally = self.tally
        for status, count in self.codes.items():
            tally.statuses[status.decode("latin-1")] += count
            if not status.isdigit() or int(status) >= 400:
                tally.errors += count
        tally.statuses.update(self.failures)
        tally.errors += sum(self.failures.values())
        self.report()


PROGRESS_S = 0.25


async def _reporting(client: _Client) -> None:
    while True:
        await asyncio.sleep(PROGRESS_S)
        client.report()


async def _closed(client: _Client, connections: int, go: Any) -> None:
    conns = [c for c in await asyncio.gather(*(client.connect() for _ in range(connections))) if c]
    start = await go()
    client.deadline = start + client.load.duration_s
    for conn in conns:
        conn.send(perf_counter())
    await _drain(client)


async def _open(client: _Client, arrivals: list[float], go: Any) -> None:
    load = client.load
    for conn in await asyncio.gather(
        *(client.connect() for _ in range(min(4, load.max_in_flight)))
    ):
        if conn is not None:
            client.idle.append(conn)
    start = await go()
    client.deadline = start + load.duration_s
    pending = deque(start + t for t in arrivals)
    while pending:
        now = perf_counter()
        while pending and pending[0] <= now:
            due = pending.popleft()
            if client.idle:
                client.idle.popleft().send(due)
            elif client.open < load.max_in_flight:
                client.loop.create_task(_send_new(client, due))
            else:
                client.tally.skipped += 1
        if pending:
            await asyncio.sleep(max(0.0, pending[0] - perf_counter()))
    await _drain(client)


async def _send_new(client: _Client, due: float) -> None:
    conn = await client.connect()
    if conn is not None:
        conn.send(due)


async def _drain(client: _Client) -> None:
    """Wait for the answers still due (each at most the request timeout)."""
    give_up = perf_counter() + client.load.duration_s + client.load.timeout_s
    while perf_counter() < max(client.deadline, 0) or client.open > len(client.idle):
        if perf_counter() > give_up:
            client.failures["error:timeout"] += client.open - len(client.idle)
            break
        await asyncio.sleep(0.01)
    client.settle()


def _worker(
    load: Load, share: float, connections: int, gate: Any, start_at: Any, progress: Any, out: Any
) -> None:
    """One worker process: connects, waits at `gate` for the others, then sends its share of
    the load from the wall-clock time `start_at` holds; its Tally goes back on `out`."""
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover (uvloop comes with uvicorn[standard])
        runner = asyncio.run
    tally = Tally()
    began: list[float] = []

    async def go() -> float:
        await asyncio.get_running_loop().run_in_executor(None, gate.wait)
        while not start_at.value:  # the parent sets it once everyone is at the gate
            await asyncio.sleep(0.001)
        start = perf_counter() + (start_at.value - time.time())
        await asyncio.sleep(max(0.0, start - perf_counter()))
        began.extend((start, *os.times()[:2]))
        return start

    async def main() -> None:
        client = _Client(load, tally, progress)
        reporting = asyncio.ensure_future(_reporting(client))
        try:
            if load.open:
                await _open(client, load.arrivals(share), go)
            else:
                await _closed(client, connections, go)
        finally:
            reporting.cancel()

    # Nothing kept per answer makes reference cycles: the collector would only cost time.
    gc.disable()
    runner(main())
    used = os.times()
    start, user, system = began
    tally.cpu_s = (used.user - user) + (used.system - system)
    tally.wall_s = perf_counter() - start
    out.send(
        (
            dict(tally.statuses),
            tally.latencies.tobytes(),
            tally.errors,
            tally.skipped,
            tally.cpu_s,
            tally.wall_s,
        )
    )
    out.close()


CORES_PER_WORKER = 4


def workers_for(load: Load) -> int:
    """Worker processes: one per CORES_PER_WORKER CPU cores (the server under test, often on
    the same machine, needs the rest), no more than connections in the closed model."""
    wanted = max(1, (os.cpu_count() or 1) // CORES_PER_WORKER)
    return max(1, min(wanted, load.concurrency) if not load.open else wanted)


@dataclass
class Generated:
    """What the workers got back, added up, and how busy they were."""

    tally: Tally
    workers: int
    cpu_share: float  # CPU time used / (wall time × workers): 1.0 is every worker's CPU, all along


def run(load: Load, *, workers: int | None = None, on_progress: Any = None) -> Generated:
    """Send `load` from `workers` processes (default: workers_for); what came back."""
    count = workers or workers_for(load)
    ctx = mp.get_context("spawn")  # nothing of this process (threads, a terminal) goes along
    progress = ctx.Value("q", 0)
    start_at = ctx.Value("d", 0.0)
    gate = ctx.Barrier(count + 1)
    pipes, procs = [], []
    for index in range(count):
        connections = load.concurrency // count + (1 if index < load.concurrency % count else 0)
        receive, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(
            target=_worker,
            args=(load, 1.0 / count, connections, gate, start_at, progress, send),
            name=f"mllib-loadgen-{index}",
            daemon=True,
        )
        proc.start()
        send.close()
        pipes.append(receive)
        procs.append(proc)
    total = Tally()
    try:
        gate.wait(timeout=60)  # every worker has connected
        start_at.value = started = time.time() + 0.05
        while any(p.is_alive() for p in procs) and not all(r.poll() for r in pipes):
            if on_progress is not None:
                on_progress(progress.value, max(0.0, time.time() - started))
            time.sleep(0.25)
        for receive, proc in zip(pipes, procs, strict=True):
            if not receive.poll(load.duration_s + load.timeout_s + 30):
                raise RuntimeError(f"load worker {proc.name} sent nothing (exit {proc.exitcode})")
            statuses, latencies, errors, skipped, cpu_s, wall_s = receive.recv()
            part = Tally(Counter(statuses), array("d"), errors, skipped, cpu_s, wall_s)
            part.latencies.frombytes(latencies)
            total.merge(part)
    finally:
        for proc in procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
    if on_progress is not None:
        on_progress(progress.value, load.duration_s)
    wall = max(total.wall_s, 1e-9)
    return Generated(total, count, total.cpu_s / (wall * count))
