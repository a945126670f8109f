"""The data process's internal API: the `Reads` of server/edge/reads.py over HTTP, for
web processes (server/edge/remote_reads.py).

It listens on a unix socket in the data dir, or a loopback port (see
server/store/data_address.py), and answers only requests that carry the random secret
published with its address. Arguments arrive as they left the edge's parsers and are
parsed again here: nothing reaches SQL unchecked, whoever calls.
"""

from __future__ import annotations

import hmac
from typing import Any

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from protocol.actions import IMPORT_ID
from protocol.catalog import SUMMARY, TABLES
from protocol.codec import dumps, loads
from protocol.conditions import MAX_TEXT
from protocol.edits import parse_condition
from protocol.errors import ProtocolError
from protocol.history import parse_history_query
from protocol.versions import version_name
from server.analytics.export_requests import MEASURES, MEDIA_TYPES, check_request, temp_export_path
from server.analytics.local_reads import LocalReads
from server.analytics.reports import get_report, parse_params
from server.edge.uploads import MAX_UPLOAD_BYTES
from server.store.data_address import SECRET_HEADER
from server.store.sql_parser import serialize_sql


def _reply(body: Any, status: int = 200) -> Response:
    return Response(dumps(body), status, media_type="application/json")


def _reads(request: Request) -> LocalReads:
    return request.app.state.reads


async def _args(request: Request) -> dict[str, Any]:
    raw = loads(await request.body()) if int(request.headers.get("content-length") or 0) else {}
    if not isinstance(raw, dict):
        raise ProtocolError("bad_message", "the body must be a JSON object")
    return raw


async def snapshot(request: Request) -> Response:
    args = await _args(request)
    return _reply(await _reads(request).snapshot(version_name(args.get("version"))))


async def view_table(request: Request) -> Response:
    args = await _args(request)
    table = TABLES.get(args.get("table"))  # type: ignore[arg-type]
    if table is None:
        raise ProtocolError("unknown_table", "unknown table")
    condition = parse_condition(table, args.get("condition") or {}) if args.get("condition") else {}
    order = [(str(column), bool(desc)) for column, desc in args.get("order") or []]
    if any(column not in table.columns for column, _ in order):
        raise ProtocolError("unknown_column", "cannot order by an unknown column")
    limit, offset = int(args["limit"]), int(args["offset"])
    version = version_name(args.get("version"))
    data = await _reads(request).view_table(table.name, condition, order, limit, offset, version)
    return _reply(data)


MAX_SQL_TREE = MAX_TEXT + 100  # a text condition and the SELECT around it


async def sql_tree(request: Request) -> Response:
    """DuckDB's parse tree of a text condition, for a web process (server/edge/sql_trees.py);
    nothing is executed."""
    sql = (await _args(request)).get("sql")
    if not isinstance(sql, str) or len(sql) > MAX_SQL_TREE:
        raise ProtocolError("bad_condition", "not a condition")
    return _reply(serialize_sql(sql))


async def versions(request: Request) -> Response:
    return _reply(await _reads(request).versions())


async def compare(request: Request) -> Response:
    args = await _args(request)
    condition = parse_condition(TABLES[SUMMARY], args.get("condition") or {})
    a, b = version_name(args.get("a"), "a"), version_name(args.get("b"), "b")
    limit, offset = int(args["limit"]), int(args["offset"])
    return _reply(
        await _reads(request).compare(a, b, str(args.get("measure")), condition, limit, offset)
    )


async def holds(request: Request) -> Response:
    args = await _args(request)
    return _reply(await _reads(request).holds(version_name(args.get("version"))))


async def history(request: Request) -> Response:
    args = await _args(request)
    version = version_name(args.pop("version", None))
    return _reply(await _reads(request).history(parse_history_query(args), version))


async def request_status(request: Request) -> Response:
    args = await _args(request)
    return _reply(await _reads(request).request_status(str(args.get("request_id"))))


async def report(request: Request) -> Response:
    args = await _args(request)
    chosen = get_report(str(args.get("name")))
    query = {k: str(v) for k, v in (args.get("params") or {}).items() if v is not None}
    version = version_name(args.get("version"))
    return _reply(await _reads(request).report(chosen, parse_params(chosen, query), version))


async def export(request: Request) -> Response:
    args = await _args(request)
    table, fmt = str(args.get("table")), str(args.get("format"))
    check_request(table, fmt)
    reads = _reads(request)
    path = temp_export_path(reads.data_dir, table, fmt)
    try:
        await reads.export(table, fmt, path, version_name(args.get("version")))
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return FileResponse(
        path, media_type=MEDIA_TYPES[fmt], background=BackgroundTask(path.unlink, missing_ok=True)
    )


async def grid_workbook(request: Request) -> Response:
    args = await _args(request)
    measure = str(args.get("measure"))
    if measure not in MEASURES:
        raise ProtocolError("invalid_value", f"measure must be one of {', '.join(MEASURES)}")
    expanded = [tuple(node) for node in args.get("expanded") or []]
    reads = _reads(request)
    path = temp_export_path(reads.data_dir, "grid", "xlsx")
    try:
        version = version_name(args.get("version"))
        await reads.grid_workbook(measure, expanded, path, version)  # type: ignore[arg-type]
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return FileResponse(
        path,
        media_type=MEDIA_TYPES["xlsx"],
        background=BackgroundTask(path.unlink, missing_ok=True),
    )


async def import_problems(request: Request) -> Response:
    args = await _args(request)
    import_id = str(args.get("import_id"))
    if not IMPORT_ID.match(import_id):
        raise ProtocolError("bad_message", "import ids are 1-64 letters, digits, - or _")
    limit, offset = int(args.get("limit") or 1000), int(args.get("offset") or 0)
    return _reply(await _reads(request).import_problems(import_id, limit, offset))


async def health(request: Request) -> Response:
    return _reply(await _reads(request).health())


async def store_upload(request: Request) -> Response:
    asked = int(request.query_params.get("max_bytes") or MAX_UPLOAD_BYTES)
    import_id = request.path_params["import_id"]
    path = await _reads(request).store_upload(
        request.stream(), import_id, min(asked, MAX_UPLOAD_BYTES)
    )
    return _reply({"path": path})


async def discard_upload(request: Request) -> Response:
    await _reads(request).discard_upload(request.path_params["import_id"])
    return _reply({})


async def _protocol_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProtocolError)
    return _reply({"error": exc.as_dict()}, exc.http_status)


async def _value_error(_request: Request, exc: Exception) -> Response:
    return _reply({"error": {"code": "bad_message", "message": str(exc)[:200]}}, 400)


class RequireSecret:
    """Refuse (401) every request without the secret; compared in constant time."""

    def __init__(self, app: ASGIApp, secret: str) -> None:
        self.app = app
        self.secret = secret.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = dict(scope["headers"]).get(SECRET_HEADER.encode(), b"")
            if not hmac.compare_digest(given, self.secret):
                await _reply({"error": {"code": "unauthorized", "message": "no"}}, 401)(
                    scope, receive, send
                )
                return
        await self.app(scope, receive, send)


def create_read_api(reads: LocalReads, secret: str) -> Starlette:
    routes = [
        Route("/snapshot", snapshot, methods=["POST"]),
        Route("/view_table", view_table, methods=["POST"]),
        Route("/holds", holds, methods=["POST"]),
        Route("/versions", versions, methods=["POST"]),
        Route("/sql_tree", sql_tree, methods=["POST"]),
        Route("/compare", compare, methods=["POST"]),
        Route("/history", history, methods=["POST"]),
        Route("/request_status", request_status, methods=["POST"]),
        Route("/report", report, methods=["POST"]),
        Route("/export", export, methods=["POST"]),
        Route("/health", health, methods=["POST"]),
        Route("/grid_workbook", grid_workbook, methods=["POST"]),
        Route("/import_problems", import_problems, methods=["POST"]),
        Route("/uploads/{import_id}", store_upload, methods=["PUT"]),
        Route("/uploads/{import_id}", discard_upload, methods=["DELETE"]),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(RequireSecret, secret=secret)],
        exception_handlers={
            ProtocolError: _protocol_error,
            ValueError: _value_error,
            KeyError: _value_error,
        },
    )
    app.state.reads = reads
    return app
