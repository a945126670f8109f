"""The Postman collection, run by newman against a real server, and a check that it
covers every REST endpoint the app serves. newman comes from npm: `npm ci` at the repo
root installs it into node_modules (CI does; here the test skips without it)."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from starlette.routing import Route

from server.app import create_app
from server.config import Settings

ROOT = Path(__file__).resolve().parents[2]
NEWMAN = ROOT / "node_modules" / ".bin" / "newman"
COLLECTION = ROOT / "postman" / "ducksheet.postman_collection.json"
NOT_REST = {"/", "/ws", "/static"}  # the grid, the WebSocket, static files


def requests_of(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every request of the collection, folders flattened, in run order."""
    out: list[dict[str, Any]] = []
    for item in items:
        out.extend(requests_of(item["item"]) if "item" in item else [item])
    return out


def collection() -> dict[str, Any]:
    return json.loads(COLLECTION.read_text())


def test_collection_covers_every_rest_endpoint(tmp_path):
    app = create_app(Settings(data_dir=tmp_path))
    requests = []
    for item in requests_of(collection()["item"]):
        path = item["request"]["url"].removeprefix("{{baseUrl}}").split("?")[0]
        requests.append((item["request"]["method"], re.sub(r"\{\{[^}]+\}\}", "x", path)))
        tests = next(e for e in item["event"] if e["listen"] == "test")["script"]["exec"]
        assert any("pm.test(" in line for line in tests), item["name"]
    missing = [
        (method, route.path)
        for route in app.router.routes
        if isinstance(route, Route) and route.path not in NOT_REST
        for method in sorted((route.methods or set()) - {"HEAD"})
        if not any(m == method and route.path_regex.match(p) for m, p in requests)
    ]
    assert not missing, f"not in the collection: {missing}"
    assert {"key": "baseUrl", "value": "http://127.0.0.1:8000", "type": "string"} in (
        collection()["variable"]
    )


async def test_newman_runs_the_collection_against_a_real_server(server, tmp_path):
    if not NEWMAN.exists():
        pytest.skip(f"newman is not installed ({NEWMAN}): run `npm ci` in {ROOT}")
    if shutil.which("node") is None:
        pytest.skip("node is not installed: newman needs Node.js 16+")
    report = tmp_path / "newman.json"
    process = await asyncio.create_subprocess_exec(
        str(NEWMAN),
        "run",
        str(COLLECTION),
        "--env-var",
        f"baseUrl={server.base}",
        "--reporters",
        "cli,json",
        "--reporter-json-export",
        str(report),
        "--color",
        "off",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=ROOT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 180)
    assert process.returncode == 0, output.decode(errors="replace")[-6000:]
    stats = json.loads(report.read_text())["run"]["stats"]
    assert stats["requests"]["total"] == len(requests_of(collection()["item"]))
    assert stats["requests"]["failed"] == 0
    assert stats["assertions"]["failed"] == 0
    assert stats["assertions"]["total"] >= stats["requests"]["total"]
