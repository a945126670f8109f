"""A tiny smoke run of the benchmark harness: real server subprocess, real load workers.

No timing assertions (timing belongs in bench/): only that the run completes, every
edit is applied and seen by every viewer, and the result files are written.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # bench/ is not an installed package
    sys.path.insert(0, str(ROOT))

from bench.__main__ import main  # noqa: E402


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
    assert "leaf 50/s" in markdown.read_text()
    # A PNG is written only when matplotlib is installed; it is not asserted here.
    assert not list((tmp_path / "scratch").glob("*/ducksheet.duckdb"))  # scratch cleaned


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
