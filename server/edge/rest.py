"""REST endpoints for polling clients and tools (DESIGN §5)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from protocol.actions import Action, Undo, versioned
from protocol.catalog import SUMMARY, TABLES
from protocol.codec import NO_SEQ, dumps, loads, parse_seq
from protocol.edits import parse_condition, parse_edit, parse_edit_many, parse_hold
from protocol.errors import ProtocolError
from protocol.history import HISTORY_LIMIT, parse_history_query
from protocol.versions import ACTUAL, CreateVersion, LockVersion, version_name
from server.analytics.reports import to_csv
from server.edge.auth import Identity
from server.services import Services
from server.store.streams import REDIS_ERRORS, REQUESTS, entries_after, latest_entries, newest_seq

MAX_WAIT = 30.0
MIN_SEQ_WAIT = 5.0  # seconds a read waits for DuckDB to hold its `min_seq`
# Query numbers: ASCII digits only (int() and float() also take other digits, "1_0", "nan").
_INTEGER = re.compile(r"-?[0-9]{1,18}", re.ASCII)
_SECONDS = re.compile(r"[0-9]{1,2}(\.[0-9]{1,3})?", re.ASCII)


def json_response(body: Any, status: int = 200) -> Response:
    return Response(dumps(body), status, media_type="application/json")


def error_response(exc: ProtocolError) -> Response:
    return json_response({"error": exc.as_dict()}, exc.http_status)


def services_of(request: Request) -> Services:
    return request.app.state.services


def authorize(request: Request, role: str) -> Identity:
    """The caller's identity from `Authorization: Bearer`, holding at least `role`."""
    identity = services_of(request).auth.identify_bearer(request.headers.get("authorization"))
    identity.require(role)
    return identity


async def wait_min_seq(request: Request) -> None:
    """Read-your-writes: with `?min_seq=S`, wait (up to MIN_SEQ_WAIT) until DuckDB holds
    S; the answer's `seq` then says what it reflects."""
    raw = request.query_params.get("min_seq")
    if raw is not None:
        parse_seq(raw)  # a malformed one is a 400
        await services_of(request).hub.wait_persisted(raw, MIN_SEQ_WAIT)


async def read_body(request: Request, limit: int | None = None) -> bytes:
    """The body, refused (413) past the limit (the configured one) without reading it all."""
    limit = limit or services_of(request).settings.max_body
    declared = request.headers.get("content-length", "")
    if re.fullmatch(r"[0-9]{1,20}", declared, re.ASCII) and int(declared) > limit:
        raise ProtocolError("too_big", f"request body above {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ProtocolError("too_big", f"request body above {limit} bytes")
    return bytes(body)


async def update_cell(request: Request) -> Response:
    identity = authorize(request, "editor")
    _wait_seconds(request)  # a bad ?wait= is refused before the body is read
    data = await _body_data(request, "{table, column, value, condition}")
    edit = await services_of(request).parsed(lambda: versioned(data, parse_edit))
    return await _submit(request, edit, identity)


async def update_cells(request: Request) -> Response:
    """A block edit (DESIGN §12): every edit applies, or none."""
    identity = authorize(request, "editor")
    _wait_seconds(request)
    settings = services_of(request).settings
    data = await _body_data(request, "{edits: [edit, …]}", settings.max_block_body)
    block = await services_of(request).parsed(
        lambda: versioned(data, lambda m: parse_edit_many(m, settings.max_edits_per_request))
    )
    return await _submit(request, block, identity)


async def post_undo(request: Request) -> Response:
    return await _undo(request, redo=False)


async def post_redo(request: Request) -> Response:
    return await _undo(request, redo=True)


async def _undo(request: Request, redo: bool) -> Response:
    """Undo (redo) the caller's last request (of `?version=`, default actual); the body,
    if any, is ignored."""
    identity = authorize(request, "editor")
    _wait_seconds(request)
    version = version_name(request.query_params.get("version"))
    return await _submit(request, Undo(redo, version), identity)


async def get_history(request: Request) -> Response:
    authorize(request, "viewer")
    params = request.query_params
    raw: dict[str, Any] = {
        "table": params.get("table"),
        "user": params.get("user"),
        "before": params.get("before"),
        "limit": int_param(request, "limit", 50, 1, HISTORY_LIMIT),
    }
    if params.get("condition"):
        raw["condition"] = _condition_param(params["condition"])
    query = await services_of(request).parsed(lambda: parse_history_query(raw))
    version = version_name(params.get("version"))
    await wait_min_seq(request)
    return json_response({"data": await services_of(request).reads.history(query, version)})


async def post_hold(request: Request) -> Response:
    identity = authorize(request, "editor")
    _wait_seconds(request)  # a bad ?wait= is refused before the body is read
    data = await _body_data(request, "{condition, on}")
    hold = await services_of(request).parsed(lambda: versioned(data, parse_hold))
    return await _submit(request, hold, identity)


async def get_holds(request: Request) -> Response:
    authorize(request, "viewer")
    await wait_min_seq(request)
    version = version_name(request.query_params.get("version"))
    holds = await services_of(request).reads.holds(version)
    return json_response({"data": {"holds": holds}})


async def get_versions(request: Request) -> Response:
    authorize(request, "viewer")
    await wait_min_seq(request)
    return json_response({"data": {"versions": await services_of(request).reads.versions()}})


async def post_version(request: Request) -> Response:
    """Create a version as a copy of another, optionally scaled (DESIGN §13)."""
    identity = authorize(request, "editor")
    _wait_seconds(request)
    data = await _body_data(request, "{name, from, percent}")
    return await _submit(request, CreateVersion.parse(data), identity)


async def post_lock(request: Request) -> Response:
    return await _lock(request, True)


async def post_unlock(request: Request) -> Response:
    return await _lock(request, False)


async def _lock(request: Request, locked: bool) -> Response:
    identity = authorize(request, "admin")
    _wait_seconds(request)
    name = request.path_params["name"]
    return await _submit(request, LockVersion.parse({"name": name, "locked": locked}), identity)


async def _body_data(request: Request, shape: str, limit: int | None = None) -> dict[str, Any]:
    raw = loads(await read_body(request, limit))
    if not isinstance(raw, dict) or not isinstance(raw.get("data"), dict):
        raise ProtocolError("bad_message", f'the body must be {{"data": {shape}}}')
    return raw["data"]


async def _submit(request: Request, action: Action, identity: Identity) -> Response:
    """Enqueue; answer 202 queued, or with ?wait=S the outcome once the writer decided."""
    services = services_of(request)
    outcome = await services.submitter.submit(
        action, identity.name, _wait_seconds(request), services.auth.overrides_holds(identity)
    )
    return outcome_response(outcome)


def outcome_response(outcome: dict[str, Any], **data: Any) -> Response:
    """A submitted request's outcome: 202 while queued, 200 once applied, the error's
    status once rejected."""
    body = {**data, **{k: v for k, v in outcome.items() if k != "error"}}
    if outcome["status"] == "queued":
        return json_response({"data": body}, 202)
    if outcome["status"] == "applied":
        return json_response({"data": body})
    error = outcome["error"]
    status = ProtocolError(error["code"], "").http_status
    return json_response({"data": body, "error": error}, status)


def _wait_seconds(request: Request) -> float:
    raw = request.query_params.get("wait")
    if raw is None:
        return 0.0
    if not _SECONDS.fullmatch(raw) or float(raw) > MAX_WAIT:
        raise ProtocolError(
            "bad_message", f"'wait' must be a number of seconds from 0 to {MAX_WAIT:g}"
        )
    return float(raw)


async def get_request(request: Request) -> Response:
    authorize(request, "viewer")
    services = services_of(request)
    request_id = request.path_params["request_id"]
    parse_seq(request_id)
    status = await services.reads.request_status(request_id)
    if status is None:
        if not await services.redis.xrange(REQUESTS, min=request_id, max=request_id):
            raise ProtocolError("not_found", f"no request {request_id}")
        status = {"request_id": request_id, "status": "queued"}
    return json_response({"data": status})


async def get_updates(request: Request) -> Response:
    authorize(request, "viewer")
    services = services_of(request)
    limit = int_param(request, "limit", 100, 1, 1000)
    since = request.query_params.get("since")
    if since:
        parse_seq(since)
        payloads = await entries_after(services.redis, since, limit)
        if payloads is None:  # trimmed away, or never published: start again from now
            last_seq = await newest_seq(services.redis) or await _last_applied(services)
            body = {"updates": [], "last_seq": last_seq or NO_SEQ, "resync": True}
            return json_response({"data": body})
    else:
        payloads = await latest_entries(services.redis, limit)
    rows = [{**row, "seq": p["seq"]} for p in payloads for row in (*p["rows"], *p["base"])]
    last = payloads[-1]["seq"] if payloads else since
    return json_response({"data": {"updates": rows, "last_seq": last}})


async def get_view_table(request: Request) -> Response:
    authorize(request, "viewer")
    services = services_of(request)
    name = request.path_params["table"]
    table = TABLES.get(name)
    if table is None:
        raise ProtocolError("unknown_table", f"unknown table {name!r}; tables: {', '.join(TABLES)}")
    limit = int_param(request, "limit", 100, 1, services.settings.view_page_max)
    offset = int_param(request, "offset", 0, 0, 10**9)
    raw_condition = request.query_params.get("condition")
    condition = (
        await services.parsed(lambda: parse_condition(table, _condition_param(raw_condition)))
        if raw_condition
        else {}
    )
    order = []
    for part in filter(None, (request.query_params.get("order") or "").split(",")):
        column = part.lstrip("-")
        if column not in table.columns:
            raise ProtocolError("unknown_column", f"cannot order by unknown column {column!r}")
        order.append((column, part.startswith("-")))
    version = version_name(request.query_params.get("version"))
    await wait_min_seq(request)
    data = await services.reads.view_table(name, condition, order, limit, offset, version)
    return json_response({"data": data})


async def get_compare(request: Request) -> Response:
    """Variance of version a against b, cell by cell (`format=csv` for a CSV file)."""
    authorize(request, "viewer")
    services = services_of(request)
    params = request.query_params
    a, b = version_name(params.get("a"), "a"), version_name(params.get("b") or ACTUAL, "b")
    if params.get("a") is None:
        raise ProtocolError("bad_message", "name the version to compare: ?a=budget&b=actual")
    fmt = params.get("format", "json")
    if fmt not in ("json", "csv"):
        raise ProtocolError("bad_message", "format is json or csv")
    limit = int_param(request, "limit", 100, 1, services.settings.view_page_max)
    offset = int_param(request, "offset", 0, 0, 10**9)
    raw_condition = params.get("condition")
    condition = (
        await services.parsed(
            lambda: parse_condition(TABLES[SUMMARY], _condition_param(raw_condition))
        )
        if raw_condition
        else {}
    )
    measure = params.get("measure", "net_amount")
    await wait_min_seq(request)
    data = await services.reads.compare(a, b, measure, condition, limit, offset)
    if fmt == "csv":
        headers = {"content-disposition": f'attachment; filename="compare-{a}-{b}.csv"'}
        return Response(to_csv(data), media_type="text/csv", headers=headers)
    return json_response({"data": data})


def _condition_param(raw: str) -> Any:
    """URL-encoded JSON (an object, or a string), or else the plain text of a condition."""
    try:
        return loads(raw)
    except ProtocolError:
        return raw


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not _INTEGER.fullmatch(raw):
        raise ProtocolError("bad_message", f"'{name}' must be an integer")
    value = int(raw)
    if not low <= value <= high:
        raise ProtocolError("bad_message", f"'{name}' must be between {low} and {high}")
    return value


async def healthz(request: Request) -> Response:
    services = services_of(request)
    checks: dict[str, Any] = {}
    try:
        await asyncio.wait_for(services.redis.ping(), 2)
        checks["redis"] = "ok"
    except (*REDIS_ERRORS, TimeoutError) as exc:
        checks["redis"] = f"unavailable: {type(exc).__name__}"
    data = await services.reads.health()
    checks["database"] = data["database"]
    checks["writer"] = data["writer"]
    ok = all(value == "ok" for value in checks.values())
    body = {
        "status": "ok" if ok else "degraded",
        **checks,
        **{k: v for k, v in data.items() if k not in checks},
        "subscribers": len(services.hub.subscribers) if services.hub else 0,
    }
    return json_response(body, 200 if ok else 503)


async def _last_applied(services: Services) -> str | None:
    return (await services.reads.health()).get("last_applied")
