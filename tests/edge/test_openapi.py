"""/openapi.json describes every REST endpoint, and a schemathesis run against a live
server (bounded examples) finds no 5xx and no response outside the schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import httpx
import pytest
import schemathesis
from conftest import SMALL, SMALL_SALES
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


def test_the_api_matches_its_schema_and_never_fails(api_schema, live_base):
    checked = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=12, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def call(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=live_base, checks=CHECKS)

        call()
        checked += 1
    assert checked >= 10


def test_every_route_is_described(tmp_path: Path):
    described = set(spec()["paths"])
    app = create_app(Settings(data_dir=tmp_path))
    routes = {route.path for route in app.routes if hasattr(route, "methods")}
    undocumented = routes - described - {"/", "/openapi.json"}
    assert not undocumented


def test_openapi_is_served(live_base: str):
    body = httpx.get(f"{live_base}/openapi.json").json()
    assert body["openapi"].startswith("3.") and "/update_cell" in body["paths"]
