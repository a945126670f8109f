"""`Reads` forwarded to the data process's internal API (server/analytics/read_api.py).

The address and secret come from Redis (server/store/data_address.py) and are looked up
again when the data process cannot be reached (it may have restarted elsewhere). Answers
are decoded as the edge's own JSON is, numbers exactly (Decimal), so what the edge sends
on is what the data process read.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis

from protocol.codec import dumps, loads
from protocol.errors import ProtocolError
from protocol.history import HistoryQuery
from protocol.versions import ACTUAL
from server.analytics.reports import Report
from server.edge.reads import Node, Order
from server.store.data_address import SECRET_HEADER, DataAddress, lookup
from server.store.streams import REDIS_ERRORS

logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per forwarded read
TIMEOUT = httpx.Timeout(120.0, connect=5.0)  # exports of large tables take a while
EXPORT_CHUNK = 1 << 20


class DataUnreachable(ProtocolError):
    def __init__(self, why: str) -> None:
        super().__init__("unavailable", f"the data process is unreachable ({why}); retry")


class RemoteReads:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._address: DataAddress | None = None
        self._client: httpx.AsyncClient | None = None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def snapshot(self, version: str = ACTUAL) -> dict[str, Any]:
        return await self._call("/snapshot", version=version)

    async def view_table(
        self,
        table: str,
        condition: dict[str, Any],
        order: Order,
        limit: int,
        offset: int,
        version: str = ACTUAL,
    ) -> dict[str, Any]:
        args = {"table": table, "condition": condition, "order": order, "version": version}
        return await self._call("/view_table", **args, limit=limit, offset=offset)

    async def versions(self) -> list[dict[str, Any]]:
        return await self._call("/versions")

    async def sql_tree(self, sql: str) -> dict[str, Any]:
        """DuckDB's parse tree of `sql` (json_serialize_sql), from the data process."""
        return await self._call("/sql_tree", sql=sql)

    async def compare(
        self, a: str, b: str, measure: str, condition: dict[str, Any], limit: int, offset: int
    ) -> dict[str, Any]:
        args = {"a": a, "b": b, "measure": measure, "condition": condition}
        return await self._call("/compare", **args, limit=limit, offset=offset)

    async def holds(self, version: str = ACTUAL) -> list[dict[str, Any]]:
        return await self._call("/holds", version=version)

    async def history(self, query: HistoryQuery, version: str = ACTUAL) -> dict[str, Any]:
        return await self._call("/history", **query.as_dict(), version=version)

    async def request_status(self, request_id: str) -> dict[str, Any] | None:
        return await self._call("/request_status", request_id=request_id)

    async def report(
        self, report: Report, params: dict[str, Any], version: str = ACTUAL
    ) -> dict[str, Any]:
        return await self._call("/report", name=report.name, params=params, version=version)

    async def export(self, table: str, fmt: str, path: Path, version: str = ACTUAL) -> None:
        await self._download("/export", path, table=table, format=fmt, version=version)

    async def _download(self, route: str, path: Path, **args: Any) -> None:
        """POST `args`, streaming the file the data process answers into `path`."""
        client = await self._connected()
        async with client.stream("POST", route, content=dumps(args)) as response:
            await _raise_for_error(response)
            with path.open("wb") as out:
                async for chunk in response.aiter_bytes(EXPORT_CHUNK):
                    out.write(chunk)

    async def grid_workbook(
        self, measure: str, expanded: list[Node], path: Path, version: str = ACTUAL
    ) -> None:
        args = {"measure": measure, "expanded": expanded, "version": version}
        await self._download("/grid_workbook", path, **args)

    async def import_problems(self, import_id: str, limit: int, offset: int) -> dict[str, Any]:
        return await self._call("/import_problems", import_id=import_id, limit=limit, offset=offset)

    async def health(self) -> dict[str, Any]:
        try:
            return await self._call("/health")
        except DataUnreachable as exc:
            return {"database": exc.message, "writer": "unknown"}

    async def store_upload(
        self, chunks: AsyncIterator[bytes], import_id: str, max_bytes: int
    ) -> str:
        # A stream can be sent once only, so no retry with a fresh address here.
        client = await self._connected()
        try:
            response = await client.put(
                f"/uploads/{import_id}", content=chunks, params={"max_bytes": max_bytes}
            )
        except httpx.TransportError as exc:
            await self._forget()
            raise DataUnreachable(type(exc).__name__) from exc
        await _raise_for_error(response)
        return loads(response.content)["path"]

    async def discard_upload(self, import_id: str) -> None:
        client = await self._connected()
        try:
            await client.delete(f"/uploads/{import_id}")
        except httpx.TransportError:
            await self._forget()  # the file stays; the data process's dir is its own

    async def _call(self, path: str, **args: Any) -> Any:
        body = dumps(args)
        for attempt in (1, 2):  # the second with a freshly looked-up address
            client = await self._connected()
            try:
                response = await client.post(path, content=body)
            except httpx.TransportError as exc:
                await self._forget()
                if attempt == 2:
                    raise DataUnreachable(type(exc).__name__) from exc
                continue
            if response.status_code == 401:
                await self._forget()  # a new data process, with a new secret
                if attempt == 2:
                    raise DataUnreachable("the secret was refused")
                continue
            await _raise_for_error(response)
            return loads(response.content)
        raise AssertionError("unreachable")

    async def _connected(self) -> httpx.AsyncClient:
        if self._client is not None:
            return self._client
        try:
            address = await lookup(self.redis)
        except REDIS_ERRORS as exc:
            raise DataUnreachable("redis unavailable") from exc
        if address is None:
            raise DataUnreachable("no data process has published its address")
        self._address, self._client = address, _client_for(address)
        return self._client

    async def _forget(self) -> None:
        await self.close()
        self._address = None


def _client_for(address: DataAddress) -> httpx.AsyncClient:
    headers = {SECRET_HEADER: address.secret, "content-type": "application/json"}
    if address.url.startswith("unix://"):
        transport = httpx.AsyncHTTPTransport(uds=address.url.removeprefix("unix://"))
        return httpx.AsyncClient(
            transport=transport, base_url="http://data", headers=headers, timeout=TIMEOUT
        )
    return httpx.AsyncClient(base_url=address.url, headers=headers, timeout=TIMEOUT)


async def _raise_for_error(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    await response.aread()
    try:
        error = loads(response.content)["error"]
    except (ProtocolError, KeyError, TypeError):
        raise ProtocolError("internal", "the data process could not answer") from None
    details = {k: v for k, v in error.items() if k not in ("code", "message")}
    raise ProtocolError(error["code"], error["message"], **details)
