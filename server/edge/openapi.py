"""The OpenAPI description of the REST endpoints (GET /openapi.json)."""

from __future__ import annotations

from typing import Any

from protocol.catalog import TABLES
from protocol.errors import HTTP_STATUS
from protocol.versions import VERSION_NAME

JSON = "application/json"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {JSON: {"schema": schema}}}


def _ok(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    data = {"type": "object", "required": ["data"], "properties": {"data": schema}}
    return {"description": description, **_json(data)}


def _object(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    """An object with these required (and optional) properties."""
    return {
        "type": "object",
        "required": sorted(required),
        "properties": {**required, **(optional or {})},
    }


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): {"description": "error", **_json(ERROR)} for s in statuses}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _path(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


TABLE = {"type": "string", "enum": sorted(TABLES)}
VERSION_PATTERN = f"^{VERSION_NAME.pattern}$"
VERSION_NAME_SCHEMA = {"type": "string", "pattern": VERSION_PATTERN}
SEQ = {"type": "string", "pattern": r"^[0-9]{1,20}(-[0-9]{1,20})?$"}  # two unsigned 64-bit numbers
CONDITION = {
    "oneOf": [
        {"type": "object", "additionalProperties": {"type": ["string", "number", "null"]}},
        {"type": "string"},
    ]
}
EDIT = {
    "type": "object",
    "required": ["table", "column", "value"],
    "properties": {
        "table": TABLE,
        "column": {"type": "string"},
        "value": {"type": ["string", "number"]},
        "condition": CONDITION,
        "version": {"type": "string", "pattern": VERSION_PATTERN},
        "spread": {"type": "string", "enum": ["proportional", "equal", "percent", "like"]},
        "expect": {"type": ["string", "number"]},
        "like": {  # spread "like": the period (month, quarter, year) or version to follow
            "type": "object",
            "minProperties": 1,
            "maxProperties": 1,
            "properties": {
                "period": {"type": "string", "pattern": "^[0-9]{4}(-Q[1-4]|-[0-9]{2})?$"},
                "version": {"type": "string", "pattern": f"^{VERSION_NAME.pattern}$"},
            },
        },
    },
}
HOLD = {
    "type": "object",
    "properties": {
        "condition": CONDITION,
        "on": {"type": "boolean"},
        "version": VERSION_NAME_SCHEMA,
    },
}
BLOCK = {
    "type": "object",
    "required": ["edits"],
    "properties": {
        "edits": {"type": "array", "minItems": 1, "maxItems": 10_000, "items": EDIT},
        "version": VERSION_NAME_SCHEMA,
    },
}
EVENT = _object(
    {
        "seq": {"type": "string"},
        "request": {"type": "string"},
        "time": {"type": "string", "format": "date-time"},
        "user": {"type": "string"},
        "action": {"enum": ["edit", "edit_many", "spread", "undo", "redo", "import", "hold"]},
        "old": {"type": ["object", "null"]},
        "new": {"type": ["object", "null"]},
        "rows": {"type": "integer", "minimum": 0},
        "cells": {"type": "integer", "minimum": 0},
    },
    {"undoes": {"type": "string"}, "held": {"type": "boolean"}},
)
HISTORY = _object({"events": {"type": "array", "items": EVENT}})
VERSION = _query("version", VERSION_NAME_SCHEMA, "the version (default actual)")
WAIT = _query("wait", {"type": "number", "minimum": 0, "maximum": 30}, "wait for the outcome")
STRING = {"type": "string"}
TEXT_OR_NULL = {"type": ["string", "null"]}
INTEGER = {"type": "integer"}
NUMBER = {"type": ["number", "string"]}  # exact decimals are written as JSON numbers
STATS = {"type": "object", "additionalProperties": {"type": "integer"}}
QUEUED = _object({"request_id": SEQ, "status": {"const": "queued"}})
APPLIED = _object(
    {"request_id": SEQ, "status": {"const": "applied"}, "seq": SEQ},
    {"stats": STATS, "persisted": {"type": "boolean"}},  # persisted: DuckDB holds it
)
STATUS = _object(
    {"request_id": SEQ, "status": {"enum": ["queued", "applied", "rejected"]}},
    {"seq": {"oneOf": [SEQ, {"type": "null"}]}, "error": {"type": "object"}},
)
SUBMITTED = {
    "202": _ok("queued", QUEUED),
    "200": _ok("applied (with ?wait)", APPLIED),
    **_errors(400, 401, 403, 404, 409, 413, 422, 423, 500, 503),
}
CELL_KEYS = {"supplier": TEXT_OR_NULL, "brand": TEXT_OR_NULL, "family": TEXT_OR_NULL}
HOLD_ROW = _object(
    {**CELL_KEYS, "month": TEXT_OR_NULL, "level": INTEGER, "by": STRING},
)
UPDATE_ROW = _object({"table": TABLE, "seq": SEQ})
UPDATES = _object(
    {
        "updates": {"type": "array", "items": UPDATE_ROW},
        "last_seq": {"oneOf": [SEQ, {"type": "null"}]},
    },
    {"resync": {"const": True}},
)
PAGE = _object(
    {
        "table": TABLE,
        "columns": {"type": "array", "items": STRING},
        "rows": {"type": "array", "items": {"type": "object"}},
        "total": {"type": "integer", "minimum": 0},
        "seq": SEQ,
    }
)
VERSION_ROW = _object(
    {
        "name": STRING,
        "from": TEXT_OR_NULL,
        "percent": TEXT_OR_NULL,
        "locked": {"type": "boolean"},
        "created_by": TEXT_OR_NULL,
        "created_at": TEXT_OR_NULL,
    }
)
NEW_VERSION = _object(
    {"name": VERSION_NAME_SCHEMA},
    {"from": VERSION_NAME_SCHEMA, "percent": {"type": ["number", "string", "null"]}},
)
COMPARE = _object(
    {
        "a": STRING,
        "b": STRING,
        "measure": {"enum": ["net_amount", "quantity"]},
        "columns": {"type": "array", "items": STRING},
        "rows": {
            "type": "array",
            "items": _object(
                {
                    **CELL_KEYS,
                    "month": TEXT_OR_NULL,
                    "level": INTEGER,
                    "a": NUMBER,
                    "b": NUMBER,
                    "diff": NUMBER,
                    "ratio": {"type": ["number", "string", "null"]},
                }
            ),
        },
        "total": {"type": "integer", "minimum": 0},
        "seq": SEQ,
    }
)
PARAMETER = _object({"name": STRING, "type": STRING, "description": STRING})
REPORTS = _object(
    {
        "reports": {
            "type": "array",
            "items": _object(
                {
                    "name": STRING,
                    "description": STRING,
                    "parameters": {"type": "array", "items": PARAMETER},
                }
            ),
        }
    }
)
REPORT = _object(
    {
        "report": STRING,
        "parameters": {"type": "object"},
        "columns": {"type": "array", "items": STRING},
        "rows": {"type": "array", "items": {"type": "object"}},
    }
)
IMPORT_LOG = _object(
    {
        "import_id": STRING,
        "total": INTEGER,
        "columns": {"type": "array", "items": STRING},
        "problems": {"type": "array", "items": {"type": "object"}},
    },
    {"file_name": TEXT_OR_NULL},
)
IMPORTED = _object(
    {"import_id": STRING, "request_id": SEQ, "status": {"const": "applied"}, "seq": SEQ},
    {"stats": STATS},
)
HEALTH = _object(
    {
        "status": {"enum": ["ok", "degraded"]},
        "redis": STRING,
        "database": STRING,
        "writer": STRING,
        "last_applied": {"oneOf": [SEQ, {"type": "null"}]},
        "applied_requests": {"type": "integer", "minimum": 0},
        "subscribers": {"type": "integer", "minimum": 0},
    }
)


def spec() -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/update_cell": {
            "post": {
                "summary": "Queue an edit of a cell (or of the rows a condition matches)",
                "parameters": [WAIT],
                "requestBody": {
                    "required": True,
                    **_json({"type": "object", "required": ["data"], "properties": {"data": EDIT}}),
                },
                "responses": SUBMITTED,
            }
        },
        "/update_cells": {
            "post": {
                "summary": "Queue a block edit: every edit applies in order, or none (a paste)",
                "parameters": [WAIT],
                "requestBody": {
                    "required": True,
                    **_json(
                        {"type": "object", "required": ["data"], "properties": {"data": BLOCK}}
                    ),
                },
                "responses": SUBMITTED,
            }
        },
        "/undo": {
            "post": {
                "summary": "Undo the caller's last edit, block edit or spread (body: {})",
                "parameters": [WAIT, VERSION],
                "responses": SUBMITTED,
            }
        },
        "/redo": {
            "post": {
                "summary": "Redo the caller's last undone request (body: {})",
                "parameters": [WAIT, VERSION],
                "responses": SUBMITTED,
            }
        },
        "/history": {
            "get": {
                "summary": "What changed a cell or a sales row, or what a user did; newest first",
                "parameters": [
                    VERSION,
                    _query(
                        "table",
                        {"type": "string", "enum": ["sales", "sales_summary_by_product_family"]},
                        "with condition: whose history",
                    ),
                    _query(
                        "condition",
                        {"type": "string"},
                        'JSON object naming one summary cell, or {"sale_id": n}',
                    ),
                    _query("user", {"type": "string", "maxLength": 40}, "a user's requests"),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "events"),
                    _query("before", SEQ, "only events before this seq (paging)"),
                ],
                "responses": {"200": _ok("events", HISTORY), **_errors(400, 401, 404, 422)},
            }
        },
        "/holds": {
            "post": {
                "summary": "Hold or release a summary cell",
                "parameters": [WAIT],
                "requestBody": {
                    "required": True,
                    **_json({"type": "object", "required": ["data"], "properties": {"data": HOLD}}),
                },
                "responses": SUBMITTED,
            },
            "get": {
                "summary": "Current holds",
                "parameters": [VERSION],
                "responses": {
                    "200": _ok("holds", _object({"holds": {"type": "array", "items": HOLD_ROW}})),
                    **_errors(400, 401, 404),
                },
            },
        },
        "/versions": {
            "get": {
                "summary": "The versions: actual and every plan version",
                "responses": {
                    "200": _ok(
                        "versions", _object({"versions": {"type": "array", "items": VERSION_ROW}})
                    ),
                    **_errors(401),
                },
            },
            "post": {
                "summary": "Create a version as a copy of another, net prices scaled by a percent",
                "parameters": [WAIT],
                "requestBody": {
                    "required": True,
                    **_json(
                        {
                            "type": "object",
                            "required": ["data"],
                            "properties": {"data": NEW_VERSION},
                        }
                    ),
                },
                "responses": SUBMITTED,
            },
        },
        "/versions/{name}/lock": {
            "post": {
                "summary": "Lock a version against edits (admin; body: {})",
                "parameters": [_path("name", VERSION_NAME_SCHEMA), WAIT],
                "responses": SUBMITTED,
            }
        },
        "/versions/{name}/unlock": {
            "post": {
                "summary": "Unlock a version (admin; body: {})",
                "parameters": [_path("name", VERSION_NAME_SCHEMA), WAIT],
                "responses": SUBMITTED,
            }
        },
        "/compare": {
            "get": {
                "summary": "Variance of version a against b per summary cell: a, b, a-b, (a-b)/b",
                "parameters": [
                    {**_query("a", VERSION_NAME_SCHEMA, "the version compared"), "required": True},
                    _query("b", VERSION_NAME_SCHEMA, "the version compared with (actual)"),
                    _query("measure", {"enum": ["net_amount", "quantity"]}, "net_amount"),
                    _query("condition", {"type": "string"}, "JSON object naming cells"),
                    _query("limit", {"type": "integer", "minimum": 1}, "rows per page"),
                    _query("offset", {"type": "integer", "minimum": 0}, "rows to skip"),
                    _query("format", {"enum": ["json", "csv"]}, "json (default) or csv"),
                ],
                "responses": {
                    "200": {
                        **_ok("variance", COMPARE),
                        "content": {
                            **_ok("variance", COMPARE)["content"],
                            "text/csv": {"schema": {"type": "string"}},
                        },
                    },
                    **_errors(400, 401, 404, 422),
                },
            }
        },
        "/requests/{request_id}": {
            "get": {
                "summary": "Status of a queued request",
                "parameters": [_path("request_id", SEQ)],
                "responses": {"200": _ok("status", STATUS), **_errors(400, 401, 404, 503)},
            }
        },
        "/get_updates": {
            "get": {
                "summary": "Changed rows after a sequence number (or the latest)",
                "parameters": [
                    _query("since", SEQ, "last seq seen"),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "entries"),
                ],
                "responses": {"200": _ok("updates", UPDATES), **_errors(400, 401, 503)},
            }
        },
        "/view_table/{table}": {
            "get": {
                "summary": "A page of a table",
                "parameters": [
                    _path("table", TABLE),
                    _query("limit", {"type": "integer", "minimum": 1}, "rows per page"),
                    _query("offset", {"type": "integer", "minimum": 0}, "rows to skip"),
                    _query("order", {"type": "string"}, "col or -col, comma-separated"),
                    _query("condition", {"type": "string"}, "JSON object or condition text"),
                    VERSION,
                ],
                "responses": {"200": _ok("rows", PAGE), **_errors(400, 401, 404, 422)},
            }
        },
        "/reports": {
            "get": {
                "summary": "The named reports",
                "responses": {"200": _ok("reports", REPORTS), **_errors(401)},
            }
        },
        "/reports/{name}": {
            "get": {
                "summary": "Run a report (JSON, or ?format=csv)",
                "parameters": [
                    VERSION,
                    _path("name", {"type": "string"}),
                    _query("start_date", {"type": "string", "format": "date"}, "from (inclusive)"),
                    _query("end_date", {"type": "string", "format": "date"}, "to (inclusive)"),
                    _query("format", {"type": "string", "enum": ["json", "csv"]}, "output"),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 100}, "top-N"),
                ],
                "responses": {
                    "200": {
                        "description": "rows (JSON, or CSV with format=csv)",
                        "content": {
                            JSON: {
                                "schema": _object({"data": REPORT}),
                            },
                            "text/csv": {"schema": {"type": "string"}},
                        },
                    },
                    **_errors(400, 401, 404, 422),
                },
            }
        },
        "/export/{table}": {
            "get": {
                "summary": "A whole table as CSV, Parquet or xlsx (admin)",
                "parameters": [
                    VERSION,
                    _path("table", TABLE),
                    _query(
                        "format",
                        {"type": "string", "enum": ["csv", "parquet", "xlsx"]},
                        "file format",
                    ),
                ],
                "responses": {
                    "200": {"description": "the file"},
                    **_errors(400, 401, 403, 404, 422),
                },
            }
        },
        "/import/{table}": {
            "post": {
                "summary": "Import CSV or xlsx rows (admin); applied by the writer in stream order",
                "parameters": [
                    _path("table", {"type": "string", "enum": ["sales", "product", "customer"]}),
                    _query("mode", {"type": "string", "enum": ["fast", "validate"]}, "how"),
                    _query("upsert", {"type": "boolean"}, "replace rows whose key exists"),
                    _query("file_name", {"type": "string", "maxLength": 200}, "for the logs"),
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "text/csv": {"schema": {"type": "string"}},
                        XLSX: {"schema": {"type": "string", "format": "binary"}},
                    },
                },
                "responses": {
                    "200": _ok("imported; with rejected rows, the first problems", IMPORTED),
                    "202": _ok(
                        "queued",
                        {**QUEUED, "properties": {**QUEUED["properties"], "import_id": STRING}},
                    ),
                    **_errors(400, 401, 403, 404, 409, 413, 422, 503),
                },
            }
        },
        "/imports/{import_id}/log": {
            "get": {
                "summary": "The problems a validating import recorded, in row order (admin)",
                "parameters": [
                    _path("import_id", {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 100000}, "rows"),
                    _query("offset", {"type": "integer", "minimum": 0}, "rows to skip"),
                    _query("format", {"type": "string", "enum": ["json", "csv"]}, "answer format"),
                ],
                "responses": {
                    "200": {
                        "description": "the log page",
                        "content": {
                            JSON: {"schema": _ok("", IMPORT_LOG)["content"][JSON]["schema"]},
                            "text/csv": {"schema": {"type": "string"}},
                        },
                    },
                    **_errors(400, 401, 403, 422),
                },
            }
        },
        "/grid/export": {
            "get": {
                "summary": "The grid's view as an xlsx workbook: hierarchy, months, totals",
                "parameters": [
                    VERSION,
                    _query(
                        "measure",
                        {"type": "string", "enum": ["net_amount", "quantity"]},
                        "the measure shown",
                    ),
                    _query(
                        "expanded",
                        {"type": "string"},
                        'JSON list of expanded nodes: [["supplier"], ["supplier", "brand"]]',
                    ),
                ],
                "responses": {
                    "200": {"description": "the workbook", "content": {XLSX: {}}},
                    **_errors(400, 401, 404, 422),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (admin, or the metrics token)",
                "responses": {
                    "200": {"description": "text exposition", "content": {"text/plain": {}}},
                    **_errors(401, 403),
                },
            }
        },
        "/healthz": {
            "get": {
                "summary": "Health of Redis, DuckDB and the writer",
                "responses": {
                    "200": {"description": "ok", **_json(HEALTH)},
                    "503": {"description": "degraded", **_json(HEALTH)},
                },
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ducksheet",
            "version": "0.1.0",
            "description": "REST side of ducksheet; live editing is on the WebSocket /ws.",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": {"type": "string", "enum": sorted(HTTP_STATUS)},
                                "message": {"type": "string"},
                            },
                        }
                    },
                }
            },
        },
        "security": [{"bearer": []}, {}],
        "paths": paths,
    }
