"""REST endpoints for analytics, export and import (DESIGN §5, §8).

    GET  /reports                      the reports, their descriptions and parameters
    GET  /reports/{name}?start_date&end_date&…[&format=csv]
    GET  /export/{table}?format=csv|parquet|xlsx
    GET  /grid/export?measure=net_amount|quantity&expanded=[[supplier], [supplier, brand]…]
    POST /import/{table}?mode=fast|validate&upsert=false&file_name=…   (CSV or xlsx body)
    GET  /imports/{import_id}/log?limit&offset&format=json|csv

Reports and exports read committed snapshots on the data process's reader cursors
(`services.reads`), never the writer's lock. Reports and the grid's export need the
viewer role (a viewer sees that much in the grid anyway); table exports, imports and
their logs admin (DESIGN §7). An import is saved under the data process's
<data_dir>/imports/ (a workbook rewritten as CSV there first) and handed to the writer
(`services.submit_import`), which applies it in stream order with the edits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from protocol.actions import IMPORT_ID, IMPORT_TABLES, ImportSpec, new_import_id
from protocol.catalog import TABLES
from protocol.codec import loads
from protocol.errors import ProtocolError
from protocol.versions import version_name
from server.analytics import validation_log
from server.analytics.export_requests import (
    MEASURES,
    MEDIA_TYPES,
    XLSX_TYPE,
    check_request,
    temp_export_path,
)
from server.analytics.reports import FORMATS, catalog, get_report, parse_params, to_csv
from server.edge.rest import (
    authorize,
    int_param,
    json_response,
    outcome_response,
    services_of,
    wait_min_seq,
)
from server.edge.uploads import MAX_UPLOAD_BYTES, upload_path

MAX_FILE_NAME = 200
MAX_EXPANDED = 10_000  # expanded nodes a grid export may name


async def list_reports(request: Request) -> Response:
    authorize(request, "viewer")
    return json_response({"data": {"reports": [r.describe() for r in catalog().values()]}})


async def get_report_data(request: Request) -> Response:
    authorize(request, "viewer")
    report = get_report(request.path_params["name"])
    fmt = request.query_params.get("format", "json")
    if fmt not in FORMATS:
        raise ProtocolError(
            "invalid_value", f"format must be one of {', '.join(FORMATS)}", parameter="format"
        )
    version = version_name(request.query_params.get("version"))
    query = {k: v for k, v in request.query_params.items() if k != "version"}
    params = parse_params(report, query)
    await wait_min_seq(request)
    data = await services_of(request).reads.report(report, params, version)
    if fmt == "csv":
        return Response(
            to_csv(data),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{report.name}.csv"'},
        )
    return json_response({"data": data})


async def get_export(request: Request) -> Response:
    services = services_of(request)
    table = request.path_params["table"]
    fmt = request.query_params.get("format", "csv")
    authorize(request, "admin")
    check_request(table, fmt)
    version = version_name(request.query_params.get("version"))
    await wait_min_seq(request)
    path = temp_export_path(services.settings.data_dir, table, fmt)
    try:
        await services.reads.export(table, fmt, path, version)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return _send_file(path, fmt, f"{table}.{fmt}")


def _send_file(path: Path, fmt: str, filename: str) -> Response:
    """Stream an export file, deleted once sent."""
    return FileResponse(
        path,
        media_type=MEDIA_TYPES[fmt],
        filename=filename,
        background=BackgroundTask(path.unlink, missing_ok=True),
    )


async def get_grid_export(request: Request) -> Response:
    """The summary as the grid shows it (measure, expanded nodes) as an xlsx workbook."""
    authorize(request, "viewer")
    services = services_of(request)
    measure = request.query_params.get("measure", "net_amount")
    if measure not in MEASURES:
        raise ProtocolError(
            "invalid_value", f"measure must be one of {', '.join(MEASURES)}", parameter="measure"
        )
    expanded = expanded_nodes(request.query_params.get("expanded", "[]"))
    version = version_name(request.query_params.get("version"))
    path = temp_export_path(services.settings.data_dir, "grid", "xlsx")
    try:
        await services.reads.grid_workbook(measure, expanded, path, version)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return _send_file(path, "xlsx", f"ducksheet-{measure}.xlsx")


def expanded_nodes(raw: str) -> list[tuple[str | None, str | None, str | None]]:
    """`[[supplier], [supplier, brand], …]` (JSON) as summary nodes."""
    value = loads(raw)
    message = "expanded must be a JSON list of [supplier] and [supplier, brand] lists"
    if not isinstance(value, list) or len(value) > MAX_EXPANDED:
        raise ProtocolError("invalid_value", message, parameter="expanded")
    nodes = []
    for path in value:
        ok = isinstance(path, list) and 1 <= len(path) <= 2
        if not ok or not all(isinstance(p, str) and len(p) <= 200 for p in path):
            raise ProtocolError("invalid_value", message, parameter="expanded")
        supplier, brand = path[0], path[1] if len(path) == 2 else None
        nodes.append((supplier, brand, None))
    return nodes


async def post_import(request: Request) -> Response:
    services = services_of(request)
    identity = authorize(request, "admin")
    spec = import_spec(request, services.settings.data_dir)
    services.check_writable()
    # saved where the writer reads it: the data process's data dir
    path = await services.reads.store_upload(request.stream(), spec.import_id, MAX_UPLOAD_BYTES)
    try:
        outcome = await services.submit_import(
            {**spec.as_dict(), "path": path, "user": identity.name}
        )
    except ProtocolError:
        await services.reads.discard_upload(spec.import_id)  # nothing was queued
        raise
    # From here on the file belongs to the writer, which deletes it once decided.
    extra: dict[str, Any] = {"import_id": spec.import_id}
    if outcome.get("stats", {}).get("rejected"):
        extra["validation_log"] = await services.reads.import_problems(
            spec.import_id, validation_log.IN_RESPONSE, 0
        )
    return outcome_response(outcome, **extra)


async def get_import_log(request: Request) -> Response:
    """The problems `mode=validate` recorded for an import, in row order, paged."""
    authorize(request, "admin")
    import_id = request.path_params["import_id"]
    if not IMPORT_ID.match(import_id):
        raise ProtocolError("bad_message", "import ids are 1-64 letters, digits, - or _")
    fmt = request.query_params.get("format", "json")
    if fmt not in FORMATS:
        raise ProtocolError(
            "invalid_value", f"format must be one of {', '.join(FORMATS)}", parameter="format"
        )
    limit = int_param(request, "limit", 1000, 1, 100_000)
    offset = int_param(request, "offset", 0, 0, 10**9)
    data = await services_of(request).reads.import_problems(import_id, limit, offset)
    if fmt == "csv":
        return Response(
            to_csv({"columns": data["columns"], "rows": data["problems"]}),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{import_id}-log.csv"'},
        )
    return json_response({"data": data})


def import_spec(request: Request, data_dir: Path) -> ImportSpec:
    """The import a request asks for, checked before its body is read; its path is
    where this process would save the body (the data process names its own)."""
    table = request.path_params["table"]
    if table not in TABLES:
        raise ProtocolError(
            "unknown_table", f"unknown table {table[:80]!r}; imports go to {IMPORT_TABLES}"
        )
    query = request.query_params
    upsert = query.get("upsert", "false").lower()
    if upsert not in ("true", "false", "1", "0"):
        raise ProtocolError("invalid_value", "upsert must be true or false")
    suffix = "xlsx" if request.headers.get("content-type", "").startswith(XLSX_TYPE) else "csv"
    file_name = query.get("file_name") or f"{table}.{suffix}"
    if len(file_name) > MAX_FILE_NAME or any(ord(ch) < 32 for ch in file_name):
        raise ProtocolError("invalid_value", "file_name: at most 200 printable characters")
    import_id = new_import_id()
    return ImportSpec.parse(
        {
            "table": table,
            "path": str(upload_path(data_dir, import_id)),
            "mode": query.get("mode", "fast"),
            "file_name": file_name,
            "import_id": import_id,
            "upsert": upsert in ("true", "1"),
        }
    )


routes = [
    Route("/reports", list_reports),
    Route("/reports/{name}", get_report_data),
    Route("/export/{table}", get_export),
    Route("/grid/export", get_grid_export),
    Route("/import/{table}", post_import, methods=["POST"]),
    Route("/imports/{import_id}/log", get_import_log),
]
