"""The WebSocket endpoint: hello, snapshot or replay, edits, and live updates."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from functools import partial
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from protocol.actions import Action
from protocol.codec import dumps, dumps_text, loads
from protocol.errors import ProtocolError
from protocol.messages import (
    Cursor,
    EditManyMessage,
    EditMessage,
    Hello,
    HoldMessage,
    Ping,
    UndoMessage,
    parse_message,
)
from protocol.versions import ACTUAL
from server import metrics
from server.edge.auth import Identity
from server.edge.origins import origin_allowed
from server.edge.rate_limit import RateLimited, TokenBucket
from server.hub.fanout import Subscriber
from server.hub.wire import EXTENSION as WRITE_FRAME
from server.hub.wire import Wire
from server.services import Services
from server.store.streams import REDIS_ERRORS, frames_after

log = logging.getLogger("ducksheet.ws")
HELLO_TIMEOUT = 5.0
REPLAY_LIMIT = 10_000
CLOSE_GOING_AWAY, CLOSE_UNSUPPORTED, CLOSE_POLICY, CLOSE_TRY_AGAIN = 1001, 1003, 1008, 1013
BLOCK_EDITS_PER_TOKEN = 100  # a block edit costs one rate token more per this many edits


class Session:
    def __init__(self, ws: WebSocket, services: Services) -> None:
        self.ws = ws
        self.services = services
        self.user = "anonymous"
        self.identity = Identity("anonymous", "viewer")
        self.version = ACTUAL  # whose snapshot this socket gets (hello's `version`)
        settings = services.settings
        self.rate = TokenBucket(settings.edit_rate, settings.edit_burst)
        self.subscriber = Subscriber(
            settings.send_queue,
            self._too_slow,
            self._reload,
            (ws.scope.get("extensions") or {}).get(WRITE_FRAME),
        )
        self._refs: set[str] = set()

    def send(self, message: dict[str, Any]) -> None:
        self.subscriber.send(Wire(dumps(message)))

    def _too_slow(self) -> None:
        log.info("closing %s: too slow to keep up", self.user)
        asyncio.get_running_loop().create_task(self.close(CLOSE_TRY_AGAIN, "too slow; resume"))

    def _reload(self) -> None:
        """After a bulk change: resync with a fresh snapshot (frames wait meanwhile)."""

        async def resend() -> None:
            state = await self.services.reads.snapshot(self.version)
            self.send({"type": "resync", "seq": state["seq"], "reason": "import"})
            await self._snapshot_and_catch_up(state)

        asyncio.get_running_loop().create_task(resend())

    async def close(self, code: int, reason: str, wait: float | None = None) -> None:
        """Send a close frame. A client that stopped reading gets it once it reads again,
        so only shutdown bounds the wait (seconds)."""
        with contextlib.suppress(RuntimeError, WebSocketDisconnect, TimeoutError):
            await asyncio.wait_for(self.ws.close(code, reason), wait)

    async def run(self) -> None:
        if not self._origin_allowed():
            await self.ws.close(CLOSE_POLICY)  # before accept: the handshake gets a 403
            return
        await self.ws.accept()
        if self.services.closing:  # opened as shutdown began: it would hold the shutdown
            await self.close(CLOSE_GOING_AWAY, "server going away", wait=2.0)
            return
        # Counted from accept, not from hello: sockets waiting to say hello count too.
        if len(self.services.sessions) >= self.services.settings.max_connections:
            await self._refuse(ProtocolError("unavailable", "too many connections; retry later"))
            return
        self.services.sessions.add(self)
        metrics.socket_opened()
        try:
            await self._serve()
        finally:
            self.services.sessions.discard(self)
            metrics.socket_closed()

    async def _serve(self) -> None:
        try:
            hello = await asyncio.wait_for(self._receive_hello(), HELLO_TIMEOUT)
            self.identity = self.services.auth.identify(hello.token, hello.name)
            self.version = hello.version
        except TimeoutError:
            await self.close(CLOSE_POLICY, "hello expected within 5 s")
            return
        except ProtocolError as exc:
            await self._refuse(exc)
            return
        except WebSocketDisconnect:
            return
        self.user = self.identity.name
        hub = self.services.hub
        hub.subscribers.add(self.subscriber)
        metrics.session_started()
        self.member = hub.presence.join(self.user, self.subscriber.send)
        pump = asyncio.create_task(self._pump())
        try:
            await self._greet(hello)
            await self._receive_loop()
        except WebSocketDisconnect:
            pass
        except REDIS_ERRORS as exc:  # the missed updates could not be read
            log.warning("closing %s: redis unavailable (%s)", self.user, exc)
            await self._refuse(ProtocolError("unavailable", "updates are unavailable; retry"))
        except ProtocolError as exc:  # the snapshot could not be read (data process away)
            await self._refuse(exc)
        finally:
            hub.presence.leave(self.member)
            hub.subscribers.discard(self.subscriber)
            metrics.session_ended()
            for ref in self._refs:
                hub.forget(ref)
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump

    def _origin_allowed(self) -> bool:
        """Browsers send Origin: allow the server's own and the configured ones. Clients
        without an Origin (tools, other servers) are not browsers and pass."""
        return origin_allowed(self.ws.headers.get("origin"), self.ws.app.state.origins)

    async def _refuse(self, exc: ProtocolError) -> None:
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await self.ws.send_text(dumps_text({"type": "error", **exc.as_dict()}))
        code = CLOSE_TRY_AGAIN if exc.code == "unavailable" else CLOSE_POLICY
        await self.close(code, exc.code)

    async def _receive_hello(self) -> Hello:
        # any message type parses here, and a first edit may hold a text condition
        message = await self.services.parsed(partial(parse_message, await self._receive()))
        if not isinstance(message, Hello):
            raise ProtocolError("hello_required", "the first message must be 'hello'")
        return message

    async def _receive(self) -> str:
        """The next text frame; a binary frame ends the connection (1003)."""
        message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        text = message.get("text")
        if text is None:
            self.send(
                {"type": "error", "code": "bad_message", "message": "frames must be JSON text"}
            )
            await asyncio.sleep(0)  # let the pump send the error before the close
            await self.close(CLOSE_UNSUPPORTED, "text frames only")
            raise WebSocketDisconnect(CLOSE_UNSUPPORTED)
        return text

    async def _greet(self, hello: Hello) -> None:
        """welcome, then the missed updates (valid since) or a snapshot; live frames held
        back meanwhile are released after it, without gaps or repeats."""
        services = self.services
        replay = None
        if hello.since is not None:
            replay = await frames_after(services.redis, hello.since, REPLAY_LIMIT)
        state = await services.reads.snapshot(self.version) if replay is None else None
        seq = state["seq"] if state else hello.since
        self.send(
            {
                "type": "welcome",
                "user": self.user,
                "id": self.member.id,
                "role": self.identity.role,
                "overrides_holds": services.auth.overrides_holds(self.identity),
                "seq": seq,
                "presence": services.hub.presence.others(self.member),
            }
        )
        if state is not None:
            if hello.since is not None:
                self.send({"type": "resync", "seq": state["seq"]})
            await self._snapshot_and_catch_up(state)
            return
        await self._catch_up(hello.since, replay)

    async def _snapshot_and_catch_up(self, state: dict[str, Any] | None = None) -> None:
        """Send a snapshot, then what was published after the seq it reflects: DuckDB
        holds a little less than the writer has published (it persists behind)."""
        if state is None:
            state = await self.services.reads.snapshot(self.version)
        self.send({"type": "snapshot", **state})
        replay = await frames_after(self.services.redis, state["seq"], REPLAY_LIMIT)
        await self._catch_up(state["seq"], replay or [])

    async def _catch_up(self, last: str | None, replay: list[tuple[str, bytes | None]]) -> None:
        """Send every entry after `last` in order (its frame as the writer encoded it),
        REPLAY_LIMIT at a time, then release the live frames held back meanwhile,
        without gaps or repeats."""
        while replay:
            for seq, frame in replay:
                if frame is not None:
                    self.subscriber.send(Wire(frame))
                last = seq
            if len(replay) < REPLAY_LIMIT:
                break
            assert last is not None
            more = await frames_after(self.services.redis, last, REPLAY_LIMIT)
            if more is None:  # trimmed past `last` while replaying: start again
                state = await self.services.reads.snapshot(self.version)
                self.send({"type": "resync", "seq": state["seq"]})
                await self._snapshot_and_catch_up(state)
                return
            replay = more
        self.subscriber.start(last or "")

    async def _receive_loop(self) -> None:
        while True:
            data = await self._receive()
            try:
                self.rate.take()
                limit = self.services.settings.max_edits_per_request
                message = await self.services.parsed(partial(parse_message, data, limit))
                if isinstance(message, EditMessage):
                    await self._submit(message.id, message.edit)
                elif isinstance(message, EditManyMessage):
                    self.rate.take(message.block.size // BLOCK_EDITS_PER_TOKEN)
                    await self._submit(message.id, message.block)
                elif isinstance(message, UndoMessage):
                    await self._submit(message.id, message.undo)
                elif isinstance(message, HoldMessage):
                    await self._submit(message.id, message.hold)
                elif isinstance(message, Cursor):
                    self.services.hub.presence.move(self.member, message.cell)
                elif isinstance(message, Ping):
                    self.send({"type": "pong"})
                else:
                    raise ProtocolError("bad_message", "hello was already received")
            except RateLimited as exc:
                self._reject_at_edge(data, exc)
                if exc.persistent:
                    await self.close(CLOSE_POLICY, "rate limit exceeded")
                    return
            except ProtocolError as exc:
                self._reject_at_edge(data, exc)

    def _reject_at_edge(self, data: str, exc: ProtocolError) -> None:
        metrics.edge_rejected(exc.code)
        client_id = _client_id_of(data)
        if client_id is None:
            self.send({"type": "error", **exc.as_dict()})
        else:
            self.send(
                {"type": "rejected", "id": client_id, "request": None, "error": exc.as_dict()}
            )

    async def _submit(self, client_id: str, action: Action) -> None:
        """XADD, answer `queued`, and later `applied`/`rejected` (never before `queued`)."""
        state: dict[str, Any] = {"ref": None, "result": None}

        def on_result(result: dict[str, Any]) -> None:
            if state["ref"] is None:  # decided before enqueue returned: sent after `queued`
                state["result"] = result
            else:
                self._refs.discard(state["ref"])
                self._send_result(client_id, result)

        self.identity.require("editor")
        admin = self.services.auth.overrides_holds(self.identity)
        request_id, ref = await self.services.submitter.enqueue(action, self.user, on_result, admin)
        self.send({"type": "queued", "id": client_id, "request": request_id})
        if state["result"] is not None:
            self._send_result(client_id, state["result"])
        else:
            state["ref"] = ref
            self._refs.add(ref)

    def _send_result(self, client_id: str, result: dict[str, Any]) -> None:
        frame: dict[str, Any] = {
            "type": result["status"],
            "id": client_id,
            "request": result["request"],
        }
        if result["status"] == "applied":
            frame["seq"] = result["seq"]
        else:
            frame["error"] = result["error"]
        self.send(frame)

    async def _pump(self) -> None:
        subscriber = self.subscriber
        while True:
            frame = await subscriber.queue.get()
            subscriber.pumping = True
            try:
                await self.ws.send_text(frame)
            finally:
                subscriber.pumping = False


def _client_id_of(data: str) -> str | None:
    """The `id` of an edit that failed validation, if the frame was JSON with one."""
    try:
        raw = loads(data)
    except ProtocolError:
        return None
    if (
        isinstance(raw, dict)
        and raw.get("type") in ("edit", "edit_many", "undo", "redo", "hold")
        and isinstance(raw.get("id"), str)
    ):
        return raw["id"][:64]
    return None


async def websocket_endpoint(ws: WebSocket) -> None:
    await Session(ws, ws.app.state.services).run()
