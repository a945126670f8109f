"""A load-generator WebSocket as lean as a client can be.

With 1,000 viewers on the same two cores as the server, a full client library per
socket (a parser coroutine, a message queue and a reading task) costs the load
generator more CPU than the server spends sending, and the latency it reports is then
mostly its own. `LeanSocket` parses frames straight from `data_received` and hands each
text message to a callback with the time its last byte arrived. It answers pings and
close frames, and inflates permessage-deflate when the server accepts it (offered as a
browser would offer it). Of the messages that start with `head_of` (the bench reads an
`updates` frame's type and seq) it inflates no more than their head when the server
compresses every message on its own (`server_no_context_takeover`): inflating all of
1,000 viewers' frames on the server's two cores is client work that a browser does on
its own machine, as is the JSON parse no lean socket does either.

A large frame's payload is kept as the chunks it arrives in and joined once: appending
megabytes to the buffer and slicing them out again cost ~4 ms a 1.4 MB frame, so ten
sockets of one load process received a paste's frame 40 ms apart.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
import zlib
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import orjson

OP_TEXT, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x8, 0x9, 0xA
DEFLATE_TAIL = b"\x00\x00\xff\xff"  # removed by the sender of each compressed message
LARGE_FRAME = 1 << 16  # payloads from this size on are collected in chunks
HEAD = 96  # inflated bytes enough for a message's type and seq
OnText = Callable[[bytes, float, int], None]  # message (or its head), arrival, wire size


class HandshakeError(RuntimeError):
    pass


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A final, masked frame (clients must mask)."""
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = bytes([0x80 | opcode, 0x80 | length])
    elif length < 1 << 16:
        header = bytes([0x80 | opcode, 0x80 | 126]) + length.to_bytes(2, "big")
    else:
        header = bytes([0x80 | opcode, 0x80 | 127]) + length.to_bytes(8, "big")
    key = (mask * (length // 4 + 1))[:length]
    masked = int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")
    return header + mask + masked.to_bytes(length, "big")


class LeanSocket(asyncio.Protocol):
    def __init__(
        self,
        name: str,
        since: str | None,
        deflate: bool,
        on_text: OnText,
        head_of: bytes | None = None,
    ) -> None:
        self.name = name
        self.since = since
        self.offer_deflate = deflate
        self.on_text = on_text  # each message after the greeting (see OnText)
        self.head_of = head_of  # of messages starting so on_text needs the first HEAD bytes
        self.close_code: int | None = None
        # the message that ended the greeting: `welcome` (with `since`) or the snapshot
        self.greeted: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._large: tuple[int, list[bytes]] | None = None  # a large frame's first byte, chunks
        self._missing = 0  # bytes of the large frame still to come
        self._handshake_done = False
        self._inflate: zlib._Decompress | None = None
        self._independent = False  # the server compresses each message on its own
        self._key = base64.b64encode(os.urandom(16))

    @classmethod
    async def open(
        cls,
        url: str,
        name: str,
        since: str | None,
        deflate: bool,
        on_text: OnText,
        head_of: bytes | None = None,
    ) -> LeanSocket:
        """Connect, say hello, and return once greeted: with `since` at `welcome`,
        without it at the snapshot."""
        parts = urlsplit(url)
        sock = cls(name, since, deflate, on_text, head_of)
        loop = asyncio.get_running_loop()
        await loop.create_connection(lambda: sock, parts.hostname, parts.port)
        assert sock._transport is not None
        sock._transport.write(sock._request(parts.hostname or "", parts.port, parts.path))
        await asyncio.wait_for(asyncio.shield(sock.greeted), 60)
        return sock

    def send_text(self, data: bytes) -> None:
        self._send(OP_TEXT, data)

    def send_frame(self, frame: bytes) -> None:
        """Write a frame made beforehand with `client_frame`."""
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(frame)

    async def close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._send(OP_CLOSE, (1000).to_bytes(2, "big"))
            self._transport.close()

    def _request(self, host: str, port: int | None, path: str) -> bytes:
        lines = [
            f"GET {path or '/'} HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {self._key.decode()}",
            "Sec-WebSocket-Version: 13",
        ]
        if self.offer_deflate:
            lines.append("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's TCP transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.greeted.done():
            self.greeted.set_exception(HandshakeError(f"closed before the greeting: {exc}"))
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        if self._missing:
            data = self._collect(data, now)
            if not data:
                return
        self._buffer += data
        if not self._handshake_done and not self._read_handshake():
            return
        self._read_frames(now)

    # -- parsing -----------------------------------------------------------------------

    def _read_handshake(self) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self._buffer[:end]).decode("latin-1").lower()
        del self._buffer[: end + 4]
        if not head.startswith("http/1.1 101"):
            self._fail(HandshakeError(head.splitlines()[0]))
            return False
        self._handshake_done = True
        if "permessage-deflate" in head:
            self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
            self._independent = "server_no_context_takeover" in head
        self.send_text(orjson.dumps({"type": "hello", "name": self.name, "since": self.since}))
        return True

    def _read_frames(self, now: float) -> None:
        buffer = self._buffer
        while len(buffer) >= 2:
            first, length, offset = buffer[0], buffer[1] & 0x7F, 2
            if length == 126:
                if len(buffer) < 4:
                    return
                length, offset = int.from_bytes(buffer[2:4], "big"), 4
            elif length == 127:
                if len(buffer) < 10:
                    return
                length, offset = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < offset + length:
                if length >= LARGE_FRAME:
                    self._large = (first, [bytes(buffer[offset:])])
                    self._missing = offset + length - len(buffer)
                    buffer.clear()
                return
            payload = bytes(buffer[offset : offset + length])
            del buffer[: offset + length]
            self._message(first, payload, now)

    def _collect(self, data: bytes, now: float) -> bytes:
        """Take the large frame's next chunk from `data`; what follows that frame."""
        assert self._large is not None
        first, chunks = self._large
        if len(data) < self._missing:
            chunks.append(data)
            self._missing -= len(data)
            return b""
        chunks.append(data[: self._missing])
        rest = data[self._missing :]
        self._large, self._missing = None, 0
        self._message(first, b"".join(chunks), now)
        return rest

    def _message(self, first: int, payload: bytes, now: float) -> None:
        size = len(payload)
        if first & 0x40 and self._inflate is not None:  # RSV1: a compressed message
            if self.head_of is not None and self._independent and self.greeted.done():
                payload = self._inflated_head(payload)
            else:
                payload = self._inflate.decompress(payload + DEFLATE_TAIL)
        self._frame(first & 0x0F, payload, now, size)

    def _inflated_head(self, payload: bytes) -> bytes:
        """A message compressed on its own: its head when that starts with `head_of`,
        else all of it."""
        assert self.head_of is not None
        inflate = zlib.decompressobj(-zlib.MAX_WBITS)
        head = inflate.decompress(payload, HEAD)
        if head.startswith(self.head_of):
            return head
        return head + inflate.decompress(inflate.unconsumed_tail + DEFLATE_TAIL)

    def _frame(self, opcode: int, payload: bytes, now: float, size: int) -> None:
        if opcode == OP_TEXT:
            if self.greeted.done():
                self.on_text(payload, now, size)
            else:
                self._greeting(orjson.loads(payload))
        elif opcode == OP_PING:
            self._send(OP_PONG, payload)
        elif opcode == OP_CLOSE:
            self.close_code = int.from_bytes(payload[:2], "big") if payload else None
            self._send(OP_CLOSE, payload[:2])
            assert self._transport is not None
            self._transport.close()

    def _greeting(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "snapshot" or (kind == "welcome" and self.since):
            self.greeted.set_result(message)
        elif kind == "error":
            self._fail(HandshakeError(f"hello refused: {message}"))

    def _send(self, opcode: int, payload: bytes) -> None:
        self.send_frame(client_frame(opcode, payload))

    def _fail(self, error: Exception) -> None:
        if not self.greeted.done():
            self.greeted.set_exception(error)
        if self._transport is not None:
            self._transport.close()
