"""/openapi.json describes every REST endpoint, and a schemathesis run against a live
server (bounded examples) finds no 5xx and no response outside the schema."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
import schemathesis
from conftest import SLOW, SMALL, SMALL_SALES
from helpers import serve_process
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from seed.generate import seed_database
from server.app import create_app
from server.config import Settings
from server.edge.openapi import spec


@pytest.fixture(scope="module")
def live_base(tmp_path_factory: pytest.TempPathFactory, redis_server: str) -> Iterator[str]:
    """A server process (schemathesis calls synchronously, so not on the test's loop)."""
    data = tmp_path_factory.mktemp("openapi")
    with duckdb.connect(str(data / "ducksheet.duckdb")) as con:
        seed_database(con, sales=SMALL_SALES, seed=3, shape=SMALL)
    env = {"REDIS_URL": redis_server}
    with serve_process(data, env) as (base, _log):
        yield base


@pytest.fixture(scope="module")
def api_schema(live_base: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{live_base}/openapi.json")


# No 5xx, and every status, content type and body as documented. (Whether a request the
# schema allows is also accepted is not checked: the schema cannot say which cells exist.)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


EXAMPLES = 300 if SLOW else 40  # per operation
BUDGET = 120.0 if SLOW else 15.0  # seconds per operation; what is left over is not called


def exercise(operation: Any, base: str) -> int:
    """Call one operation with up to EXAMPLES generated cases within BUDGET seconds;
    returns how many were called."""
    until = time.monotonic() + BUDGET
    called = 0

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def call(case: schemathesis.Case) -> None:
        nonlocal called
        if time.monotonic() > until:
            return
        case.call_and_validate(base_url=base, checks=CHECKS)
        called += 1

    call()
    return called


def test_the_api_matches_its_schema_and_never_fails(api_schema, live_base):
    calls = {
        result.ok().label: exercise(result.ok(), live_base)
        for result in api_schema.get_all_operations()
    }
    assert len(calls) >= 11 and all(calls.values()), calls
    assert sum(calls.values()) >= 400, calls


def test_responses_are_described_in_detail():
    """Every 2xx JSON answer says what its `data` holds, not just `object`."""
    for path, methods in spec()["paths"].items():
        for method, operation in methods.items():
            for status, response in operation["responses"].items():
                schema = response.get("content", {}).get("application/json", {}).get("schema")
                if not status.startswith("2") or schema is None:
                    continue
                data = schema["properties"].get("data", schema)
                assert data.get("required"), (method, path, status)


def test_every_route_is_described(tmp_path: Path):
    described = set(spec()["paths"])
    app = create_app(Settings(data_dir=tmp_path))
    routes = {route.path for route in app.routes if hasattr(route, "methods")}
    undocumented = routes - described - {"/", "/openapi.json"}
    assert not undocumented


def test_openapi_is_served(live_base: str):
    body = httpx.get(f"{live_base}/openapi.json").json()
    assert body["openapi"].startswith("3.") and "/update_cell" in body["paths"]
