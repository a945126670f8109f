"""The multi-process path on one machine: web processes and a data process as separate
`ducksheet serve` processes against one Redis (DESIGN §10), and the supervisor that
runs them as one command. Loopback only; every wait is bounded."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import websockets
from helpers import Client

SERVE = [sys.executable, "-m", "server.cli", "serve"]
LISTENING = re.compile(rb"running on (http://127\.0\.0\.1:\d+)")
START_TIMEOUT = 60


@dataclass
class Web:
    base: str
    pid: int | None = None

    @property
    def ws_url(self) -> str:
        return self.base.replace("http://", "ws://") + "/ws"


def _spawn(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [*SERVE, *args], stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env}
        )


def _wait_for(log: Path, process: subprocess.Popen[bytes], pattern: re.Pattern[bytes]) -> str:
    deadline = time.monotonic() + START_TIMEOUT
    while not (found := pattern.search(log.read_bytes())):
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    return found.group(1).decode() if found.groups() else ""


def _stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        raise


@pytest.fixture
def roles(tmp_path: Path, data_dir: Path, redis_url: str) -> Iterator[tuple[Web, Web]]:
    """One data process over `data_dir` and two web processes, each web with a data dir
    of its own (so nothing can pass through the file system)."""
    env = {"REDIS_URL": redis_url, "DUCKSHEET_DATA_DIR": ""}
    data = _spawn(["--role", "data", "--data-dir", str(data_dir)], tmp_path / "data.log", env)
    processes = [data]
    try:
        _wait_for(tmp_path / "data.log", data, re.compile(rb"serving reads on"))
        webs = []
        for name in ("a", "b"):
            log = tmp_path / f"web-{name}.log"
            args = ["--role", "web", "--data-dir", str(tmp_path / f"web-{name}"), "--port", "0"]
            processes.append(_spawn(args, log, env))
            webs.append(Web(_wait_for(log, processes[-1], LISTENING), processes[-1].pid))
        yield webs[0], webs[1]
    finally:
        for process in processes[1:]:
            _stop(process)
        _stop(data)


async def test_an_edit_on_one_web_process_reaches_a_viewer_on_the_other(roles):
    a, b = roles
    async with httpx.AsyncClient(base_url=b.base, timeout=10) as http:
        sale_id = (await http.get("/view_table/sales?limit=1")).json()["data"]["rows"][0]["sale_id"]
    viewer = await Client.connect(b, "viewer")
    await viewer.next("snapshot")
    editor = await Client.connect(a, "editor")
    await editor.next("snapshot")
    edit = {
        "table": "sales",
        "column": "quantity",
        "value": 4242,
        "condition": {"sale_id": sale_id},
    }
    await editor.edit("e1", **edit)
    applied = await editor.next("applied", id="e1")
    update = await viewer.next("updates", seq=applied["seq"])
    assert [row["quantity"] for row in update["base"] if row["sale_id"] == sale_id] == [4242]
    await editor.close()
    await viewer.close()


async def test_reads_through_either_web_process_are_the_same(roles):
    a, b = roles
    paths = [
        "/view_table/sales?limit=50&order=-quantity",
        "/view_table/sales_summary_by_product_family?limit=100&condition=%7B%22level%22%3A7%7D",
        "/holds",
        "/reports/top-5-by-revenue?limit=3",
        "/reports/month-pivot?format=csv",
        "/export/product?format=csv",
    ]
    async with (
        httpx.AsyncClient(base_url=a.base, timeout=10) as http_a,
        httpx.AsyncClient(base_url=b.base, timeout=10) as http_b,
    ):
        row = await http_a.get("/view_table/sales?condition=%7B%22sale_id%22%3A2%7D")
        quantity = row.json()["data"]["rows"][0]["quantity"] + 1  # a change, so history has it
        request = {
            "table": "sales",
            "column": "quantity",
            "value": quantity,
            "condition": {"sale_id": 2},
        }
        posted = await http_a.post("/update_cell?wait=10", json={"data": request})
        assert posted.status_code == 200, posted.text
        request_id = posted.json()["data"]["request_id"]
        paths.append(f"/requests/{request_id}")
        paths.append("/history?table=sales&condition=%7B%22sale_id%22%3A2%7D")
        paths.append("/history?user=rest&limit=5")
        for path in paths:
            answer_a, answer_b = await http_a.get(path), await http_b.get(path)
            assert answer_a.status_code == answer_b.status_code == 200, (path, answer_a.text)
            assert answer_a.content == answer_b.content, path
        status = (await http_b.get(f"/requests/{request_id}")).json()["data"]
        assert status["status"] == "applied"
        health = (await http_b.get("/healthz")).json()
        assert health["status"] == "ok" and health["last_applied"] is not None
        (event,) = (await http_b.get(paths[-2])).json()["data"]["events"]
        assert event["request"] == request_id and event["new"] == {"quantity": quantity}
        missing = await http_b.get("/view_table/nope")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_table"


def _maps_duckdb(pid: int) -> bool:
    return "duckdb" in Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/<pid>/maps")
async def test_text_conditions_through_a_web_process_parse_in_the_data_process(roles):
    """A web process holds no DuckDB: the data process parses its text conditions with
    DuckDB's parser, the answers are those of the same condition as an object, and a
    bad one is refused as it is everywhere (REST and WebSocket, reads and edits)."""
    a, b = roles
    text = "supplier = 'x' OR quantity BETWEEN 2 AND 3"  # not an equality: stays text
    async with httpx.AsyncClient(base_url=a.base, timeout=10) as http:
        view = await http.get("/view_table/sales", params={"condition": text, "limit": 1000})
        assert view.status_code == 422 and view.json()["error"]["code"] == "unknown_column"
        between = "quantity BETWEEN 2 AND 3 AND sale_id < 40"
        view = await http.get("/view_table/sales", params={"condition": between, "limit": 1000})
        assert view.status_code == 200, view.text
        rows = view.json()["data"]["rows"]
        assert rows and all(2 <= r["quantity"] <= 3 and r["sale_id"] < 40 for r in rows)
        again = await http.get("/view_table/sales", params={"condition": between, "limit": 1000})
        assert again.json()["data"]["rows"] == rows  # the tree kept from the first
        simple = await http.get("/view_table/sales", params={"condition": "sale_id = 2"})
        by_object = await http.get("/view_table/sales?condition=%7B%22sale_id%22%3A2%7D")
        assert simple.json()["data"]["rows"] == by_object.json()["data"]["rows"]
        edit = {"table": "sales", "column": "quantity", "value": 7, "condition": "sale_id = 2"}
        posted = await http.post("/update_cell?wait=10", json={"data": edit})
        assert posted.status_code == 200 and posted.json()["data"]["status"] == "applied"
        bad = {**edit, "condition": "sale_id = (SELECT 1)"}
        refused = await http.post("/update_cell", json={"data": bad})
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "bad_condition"
        history = await http.get("/history", params={"table": "sales", "condition": "sale_id = 2"})
        assert history.json()["data"]["events"][0]["new"] == {"quantity": 7}
    editor = await Client.connect(b, "editor")
    await editor.next("snapshot")
    await editor.edit("t1", **{**edit, "value": 8, "condition": "sale_id = 2 AND quantity = 7"})
    assert (await editor.next("applied", id="t1"))["seq"]
    await editor.edit("t2", **{**edit, "condition": "quantity ="})
    assert (await editor.next("rejected", id="t2"))["error"]["code"] == "bad_condition"
    await editor.close()
    assert a.pid is not None and b.pid is not None
    assert not _maps_duckdb(a.pid) and not _maps_duckdb(b.pid)


async def test_an_import_through_a_web_process_without_the_data_dir(roles):
    _, b = roles
    body = "customer_id,customer_name,email,region,segment\n900001,New Co,new@example.com,EU,SMB\n"
    async with httpx.AsyncClient(base_url=b.base, timeout=30) as http:
        answer = await http.post(
            "/import/customer", content=body, headers={"content-type": "text/csv"}
        )
        assert answer.status_code == 200, answer.text
        rows = await http.get("/view_table/customer?condition=%7B%22customer_id%22%3A900001%7D")
        assert rows.json()["data"]["rows"][0]["customer_name"] == "New Co"


async def test_presence_is_seen_across_web_processes(roles):
    a, b = roles
    ann = await Client.connect(a, "ann")
    bob = await Client.connect(b, "bob")
    await ann.next("snapshot")
    await bob.next("snapshot")
    cell = {"supplier": "S", "brand": "B", "family": None, "month": "2024-01"}
    await ann.send({"type": "cursor", "cell": cell})
    seen = await bob.next("presence", name="ann")
    assert seen["cell"] == cell
    carol = await Client.connect(b, "carol")
    welcome = await carol.next("welcome")
    assert [(p["name"], p["cell"]) for p in welcome["presence"]] == [("ann", cell)]
    await ann.close()
    gone = await bob.next("presence", name="ann")
    assert gone["gone"] is True
    await bob.close()
    await carol.close()


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


def _eventually(found: Callable[[], set[int]], timeout: float) -> set[int]:
    deadline = time.monotonic() + timeout
    while not (result := found()):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    return result


def _is_web(pid: int) -> bool:
    return b"\0web\0" in Path(f"/proc/{pid}/cmdline").read_bytes()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


async def test_serve_with_web_workers_runs_every_role_and_sigterm_stops_them_all(
    tmp_path: Path, data_dir: Path
):
    log = tmp_path / "serve.log"
    env = {"REDIS_URL": "", "DUCKSHEET_REDIS_URL": ""}
    process = _spawn(["--data-dir", str(data_dir), "--port", "0", "--web-workers", "2"], log, env)
    try:
        web = Web(_wait_for(log, process, LISTENING))
        children = _children(process.pid)
        assert len(children) == 4, log.read_text()  # redis, data, two web processes
        async with httpx.AsyncClient(base_url=web.base, timeout=10) as http:
            assert (await http.get("/healthz")).json()["status"] == "ok"
            request = {
                "table": "sales",
                "column": "quantity",
                "value": 3,
                "condition": {"sale_id": 1},
            }
            assert (
                await http.post("/update_cell?wait=10", json={"data": request})
            ).status_code == 200
        viewers = [await Client.connect(web, f"v{n}") for n in range(4)]
        for viewer in viewers:
            await viewer.next("snapshot")

        # a web process that dies is replaced
        os.kill(next(pid for pid in children if _is_web(pid)), signal.SIGKILL)
        replaced = await asyncio.to_thread(
            _eventually, lambda: set(_children(process.pid)) - set(children), 30
        )
        assert len(replaced) == 1
        assert b"restarting the web-" in log.read_bytes()

        await asyncio.sleep(0.5)  # the killed process's sockets are seen closed
        survivors = [v for v in viewers if v.ws.state is websockets.State.OPEN]
        everyone = _children(process.pid)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 60) in (0, -signal.SIGTERM)
        for viewer in survivors:
            with contextlib.suppress(websockets.ConnectionClosed):
                async with asyncio.timeout(10):
                    while True:
                        await viewer.ws.recv()
            assert viewer.ws.close_code == 1001
        assert not [pid for pid in everyone if _alive(pid)]
        assert b"data process stopped" in log.read_bytes()
    finally:
        if process.poll() is None:
            process.kill()
