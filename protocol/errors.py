"""Error codes shared by the edge, the writer and clients."""

from __future__ import annotations

from typing import Any

# code -> HTTP status used when the error is answered over REST.
HTTP_STATUS: dict[str, int] = {
    "bad_json": 400,
    "bad_message": 400,
    "unknown_type": 400,
    "hello_required": 400,
    "unknown_table": 404,
    "unknown_column": 422,
    "not_editable": 422,
    "invalid_value": 422,
    "bad_condition": 422,
    "condition_required": 422,
    "not_a_cell": 422,
    "unknown_spread": 422,
    "not_found": 404,
    "method_not_allowed": 405,
    "unauthorized": 401,
    "forbidden": 403,
    "too_big": 413,
    "rate_limited": 429,
    "unavailable": 503,
    # outcomes decided by the writer (reported as `rejected`)
    "no_rows": 404,
    "too_many_rows": 422,
    "unknown_reference": 422,
    "conflict": 409,
    "cannot_spread_proportionally": 422,
    "cannot_spread_like": 422,
    "nothing_to_spread": 422,
    "all_held": 409,
    "held": 409,
    "invalid_import": 422,
    "too_many_edits": 413,
    "nothing_to_undo": 409,
    "nothing_to_redo": 409,
    "undo_conflict": 409,
    "unknown_version": 404,
    "version_exists": 409,
    "locked": 423,
    "internal": 500,
}


class ProtocolError(Exception):
    """A client-visible error: a stable `code`, a human message and optional details."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 400)

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.details}
