"""One write per response: the head uvicorn writes first is held until the body's write."""

import asyncio

from mllib.serving.server.wire import HeldHeadTransport


class RecordingTransport:
    """The part of an asyncio transport HeldHeadTransport uses, recording each write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default=None):
        return {"peername": ("127.0.0.1", 5000)}.get(name, default)


HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


def test_a_head_and_its_body_go_out_in_one_write():
    async def scenario() -> list[bytes]:
        real = RecordingTransport()
        transport = HeldHeadTransport(real, asyncio.get_running_loop())
        transport.write(HEAD)
        assert real.writes == []
        transport.write(b"{}")
        transport.write(HEAD)
        transport.write(b"[]")
        await asyncio.sleep(0)
        return real.writes

    assert asyncio.run(scenario()) == [HEAD + b"{}", HEAD + b"[]"]


def test_a_head_alone_goes_out_on_the_loops_next_pass_and_before_a_close():
    async def scenario() -> tuple[list[bytes], list[bytes], bool]:
        loop = asyncio.get_running_loop()
        streaming = RecordingTransport()
        transport = HeldHeadTransport(streaming, loop)
        transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await asyncio.sleep(0)
        closing = RecordingTransport()
        transport = HeldHeadTransport(closing, loop)
        transport.write(HEAD)
        transport.close()
        await asyncio.sleep(0)  # the scheduled flush finds nothing left to write
        return streaming.writes, closing.writes, closing.closed

    streamed, closed_writes, closed = asyncio.run(scenario())
    assert streamed == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    assert closed_writes == [HEAD] and closed


def test_everything_else_is_the_real_transports():
    async def scenario() -> object:
        transport = HeldHeadTransport(RecordingTransport(), asyncio.get_running_loop())
        return transport.get_extra_info("peername")

    assert asyncio.run(scenario()) == ("127.0.0.1", 5000)
