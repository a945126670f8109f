"""The one submit path of every edge: check the writer can take requests, XADD, and
route the writer's outcome back to whoever submitted (a socket or a REST call)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from protocol.actions import Action, Sender
from protocol.edits import EditMany
from protocol.errors import ProtocolError
from server import metrics
from server.hub.fanout import Hub, Result
from server.store.streams import REDIS_ERRORS, Enqueuer

log = logging.getLogger("ducksheet.edge")


class Submitter:
    def __init__(self, enqueuer: Enqueuer, hub: Hub, check_writable: Callable[[], None]) -> None:
        self.enqueuer = enqueuer
        self.hub = hub
        self.check_writable = check_writable  # raises ProtocolError("unavailable") when not

    async def enqueue(
        self, action: Action, user: str, on_result: Callable[[Result], None], admin: bool = False
    ) -> tuple[str, str]:
        """XADD a request; returns (request id, ref). `on_result` later gets its outcome
        unless the ref is forgotten (`self.hub.forget(ref)`) first."""
        self.check_writable()
        ref = self.hub.new_ref(on_result)
        try:
            request_id = await self.enqueuer.enqueue(action, Sender(user, ref, admin))
        except REDIS_ERRORS as exc:
            self.hub.forget(ref)
            raise ProtocolError("unavailable", "the edit queue is unavailable; retry") from exc
        kind = "editmany" if isinstance(action, EditMany) else type(action).__name__.lower()
        metrics.request_queued(kind)
        log.debug("queued", extra={"stream_id": request_id, "kind": kind, "user": user})
        return request_id, ref

    async def submit(
        self, action: Action, user: str, wait: float, admin: bool = False
    ) -> dict[str, Any]:
        """XADD a request and, for up to `wait` seconds, wait for the writer's outcome
        and, when applied, for DuckDB to hold it (so a read that follows sees it):
        {request_id, status: queued | applied (seq, persisted, stats?) | rejected (error)}."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        done: asyncio.Future[Result] = loop.create_future()
        request_id, ref = await self.enqueue(
            action, user, lambda result: done.done() or done.set_result(result), admin
        )
        try:
            result = await asyncio.wait_for(done, wait) if wait > 0 else None
        except TimeoutError:
            result = None
        if result is None:
            self.hub.forget(ref)
            return {"request_id": request_id, "status": "queued"}
        outcome = {"request_id": request_id, "status": result["status"]}
        keys = ("seq", "stats") if result["status"] == "applied" else ("error",)
        outcome |= {k: result[k] for k in keys if k in result}
        if result["status"] == "applied":
            left = max(0.0, deadline - loop.time())
            outcome["persisted"] = await self.hub.wait_persisted(result["seq"], left)
        return outcome
