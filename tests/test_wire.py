"""The raw frame writer on a real uvicorn server (port 0), with the transport's writes
recorded: frames of one loop turn leave in one write, and nothing overtakes them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
import websockets

from server.wire import EXTENSION, FrameWriterProtocol, text_frame

WRITES: list[bytes] = []  # what the server's protocol handed its transport, in order


class RecordingProtocol(FrameWriterProtocol):
    def connection_made(self, transport: Any) -> None:
        write = transport.write

        def recorded(data: bytes) -> None:
            WRITES.append(bytes(data))
            write(data)

        transport.write = recorded
        super().connection_made(transport)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers "burst": three raw frames in one turn, two more in the next, one through
    ASGI, then a close."""
    assert scope["type"] == "websocket"
    write_frame = scope["extensions"][EXTENSION]
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    await receive()  # "burst"
    assert all(write_frame(text_frame(text)) for text in ("1", "2", "3"))
    await asyncio.sleep(0)
    assert all(write_frame(text_frame(text)) for text in ("4", "5"))
    await send({"type": "websocket.send", "text": "6"})
    await send({"type": "websocket.close", "code": 4000})


@contextlib.asynccontextmanager
async def serving() -> AsyncIterator[str]:
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, ws=RecordingProtocol, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not task.done()
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def test_frames_of_one_turn_leave_in_one_write_and_keep_their_order() -> None:
    WRITES.clear()
    async with serving() as url, websockets.connect(url, compression=None) as client:
        await client.send("burst")
        received = [await client.recv() for _ in range(6)]
        await client.wait_closed()
    assert received == ["1", "2", "3", "4", "5", "6"]
    assert client.close_code == 4000
    frames = [text_frame(text) for text in "12345"]
    data_writes = [w for w in WRITES if w in (b"".join(frames[:3]), b"".join(frames[3:]))]
    assert data_writes == [b"".join(frames[:3]), b"".join(frames[3:])]
