"""Frames encoded once, written to many sockets.

A server's WebSocket frames are not masked, so one `updates` frame is the same bytes for
every subscriber. uvicorn's protocol encodes and writes each message separately, through
the ASGI send chain and a task per socket; with 1,000 viewers that costs more than the
rest of the server. `FrameWriterProtocol` is uvicorn's WebSocket protocol plus one ASGI
extension, `ducksheet.write_frame`: a plain function that writes a `Wire` message's
frame straight to the transport, or returns False when it cannot right now (the socket
is paused by flow control or closing), so the caller queues the message for the
ordinary ASGI send instead.

permessage-deflate is negotiated without server context takeover (RFC 7692 §7.1.1.1
lets the server decide that alone): every message is compressed on its own, so one
compressed frame fits every socket with the same window size and a message is
compressed once for all its sockets, not once per socket. Small messages go
uncompressed (a frame without RSV1), as the extension allows.
"""

from __future__ import annotations

import logging
import struct
import zlib
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.extensions.base import Extension
from websockets.extensions.permessage_deflate import (
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
)
from websockets.protocol import State

log = logging.getLogger("ducksheet.ws")
EXTENSION = "ducksheet.write_frame"
COMPRESS_FROM = 256  # bytes of text; below this compressing saves next to nothing
COMPRESS_LEVEL = 1  # a 1.4 MB paste frame: 7 ms to 13 %; level 6 takes 15-20 ms to 11 %
_TEXT, _COMPRESSED = 0x81, 0x40  # FIN + text opcode; RSV1 marks a compressed message
_SYNC_TAIL = b"\x00\x00\xff\xff"  # what a sync flush ends with; the extension drops it
DEFLATE = ServerPerMessageDeflateFactory(
    server_no_context_takeover=True,
    client_max_window_bits=12,  # as uvicorn: bounds the inflater's memory per socket
    compress_settings={"level": COMPRESS_LEVEL},
)


def server_frame(payload: bytes, first_byte: int = _TEXT) -> bytes:
    """One unmasked, final frame carrying `payload`, as written by a server."""
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", first_byte, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", first_byte, 126, size)
    else:
        header = struct.pack("!BBQ", first_byte, 127, size)
    return header + payload


def text_frame(text: str | bytes) -> bytes:
    """One unmasked, final, uncompressed text frame carrying `text` (or its UTF-8 bytes)."""
    return server_frame(text.encode() if isinstance(text, str) else text)


class Wire:
    """One text message as frames, each encoded once however many sockets get it:
    plain, and compressed per window size (in practice one: the default, 15 bits)."""

    __slots__ = ("_deflated", "_plain", "text")

    def __init__(self, text: bytes) -> None:
        self.text = text
        self._plain: bytes | None = None
        self._deflated: dict[int, bytes] = {}

    def plain(self) -> bytes:
        if self._plain is None:
            self._plain = text_frame(self.text)
        return self._plain

    def deflated(self, window_bits: int) -> bytes:
        """The frame for a socket with permessage-deflate and no server context
        takeover, compressed with a window of `window_bits`."""
        if len(self.text) < COMPRESS_FROM:
            return self.plain()
        found = self._deflated.get(window_bits)
        if found is None:
            encoder = zlib.compressobj(COMPRESS_LEVEL, zlib.DEFLATED, -window_bits)
            data = encoder.compress(self.text) + encoder.flush(zlib.Z_SYNC_FLUSH)
            assert data.endswith(_SYNC_TAIL)
            found = self._deflated[window_bits] = server_frame(data[:-4], _TEXT | _COMPRESSED)
        return found


WriteFrame = Callable[[Wire], bool]


def shared_window_bits(extensions: list[Extension]) -> int | None:
    """The window size a socket's compressed frames use when a `Wire` frame fits it
    (permessage-deflate without context takeover, alone); None when none does."""
    if len(extensions) != 1 or not isinstance(extensions[0], PerMessageDeflate):
        return None
    deflate = extensions[0]
    return deflate.local_max_window_bits if deflate.local_no_context_takeover else None


class FrameWriterProtocol(WebSocketsSansIOProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.config.ws_per_message_deflate:
            self.conn.available_extensions = [DEFLATE]

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

    def write_frame(self, wire: Wire) -> bool:
        """Write the message's frame now; False when it must wait (or this socket's
        extensions need a frame of their own), so that the caller's ordinary send keeps
        the order."""
        try:
            ready = (
                self.writable.is_set()
                and not (self.close_sent or self.transport.is_closing())
                and self.conn.state is State.OPEN
            )
            extensions = self.conn.extensions
        except AttributeError:  # an uvicorn whose protocol differs: the ASGI path it is
            return False
        if not ready:
            return False
        if not extensions:
            self.transport.write(wire.plain())
            return True
        window_bits = shared_window_bits(extensions)
        if window_bits is None:
            return False
        self.transport.write(wire.deflated(window_bits))
        return True
