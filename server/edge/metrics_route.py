"""`GET /metrics`: the Prometheus text format, for admins or the metrics token."""

from __future__ import annotations

import asyncio
import hmac

from starlette.requests import Request
from starlette.responses import Response

from server import metrics
from server.edge.rest import authorize, services_of
from server.store.streams import REDIS_ERRORS

SAMPLE_TIMEOUT = 2.0  # seconds; a scrape still answers when Redis is down


def _is_metrics_token(request: Request, token: str | None) -> bool:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if not token or scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


async def get_metrics(request: Request) -> Response:
    services = services_of(request)
    if not _is_metrics_token(request, services.settings.metrics_token):
        authorize(request, "admin")
    metrics.sample_process()
    try:
        await asyncio.wait_for(metrics.sample_streams(services.redis), SAMPLE_TIMEOUT)
    except (*REDIS_ERRORS, TimeoutError):
        pass  # the stream gauges keep their last reading; /healthz tells Redis is down
    body = await asyncio.to_thread(metrics.exposition)
    return Response(body, media_type=metrics.CONTENT_TYPE)
