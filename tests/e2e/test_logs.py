"""DUCKSHEET_LOG_FORMAT=json: one JSON object a line, and one edit followed by its ids
from the edge to the writer to the hub."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from helpers import serve_process

from protocol.codec import parse_seq
from server import logs
from server.edge.request_context import incoming_id


def json_lines(log: Path) -> list[dict]:
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # every line parses, or the test fails


def test_one_edit_can_be_followed_through_the_json_log(data_dir: Path):
    env = {"DUCKSHEET_LOG_FORMAT": "json", "DUCKSHEET_LOG_LEVEL": "debug"}
    with serve_process(data_dir, env) as (base, log):
        edit = {"table": "sales", "column": "quantity", "value": 4, "condition": {"sale_id": 1}}
        response = httpx.post(
            f"{base}/update_cell?wait=5",
            json={"data": edit},
            headers={"x-request-id": "trace-me-1"},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        assert response.headers["x-request-id"] == "trace-me-1"
        stream_id = response.json()["data"]["request_id"]
        deadline = time.monotonic() + 5
        while "outcome delivered" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
    lines = json_lines(log)
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    queued = next(line for line in lines if line["message"] == "queued")
    assert queued["request_id"] == "trace-me-1" and queued["stream_id"] == stream_id
    batch = next(line for line in lines if line["message"] == "batch decided")
    assert parse_seq(batch["first"]) <= parse_seq(stream_id) <= parse_seq(batch["last"])
    delivered = next(line for line in lines if line["message"] == "outcome delivered")
    assert delivered["stream_id"] == stream_id and delivered["seq"] in batch["seqs"]
    access = next(line for line in lines if line.get("path") == "/update_cell")
    assert access["request_id"] == "trace-me-1" and access["status"] == 200
    assert any("running on" in line["message"] for line in lines)  # uvicorn's own, as JSON


def test_a_hostile_request_id_is_replaced():
    scope = {"headers": [(b"x-request-id", b'evil"\n{"level":"error"}')]}
    rid = incoming_id(scope)
    assert rid.isalnum() and len(rid) == 16


def test_bad_settings_are_refused():
    with pytest.raises(SystemExit):
        logs.log_format({"DUCKSHEET_LOG_FORMAT": "xml"})
    with pytest.raises(SystemExit):
        logs.log_level({"DUCKSHEET_LOG_LEVEL": "loud"})
    assert logs.log_format({}) == "text"
