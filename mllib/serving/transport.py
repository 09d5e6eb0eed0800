"""How requests reach workers and replies come back, without LitServe's Manager process in the way.

LitServe 0.2.19 passes both through `multiprocessing.Manager` queues: every put and get is a
round trip to the Manager process, four per request, which is most of its per-request cost on a
small model. Here requests go through one `multiprocessing.Queue` (a pipe; puts never block the
event loop) and each API server gets its replies on its own pipe, read by its event loop when
the pipe is readable. Both plug into LitServe where its own queues would be.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import pickle
from typing import Any

# Only server processes import this module, never the CLI's startup path.
from litserve.transport.base import MessageTransport  # noqa: TID253


class PipeTransport(MessageTransport):
    """Replies from workers to API server `consumer_id`, one pipe per API server.

    Workers write whole pickled messages under a per-pipe lock (several workers share a pipe);
    the API server's event loop reads them when the pipe becomes readable.
    """

    def __init__(self, consumers: int) -> None:
        ctx = mp.get_context("spawn")
        self._pipes = [ctx.Pipe(duplex=False) for _ in range(consumers)]
        self._locks = [ctx.Lock() for _ in range(consumers)]
        self._inbox: asyncio.Queue | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"_pipes": self._pipes, "_locks": self._locks, "_inbox": None}

    def send(self, item: Any, consumer_id: int) -> None:
        data = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
        with self._locks[consumer_id]:
            self._pipes[consumer_id][1].send_bytes(data)

    async def areceive(self, consumer_id: int, timeout: float | None = None, block: bool = True):
        if self._inbox is None:
            self._inbox = asyncio.Queue()
            reader = self._pipes[consumer_id][0]
            inbox = self._inbox

            def readable() -> None:
                while reader.poll():
                    inbox.put_nowait(pickle.loads(reader.recv_bytes()))

            asyncio.get_running_loop().add_reader(reader.fileno(), readable)
        return await self._inbox.get()

    def close(self, **kwargs: Any) -> None:
        self._inbox = None


def request_queue() -> Any:
    """The queue API servers put requests on and workers take them from."""
    return mp.get_context("spawn").Queue()
