"""GET /metrics: what an operator scrapes, who may scrape it, and the sum across
processes in multi-process mode."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
from conftest import run_server
from helpers import Client, serve_process, some_sales
from prometheus_client.parser import text_string_to_metric_families

from protocol.catalog import SUMMARY
from server import metrics_dir
from server.config import Settings

ADMIN, VIEWER, SCRAPER = "a" * 16 + "-admin", "v" * 16 + "-viewer", "s" * 16 + "-metrics"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of an exposition."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


async def scrape(http: httpx.AsyncClient, **headers: str) -> dict:
    response = await http.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


async def test_edits_sockets_streams_and_memory_are_measured(server):
    (sale_id,) = await some_sales(server, 1)
    async with server.client() as http:
        before = await scrape(http)
        edit = {
            "table": "sales",
            "column": "quantity",
            "value": 9,
            "condition": {"sale_id": sale_id},
        }
        assert (await http.post("/update_cell?wait=5", json={"data": edit})).status_code == 200
        bad = {"data": {**edit, "column": "nope"}}
        assert (await http.post("/update_cell", json=bad)).status_code == 422
        viewer = await Client.connect(server, "watcher")
        await viewer.next("snapshot")
        after = await scrape(http)
        await viewer.close()

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("ducksheet_requests_queued_total", kind="edit") == 1
    assert grew("ducksheet_requests_decided_total", status="applied", code="") == 1
    assert grew("ducksheet_edge_rejections_total", code="unknown_column") == 1
    assert grew("ducksheet_batch_requests_count") >= 1
    assert grew("ducksheet_persist_seconds_count") >= 1
    assert grew("ducksheet_edit_latency_seconds_count") == 1
    route = {"route": "/update_cell", "method": "POST", "status": "200"}
    assert grew("ducksheet_http_request_duration_seconds_count", **route) == 1
    assert value(after, "ducksheet_websockets") >= 1
    assert value(after, "ducksheet_sessions") >= 1
    assert value(after, "ducksheet_stream_length", stream="request_duck") >= 1
    assert value(after, "ducksheet_stream_length", stream="response_duck") >= 1
    assert ("ducksheet_request_duck_pending", ()) in after
    assert value(after, "ducksheet_process_rss_bytes") > 10 * 2**20
    assert value(after, "process_resident_memory_bytes") > 10 * 2**20


async def test_metrics_need_admin_or_the_metrics_token(data_dir, redis_url):
    settings = Settings(
        data_dir=data_dir,
        redis_url=redis_url,
        tokens=f"ada:admin:{ADMIN},val:viewer:{VIEWER}",
        metrics_token=SCRAPER,
    )
    async with run_server(settings) as server, server.client() as http:
        assert (await http.get("/metrics")).status_code == 401
        viewer = await http.get("/metrics", headers={"authorization": f"Bearer {VIEWER}"})
        assert viewer.status_code == 403
        wrong = await http.get("/metrics", headers={"authorization": f"Bearer {SCRAPER}x"})
        assert wrong.status_code == 401 and SCRAPER not in wrong.text
        await scrape(http, authorization=f"Bearer {ADMIN}")
        await scrape(http, authorization=f"Bearer {SCRAPER}")


CHILD = """
from server import metrics
for _ in range(3):
    metrics.request_queued("edit")
metrics.socket_opened()
print(__import__("os").getpid())
"""


def test_multi_process_mode_sums_every_process(data_dir: Path, tmp_path: Path):
    shared = tmp_path / "metrics"
    shared.mkdir()
    env = {"PROMETHEUS_MULTIPROC_DIR": str(shared)}
    with serve_process(data_dir, env) as (base, _log):
        child = subprocess.run(
            [sys.executable, "-c", CHILD],
            env={**os.environ, **env},
            check=True,
            capture_output=True,
            text=True,
        )
        found = samples(httpx.get(f"{base}/metrics", timeout=10).text)
        metrics_dir.process_exited(int(child.stdout), str(shared))
        after_exit = samples(httpx.get(f"{base}/metrics", timeout=10).text)
    assert value(found, "ducksheet_requests_queued_total", kind="edit") == 3
    # per-process gauges carry the pid of each process that set them, until it is gone
    # (this child, and the server's own processes: supervisor, data and web)
    assert child.stdout.strip() in pids_of(found, "ducksheet_websockets")
    assert len(pids_of(found, "ducksheet_websockets")) >= 2
    assert pids_of(after_exit, "ducksheet_websockets") == pids_of(found, "ducksheet_websockets") - {
        child.stdout.strip()
    }
    assert value(after_exit, "ducksheet_requests_queued_total", kind="edit") == 3  # kept
    rss = [v for (name, _), v in found.items() if name == "ducksheet_process_rss_bytes"]
    assert max(rss) > 10 * 2**20  # the server's own


def pids_of(found: dict, metric: str) -> set[str]:
    return {dict(labels)["pid"] for name, labels in found if name == metric}


def test_serve_sums_its_data_and_web_processes(data_dir: Path):
    """Under `ducksheet serve` the web process's /metrics includes what the data process
    measured (the writer's decisions and group commits)."""
    with serve_process(data_dir, {}) as (base, _log):
        edit = {"table": "sales", "column": "quantity", "value": 6, "condition": {"sale_id": 2}}
        answer = httpx.post(f"{base}/update_cell?wait=10", json={"data": edit}, timeout=15)
        assert answer.json()["data"]["persisted"] is True
        families = "level = 0 AND month IS NOT NULL"
        cells = httpx.get(
            f"{base}/view_table/{SUMMARY}", params={"limit": 2, "condition": families}, timeout=10
        ).json()["data"]["rows"]
        paste = [
            {
                "table": SUMMARY,
                "column": "net_amount",
                "value": "123.45",
                "condition": {k: c[k] for k in ("supplier", "brand", "family", "month")},
            }
            for c in cells
        ]
        answer = httpx.post(
            f"{base}/update_cells?wait=10", json={"data": {"edits": paste}}, timeout=15
        )
        assert answer.json()["data"]["persisted"] is True
        found = samples(httpx.get(f"{base}/metrics", timeout=10).text)
    assert value(found, "ducksheet_requests_queued_total", kind="edit") >= 1  # web
    assert value(found, "ducksheet_decide_seconds_count") >= 2  # data
    assert value(found, "ducksheet_rows_after_publish_seconds_count") == 1  # the paste's
    assert value(found, "ducksheet_persist_seconds_count") >= 1  # data
