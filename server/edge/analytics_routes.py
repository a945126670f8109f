"""REST endpoints for analytics, export and import (DESIGN §5, §8).

    GET  /reports                      the reports, their descriptions and parameters
    GET  /reports/{name}?start_date&end_date&…[&format=csv]
    GET  /export/{table}?format=csv|parquet
    POST /import/{table}?mode=fast|validate&upsert=false&file_name=…   (CSV body)

Reports and exports read committed snapshots on the data process's reader cursors
(`services.reads`), never the writer's lock. Reports need the viewer role, export and
import admin (DESIGN §7). An import is saved under the data process's
<data_dir>/imports/ and handed to the writer (`services.submit_import`), which applies
it in stream order with the edits.
"""

from __future__ import annotations

from pathlib import Path

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from protocol.actions import IMPORT_TABLES, ImportSpec, new_import_id
from protocol.catalog import TABLES
from protocol.errors import ProtocolError
from server.analytics.exporter import MEDIA_TYPES, check_request, temp_export_path
from server.analytics.reports import FORMATS, catalog, get_report, parse_params, to_csv
from server.edge.rest import (
    authorize,
    json_response,
    outcome_response,
    services_of,
    wait_min_seq,
)
from server.edge.uploads import MAX_UPLOAD_BYTES, upload_path

MAX_FILE_NAME = 200


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
    params = parse_params(report, request.query_params)
    await wait_min_seq(request)
    data = await services_of(request).reads.report(report, params)
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
    await wait_min_seq(request)
    path = temp_export_path(services.settings.data_dir, table, fmt)
    try:
        await services.reads.export(table, fmt, path)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return FileResponse(
        path,
        media_type=MEDIA_TYPES[fmt],
        filename=f"{table}.{fmt}",
        background=BackgroundTask(path.unlink, missing_ok=True),
    )


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
    return outcome_response(outcome, import_id=spec.import_id)


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
    file_name = query.get("file_name") or f"{table}.csv"
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
    Route("/import/{table}", post_import, methods=["POST"]),
]
