"""ducksheet benchmarks: a real server subprocess, an open-loop WebSocket load
generator, the naive-design baseline, and JSON/Markdown/PNG reports.

Run as `python -m bench [scenario] [options]` (see `python -m bench --help`).
Timing lives here, never in the test suite's assertions.
"""
