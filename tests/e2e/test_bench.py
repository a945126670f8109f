"""A tiny smoke run of the benchmark harness: real server subprocess, real load workers.

No timing assertions (timing belongs in bench/): only that the run completes, every
edit is applied and seen by every viewer, and the result files are written.
"""

from __future__ import annotations

import itertools
import json
import random
import sys
import zlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # bench/ is not an installed package
    sys.path.insert(0, str(ROOT))

from bench.__main__ import main  # noqa: E402
from bench.report import _marked, checks, faults, server_source  # noqa: E402
from bench.scenarios import Report  # noqa: E402
from bench.stats import server_rss_mb  # noqa: E402


def test_leaf_smoke_run_applies_every_edit_and_writes_results(tmp_path: Path):
    argv = ["leaf", "--sales", "3000", "--duration", "2", "--rate", "50"]
    argv += ["--editors", "2", "--viewers", "2", "--results", str(tmp_path)]
    assert main(argv) == 0

    [json_path] = tmp_path.glob("*-leaf.json")
    markdown = json_path.with_suffix(".md")
    assert markdown.exists()
    data = json.loads(json_path.read_text())
    [run] = data["runs"]
    edits = run["edits"]
    assert edits["scheduled"] == 100  # 2 s at 50 edits/s
    assert edits["applied"] == 100
    assert edits["rejected"] == {} and edits["unresolved"] == 0
    assert run["viewers"]["count"] == 2
    assert run["viewers"]["undelivered_pairs"] == 0
    assert run["latency_ms"]["send_to_viewer"]["n"] == 200  # every edit at both viewers
    assert run["latency_ms"]["send_to_applied"]["n"] == 100
    assert run["cpu"]["pct"]["server"] >= 0
    assert run["server"]["peak_rss_mb"]["server"] > 0
    assert server_rss_mb(run) > run["server"]["peak_rss_mb"]["data"] > 0
    assert "leaf 50/s" in markdown.read_text()
    server = data["meta"]["server"]  # which code was measured
    assert len(server["commit"]) == 40 and isinstance(server["dirty"], bool)
    assert f"`{server['commit'][:12]}`" in markdown.read_text()
    # A PNG is written only when matplotlib is installed; it is not asserted here.
    assert not list((tmp_path / "scratch").glob("*/ducksheet.duckdb"))  # scratch cleaned


def test_paste_and_undo_smoke_runs_apply_every_block(tmp_path: Path):
    argv = ["paste", "--sales", "3000", "--duration", "2", "--rate", "1"]
    argv += ["--editors", "1", "--viewers", "2", "--results", str(tmp_path), "--no-plot"]
    assert main(argv) == 0
    [run] = json.loads(next(tmp_path.glob("*-paste.json")).read_text())["runs"]
    assert run["edits"]["applied"] == 2 and run["edits"]["rejected"] == {}
    assert run["edits"]["by_kind"] == {"paste": 2}
    assert run["latency_ms"]["send_to_viewer"]["n"] == 4
    argv = ["mixed", "--sales", "3000", "--duration", "2", "--rate", "20", "--mix"]
    argv += ["leaf=1,undo=1", "--editors", "1", "--viewers", "1", "--results", str(tmp_path)]
    argv += ["--no-plot"]  # the leaf smoke run draws the plot
    assert main(argv) == 0
    [run] = json.loads(next(tmp_path.glob("*-mixed.json")).read_text())["runs"]
    assert run["edits"]["by_kind"] == {"leaf": 20, "undo": 20}
    assert run["edits"]["applied"] == 40  # each undo takes back the edit before it
    assert run["edits"]["unresolved"] == 0


def test_the_lean_viewer_masks_its_frames_as_a_server_expects():
    from websockets.frames import Frame
    from websockets.streams import StreamReader

    from bench.lean import OP_PONG, OP_TEXT, client_frame

    for opcode, size in (
        (OP_TEXT, 0),
        (OP_PONG, 4),
        (OP_TEXT, 125),
        (OP_TEXT, 126),
        (OP_TEXT, 70_001),
    ):
        payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
        reader = StreamReader()
        reader.feed_data(client_frame(opcode, payload))
        parser = Frame.parse(reader.read_exact, mask=True)
        try:
            next(parser)
        except StopIteration as done:
            frame = done.value
        else:
            raise AssertionError("the frame is incomplete")
        assert (frame.opcode, frame.data, frame.fin) == (opcode, payload, True)
        assert not reader.buffer  # nothing left over


async def test_the_lean_socket_reads_frames_in_any_chunking():
    """Small and large frames (a large one collected chunk by chunk), split at random
    points, come out whole and in order, each timed by the chunk that completed it."""
    from websockets.frames import Frame, Opcode

    from bench.lean import LARGE_FRAME, LeanSocket

    payloads = [b"a" * 3, bytes(range(256)) * (LARGE_FRAME // 64), b"", b"z" * 200, b"q" * 70_000]
    stream = b"".join(Frame(Opcode.TEXT, p).serialize(mask=False) for p in payloads)
    rng = random.Random(5)
    for _ in range(30):
        got: list[tuple[bytes, float]] = []
        sock = LeanSocket("t", None, False, lambda data, now, _, got=got: got.append((data, now)))
        sock._handshake_done = True
        sock.greeted.set_result({})
        cuts = sorted(rng.sample(range(1, len(stream)), rng.randint(1, 40)))
        for start, end in itertools.pairwise([0, *cuts, len(stream)]):
            sock.data_received(stream[start:end])
        assert [data for data, _ in got] == payloads
        assert [now for _, now in got] == sorted(now for _, now in got)
        assert not sock._buffer and not sock._missing


async def test_a_lean_socket_inflates_updates_only_to_their_head():
    """The bench reads an updates frame's type and seq: when the server compresses each
    message on its own, a socket inflates no more of one; of other messages, all."""
    from bench.lean import HEAD, LeanSocket
    from server.hub.wire import Wire

    rows = b"1," * 500 + b"2]}"
    texts = [b'{"type":"updates","seq":"%d-0","rows":[' % n + rows for n in (7, 8)]
    texts.append(b'{"type":"rejected","error":{"message":"' + b"x" * 600 + b'"}}')
    wires = [Wire(text).deflated(15) for text in texts]
    for head_of, independent in ((b'{"type":"updates"', True), (None, True), (b"{", False)):
        got: list[tuple[bytes, int]] = []
        sock = LeanSocket(
            "t", None, True, lambda data, now, size, got=got: got.append((data, size))
        )
        sock.head_of = head_of
        sock._handshake_done = True
        sock._independent = independent
        sock._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
        sock.greeted.set_result({})
        sock.data_received(b"".join(wires))
        heads = head_of is not None and independent
        assert [data for data, _ in got] == [t[:HEAD] if heads else t for t in texts[:2]] + [
            texts[2]  # not an update: all of it
        ]
        assert [size for _, size in got] == [w[1] & 0x7F for w in wires]  # as sent (< 126)


def test_a_run_that_lost_anything_is_marked_in_the_targets():
    run = {
        "edits": {"unresolved": 2, "rejected": {}},
        "viewers": {"undelivered_pairs": 0, "closed": {"1013": 1, "1000": 3}},
        "editors_closed": {"1000": 10},
    }
    assert faults(run) == {
        "unresolved": 2,
        "undelivered": 0,
        "rejected": 0,
        "editors_closed": 0,
        "viewers_closed": 1,
    }
    assert _marked(run, "p99 9 ms").endswith("[UNCLEAN: 2 unresolved, 1 viewers closed]")
    run["edits"]["unresolved"], run["viewers"]["closed"] = 0, {}
    assert _marked(run, "p99 9 ms") == "p99 9 ms"


def test_the_server_source_follows_a_server_cmd_pythonpath(tmp_path: Path):
    here = Path(__file__).resolve().parents[2]
    assert server_source(None, here)["tree"] == str(here)
    other = server_source(("env", f"PYTHONPATH={tmp_path}", "python", "-P"), here)
    assert other["tree"] == str(tmp_path) and other["commit"] is None
    assert other["server_cmd"].startswith("env PYTHONPATH=")


def _run(scenario: str, rate: float, p99: float, kind: str = "leaf", **extra: Any) -> dict:
    stats = {"n": 100, "p50": p99 / 2, "p99": p99}
    return {
        "scenario": scenario,
        "sales": 1_000_000,
        "label": f"{scenario} {rate:g}/s",
        "plan": {"rate": rate, "compression": "deflate"},
        "rate": {"applied_per_s": extra.get("applied", rate), "sent_per_s": rate},
        "latency_ms": {"send_to_viewer": stats, "send_to_viewer_by_kind": {kind: stats}},
        "edits": {"unresolved": 0, "rejected": {}, "by_kind": {kind: 100}},
        "viewers": {"undelivered_pairs": 0, "closed": {}},
        "server": {
            "peak_rss_mb": {"server": 80.0, "data": extra.get("rss", 300.0), "redis": 900.0},
            "persist_lag_ms": {"p50_ms": 100.0, "p99_ms": extra.get("lag", 300.0)},
        },
    }


def test_the_targets_are_the_issues_tables():
    report = Report(
        runs=[
            _run("leaf", 1000, 9.5, lag=501.0),
            _run("leaf", 2000, 24.0),
            _run("leaf", 5000, 80.0, applied=4_900.0),
            _run("mixed", 1000, 49.0),
            _run("spread", 1, 99.0, kind="supplier_total", rss=421.0),
            _run("fanout", 200, 51.0),
            _run("paste", 0.5, 300.0, kind="paste"),
        ],
        max_steps=[{"sales": 1_000_000, "held_rate": 5_000.0}],
    )
    found = {c.target: c.passed for c in checks(report)}
    assert found["leaf 1M at 1,000/s: p99 <= 10 ms"] is True
    assert found["leaf 1M at 2,000/s: p99 <= 25 ms"] is True
    assert found["leaf 1M at 5,000/s: all applied, p99 <= 100 ms"] is False  # 4,900 applied
    assert found["max 1M: >= 5,000 edits/s held at p99 <= 100 ms"] is True
    assert found["persistence lag at 1,000/s: p99 <= 500 ms"] is False
    assert found["mixed 1M at 1,000/s: p99 <= 50 ms"] is True
    assert found["spread 1M: supplier-total p99 <= 100 ms"] is True
    # Redis's memory is not the server's: 80 + 421
    assert found["spread 1M: server RSS <= 500 MB throughout the supplier-total spreads"] is False
    assert found["fanout 1M: 1,000 viewers, 200 edits/s, p99 <= 50 ms"] is False
    assert found["paste 1M: one 5,000-cell edit_many, p99 <= 300 ms"] is True
    assert found["cold start (1M) <= 3 s to /healthz 200"] is None  # not run
