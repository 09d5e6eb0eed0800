"""Exact, live figures of one server of a deployment, in a file both sides map into memory: the
server's HTTP processes write (each its own block, so no lock is needed: one writer per cell),
the deployment's controller reads them every tick to decide scaling and to judge a canary, and
writes back how many processes it wants and the routes' generation. Nothing is pushed or
scraped: an in-flight count is exact the moment it is read.

Per HTTP process: its pid, its state (loading, ready, draining), its open client connections,
and per target slot (slot 0: the predictions it makes itself; others: the replicas the routes
name, which it forwards to) the requests in flight, answered, failed (5xx, or no answer), for a
shadow the answers compared with the live one and how many differed, and a latency histogram
(LATENCY_BUCKETS). The header holds the routes' generation (bumped by the controller after it
rewrote routes.json; processes reload routes when it changes) and the wanted process count.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "counters"
>>> made = Counters.create(path, processes=2, slots=4)
>>> mine = Counters.open(path).process(1)
>>> mine.begin(3); mine.end(3, 200, 0.004)
>>> Counters.open(path).totals(3).requests
1
"""

from __future__ import annotations

import bisect
import ctypes
import mmap
import os
from dataclasses import dataclass
from pathlib import Path

COUNTERS_FILE = "counters"
LOCAL = 0  # the slot of a process's own predictions
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)  # fmt: skip  (upper bounds in seconds; one more bucket holds the rest)
_MAGIC = 0x6D6C6C6962637432  # "mllibct2"
_HEADER = 8  # magic, processes, slots, row, generation, desired, 2 spare
GENERATION, DESIRED = 4, 5
# A process's own cells, then its rows (one per slot).
PID, STATE, CONNECTIONS, REBALANCE = range(4)
PROCESS_CELLS = 8
IN_FLIGHT, REQUESTS, ERRORS, COMPARED, DIFFERED, BUCKETS = range(6)
ROW = BUCKETS + len(LATENCY_BUCKETS) + 1
# Process states.
EMPTY, LOADING, READY, DRAINING = 0, 1, 2, 3
STATE_NAMES = {EMPTY: "empty", LOADING: "loading", READY: "ready", DRAINING: "draining"}


@dataclass(frozen=True)
class Totals:
    """One slot's figures, summed over processes."""

    in_flight: int
    requests: int
    errors: int
    compared: int
    differed: int
    buckets: tuple[int, ...]  # per bucket (not cumulative), len(LATENCY_BUCKETS) + 1

    def minus(self, earlier: Totals) -> Totals:
        """What happened between `earlier` and this reading (in_flight is this reading's)."""
        return Totals(
            self.in_flight,
            self.requests - earlier.requests,
            self.errors - earlier.errors,
            self.compared - earlier.compared,
            self.differed - earlier.differed,
            tuple(a - b for a, b in zip(self.buckets, earlier.buckets, strict=True)),
        )

    def plus(self, other: Totals) -> Totals:
        return Totals(
            self.in_flight + other.in_flight,
            self.requests + other.requests,
            self.errors + other.errors,
            self.compared + other.compared,
            self.differed + other.differed,
            tuple(a + b for a, b in zip(self.buckets, other.buckets, strict=True)),
        )


ZERO = Totals(0, 0, 0, 0, 0, (0,) * (len(LATENCY_BUCKETS) + 1))


def quantile(q: float, buckets: tuple[int, ...]) -> float | None:
    """The q-quantile in seconds of a (non-cumulative) histogram, interpolated within its bucket
    as Prometheus does; None without observations."""
    total = sum(buckets)
    if total <= 0:
        return None
    rank = q * total
    seen, lower = 0, 0.0
    for upper, count in zip((*LATENCY_BUCKETS, float("inf")), buckets, strict=True):
        if count and seen + count >= rank:
            if upper == float("inf"):
                return lower
            return lower + (upper - lower) * (rank - seen) / count
        seen += count
        lower = upper
    return lower


@dataclass(frozen=True)
class ProcessInfo:
    index: int
    pid: int
    state: str
    connections: int


class Counters:
    """The shared file: made by the controller, written by a server's processes, read by both."""

    def __init__(self, mm: mmap.mmap) -> None:
        self._mm = mm
        header = (ctypes.c_int64 * _HEADER).from_buffer(mm)
        if header[0] != _MAGIC:
            raise ValueError("not a counters file of this mllib version")
        self._header = header
        self.processes, self.slots = header[1], header[2]
        self.block = PROCESS_CELLS + self.slots * ROW
        self._cells = (ctypes.c_int64 * (self.processes * self.block)).from_buffer(mm, _HEADER * 8)

    @classmethod
    def create(cls, path: Path, *, processes: int, slots: int) -> Counters:
        size = (_HEADER + processes * (PROCESS_CELLS + slots * ROW)) * 8
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.ftruncate(fd, size)
            mm = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        header = (ctypes.c_int64 * _HEADER).from_buffer(mm)
        header[0], header[1], header[2], header[3] = _MAGIC, processes, slots, ROW
        del header
        os.replace(tmp, path)
        return cls(mm)

    @classmethod
    def open(cls, path: Path) -> Counters:
        fd = os.open(path, os.O_RDWR)
        try:
            mm = mmap.mmap(fd, os.fstat(fd).st_size)
        finally:
            os.close(fd)
        return cls(mm)

    @property
    def generation(self) -> int:
        """The routes' generation (the controller bumps it after writing routes.json)."""
        return self._header[GENERATION]

    @generation.setter
    def generation(self, value: int) -> None:
        self._header[GENERATION] = value

    @property
    def desired(self) -> int:
        """How many HTTP processes the controller wants the server to run (0: as started)."""
        return self._header[DESIRED]

    @desired.setter
    def desired(self, value: int) -> None:
        self._header[DESIRED] = value

    def process(self, index: int) -> ProcessCounters:
        """What HTTP process `index` writes through."""
        if not 0 <= index < self.processes:
            raise ValueError(f"process {index} is outside the counters' {self.processes}")
        return ProcessCounters(self, index)

    def info(self, index: int) -> ProcessInfo:
        base = index * self.block
        cells = self._cells
        return ProcessInfo(
            index, cells[base + PID], STATE_NAMES.get(cells[base + STATE], "empty"),
            cells[base + CONNECTIONS],
        )  # fmt: skip

    def infos(self) -> list[ProcessInfo]:
        """Every process block in use."""
        return [info for info in map(self.info, range(self.processes)) if info.state != "empty"]

    def totals(self, slot: int) -> Totals:
        """Slot `slot`'s figures over every process."""
        cells = self._cells
        sums = [0] * ROW
        for p in range(self.processes):
            base = p * self.block + PROCESS_CELLS + slot * ROW
            row = cells[base : base + ROW]
            for i in range(ROW):
                sums[i] += row[i]
        return Totals(sums[0], sums[1], sums[2], sums[3], sums[4], tuple(sums[BUCKETS:]))

    def process_totals(self, index: int, slot: int) -> Totals:
        base = index * self.block + PROCESS_CELLS + slot * ROW
        row = self._cells[base : base + ROW]
        return Totals(row[0], row[1], row[2], row[3], row[4], tuple(row[BUCKETS:]))

    def in_flight(self, slot: int) -> int:
        """Requests in flight to `slot` from every process."""
        cells, block = self._cells, self.block
        at = PROCESS_CELLS + slot * ROW + IN_FLIGHT
        return sum(cells[p * block + at] for p in range(self.processes))

    def in_flight_of(self, index: int) -> int:
        """Requests in flight in process `index`, to every slot."""
        base = index * self.block + PROCESS_CELLS
        cells = self._cells
        return sum(cells[base + s * ROW + IN_FLIGHT] for s in range(self.slots))


class ProcessCounters:
    """One process's block: begin() when a request goes to a slot, end() when it is answered.
    Single writer per cell: plain reads and writes of aligned 64-bit integers."""

    def __init__(self, counters: Counters, index: int) -> None:
        self.counters = counters
        self.index = index
        self._cells = counters._cells
        self._own = index * counters.block
        self._base = self._own + PROCESS_CELLS

    def claim(self, pid: int, state: int) -> None:
        """This process (pid) now holds the block: nothing of a predecessor's is in flight."""
        cells, base = self._cells, self._base
        for slot in range(self.counters.slots):
            cells[base + slot * ROW + IN_FLIGHT] = 0
        cells[self._own + CONNECTIONS] = 0
        cells[self._own + REBALANCE] = 0
        cells[self._own + PID] = pid
        cells[self._own + STATE] = state

    def set_state(self, state: int) -> None:
        self._cells[self._own + STATE] = state

    @property
    def state(self) -> int:
        return self._cells[self._own + STATE]

    def connection(self, delta: int) -> None:
        self._cells[self._own + CONNECTIONS] += delta

    def begin(self, slot: int) -> None:
        self._cells[self._base + slot * ROW + IN_FLIGHT] += 1

    def end(self, slot: int, status: int, seconds: float) -> None:
        cells, at = self._cells, self._base + slot * ROW
        cells[at + IN_FLIGHT] -= 1
        cells[at + REQUESTS] += 1
        if status >= 500:
            cells[at + ERRORS] += 1
        cells[at + BUCKETS + bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1

    def compared(self, slot: int, differed: bool) -> None:
        at = self._base + slot * ROW
        self._cells[at + COMPARED] += 1
        if differed:
            self._cells[at + DIFFERED] += 1

    def in_flight(self, slot: int) -> int:
        """Requests in flight to `slot` from every process (for least-loaded routing)."""
        return self.counters.in_flight(slot)
