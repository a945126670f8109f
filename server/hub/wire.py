"""Frames encoded once, written to many sockets.

A server's WebSocket frames are not masked, so one `updates` frame is the same bytes for
every subscriber. uvicorn's protocol encodes and writes each message separately, through
the ASGI send chain and a task per socket; with 1,000 viewers that costs more than the
rest of the server. `FrameWriterProtocol` is uvicorn's WebSocket protocol plus one ASGI
extension, `ducksheet.write_frame`: a plain function that writes already encoded frame
bytes straight to the transport, or returns False when it cannot right now (the socket
is paused by flow control, closing, or compresses its frames), so the caller queues the
message for the ordinary ASGI send instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State

log = logging.getLogger("ducksheet.ws")
EXTENSION = "ducksheet.write_frame"
WriteFrame = Callable[[bytes], bool]


def text_frame(text: str | bytes) -> bytes:
    """One unmasked, final text frame carrying `text` (or its UTF-8 bytes), as written by
    a server."""
    data = text.encode() if isinstance(text, str) else text
    return Frame(Opcode.TEXT, data).serialize(mask=False)


class FrameWriterProtocol(WebSocketsSansIOProtocol):
    async def run_asgi(self) -> None:
        self.scope["extensions"][EXTENSION] = self.write_frame
        await super().run_asgi()

    def send_receive_event_to_app(self) -> None:
        """A text message that is not UTF-8 is a client's mistake: close with 1007 and
        log one line (uvicorn logs a traceback for each)."""
        if self.curr_msg_data_type == "text" and not self.close_sent:
            try:
                b"".join(self.frames).decode()
            except UnicodeDecodeError:
                self.frames = []
                log.info("closing a WebSocket: its text frame is not UTF-8 (1007)")
                self.conn.send_close(1007, "text frames must be UTF-8")
                self.handle_parser_exception()
                return
        super().send_receive_event_to_app()

    def write_frame(self, frame: bytes) -> bool:
        """Write an encoded frame now; False when it must wait (or cannot be sent raw),
        so that the caller's ordinary send keeps the order."""
        try:
            ready = (
                self.writable.is_set()
                and not (self.close_sent or self.transport.is_closing())
                and self.conn.state is State.OPEN
                and not self.conn.extensions  # permessage-deflate: compressed per socket
            )
        except AttributeError:  # an uvicorn whose protocol differs: the ASGI path it is
            return False
        if ready:
            self.transport.write(frame)
        return ready
