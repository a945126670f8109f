"""Scenarios: each starts the real server on a scratch copy of a seeded data set and
runs one or more open-loop load phases against it."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.baseline import run_baseline
from bench.edits import build_mix
from bench.load import LoadPlan, run_load, warmup
from bench.procstat import Sampler, memory_mb, wait_until_quiet
from bench.profile import Profiler
from bench.server import (
    SERVER_CLI,
    ServerProcess,
    cached_dataset,
    http_json,
    http_post_json,
    scratch_copy,
)
from bench.stats import analyze, server_rss_mb

SCENARIOS = (
    "all", "leaf", "spread", "mixed", "paste", "fanout", "max", "baseline", "coldstart", "versions"
)  # fmt: skip
DEFAULT_RATES: dict[str, list[float]] = {
    "leaf": [1000, 2000, 5000],
    "spread": [20],
    "mixed": [1000],
    "paste": [0.5],
    "fanout": [200],
    "max": [500],
}
DEFAULT_VIEWERS = {"fanout": 1000}
DEFAULT_DURATION = {"paste": 20.0}  # 10 pastes at the default rate
WARMUP = {"paste": 2}  # requests sent (and waited for) before measuring
DEFAULT_MIX = {
    "leaf": {"leaf": 1.0},
    "spread": {"brand_month": 1.0},
    "mixed": {"leaf": 0.974, "brand_month": 0.02, "supplier_total": 0.001, "undo": 0.005},
    "paste": {"paste": 1.0},
    "fanout": {"leaf": 1.0},
    "max": {"leaf": 1.0},
}


@dataclass
class Options:
    results: Path
    sales: int = 1_000_000
    duration: float | None = None  # seconds per load phase (scenario default: 10)
    rates: list[float] | None = None
    editors: int = 10
    viewers: int | None = None
    workers: int | None = None
    compression: str | None = "deflate"
    mix: dict[str, float] | None = None
    server_env: dict[str, str] = field(default_factory=dict)
    server_cmd: tuple[str, ...] = SERVER_CLI
    step_duration: float = 5.0
    step_factor: float = 1.5
    max_p99_ms: float = 100.0
    supplier_rate: float = 1.0
    seed: int = 1
    profile: bool = False
    keep_scratch: bool = False
    wait_quiet: float = 0.0  # seconds to wait for other work on the machine to stop
    quiet_pct: float = 30.0  # "quiet": everything else below this % of one core
    stamp: str = "run"


@dataclass
class Report:
    """Everything one `python -m bench` invocation measured."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    baseline: list[dict[str, Any]] = field(default_factory=list)
    coldstart: list[dict[str, Any]] = field(default_factory=list)
    max_steps: list[dict[str, Any]] = field(default_factory=list)
    versions: list[dict[str, Any]] = field(default_factory=list)


def auto_workers(rate: float, viewers: int) -> int:
    """One load process is enough for modest rates; past that, spread the sockets over
    two (the machine has 2 cores; the generator's own CPU is reported either way)."""
    return 1 if rate <= 2000 and viewers <= 50 else 2


class Session:
    """One server process on a scratch copy of the data set, for one or more phases."""

    def __init__(self, opts: Options, label: str) -> None:
        self.opts = opts
        self.label = label
        self.db = cached_dataset(opts.results, opts.sales)
        self.data_dir: Path | None = None
        self.server: ServerProcess | None = None
        self.startup: dict[str, float] = {}
        self.phases = 0  # load phases run on this server so far

    def __enter__(self) -> Session:
        self.data_dir = scratch_copy(self.db, self.opts.results, self.label)
        self.server = ServerProcess(self.data_dir, self.opts.server_env, self.opts.server_cmd)
        self.startup = self.server.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.server is not None:
            self.server.stop()
        if self.data_dir is not None and not self.opts.keep_scratch:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def load(
        self,
        scenario: str,
        label: str,
        rate: float,
        weights: dict[str, float],
        viewers: int,
        duration: float | None = None,
    ) -> dict[str, Any]:
        """One open-loop phase; returns the analyzed run."""
        opts, server = self.opts, self.server
        assert server is not None
        mix = build_mix(server.base, weights, opts.sales)
        quiet: dict[str, float] = {}
        if opts.wait_quiet > 0:
            ours = [*server.pids().values(), os.getpid()]
            quiet = wait_until_quiet(ours, opts.quiet_pct, opts.wait_quiet)
            if quiet["waited_s"] >= 1.5:
                print(f"  (waited {quiet['waited_s']} s for the machine to quiet down)")
        self.phases += 1
        warm = warmup(
            server.ws_url,
            mix,
            count=WARMUP.get(scenario, 20),
            seed=-(opts.seed * 1000 + self.phases),
        )
        plan = LoadPlan(
            rate=rate,
            duration=duration or opts.duration or DEFAULT_DURATION.get(scenario, 10.0),
            editors=opts.editors,
            viewers=viewers,
            workers=opts.workers or auto_workers(rate, viewers),
            mix=mix,
            compression=opts.compression,
            # A new schedule for every phase: repeating the previous phase's (sale_id,
            # value) pairs would make its edits no-ops that change nothing downstream.
            seed=opts.seed * 1000 + self.phases,
        )
        pids = {**server.pids(), "bench": os.getpid()}
        sampler = Sampler(lambda: pids)
        sampler.start()
        profiler: Profiler | None = None
        if opts.profile:
            out = opts.results / f"{opts.stamp}-{_slug(label)}.profile.txt"
            profiler = Profiler(server.pid, out, plan.duration + 3)
        try:
            raw = run_load(server.ws_url, plan, warm["since"], on_started=pids.update)
        finally:
            sampler.stop()
        run = {
            "scenario": scenario,
            "label": label,
            "sales": opts.sales,
            "plan": {
                "rate": rate,
                "duration_s": plan.duration,
                "editors": plan.editors,
                "viewers": plan.viewers,
                "workers": plan.workers,
                "mix": mix.describe(),
                "compression": plan.compression or "none",
                "server_env": opts.server_env,
                "server_cmd": " ".join(opts.server_cmd),
            },
            "warmup": warm,
            "quiet": quiet,
            "startup": self.startup,
            **analyze(raw, sampler),
        }
        run["timeline"] = sampler.timeline(raw.t0)
        run["server"] = {"peak_rss_mb": {k: round(v, 1) for k, v in server.peak_rss_mb().items()}}
        _, health = http_json(f"{server.base}/healthz")
        # decide -> persisted, per batch, over the server's last 10,000 batches
        run["server"]["persist_lag_ms"] = (health or {}).get("persist_lag")
        if profiler is not None:
            run["profile"] = profiler.finish()
        _print_run(run)
        return run


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text).strip("-").lower()


def _print_run(run: dict[str, Any]) -> None:
    lat = run["latency_ms"]
    viewer, applied = lat["send_to_viewer"], lat["send_to_applied"]
    cpu = run.get("cpu", {}).get("pct", {})
    print(
        f"  {run['label']}: sent {run['rate']['sent_per_s']}/s applied "
        f"{run['rate']['applied_per_s']}/s | applied p50 {applied['p50']} p99 {applied['p99']} ms"
        f" | viewer p50 {viewer['p50']} p95 {viewer['p95']} p99 {viewer['p99']} max "
        f"{viewer['max']} ms | rejected {run['edits']['rejected']} unresolved "
        f"{run['edits']['unresolved']} | cpu server {run['cpu']['server_total_pct']}% redis "
        f"{cpu.get('redis')}% (data {cpu.get('data')}% web {cpu.get('web-1')}%) load "
        f"{run['cpu']['generator_total_pct']}% other "
        f"{run['cpu'].get('other_pct')}% | rss "
        f"{server_rss_mb(run)} MB | persist lag "
        f"{run['server'].get('persist_lag_ms')}",
        flush=True,
    )


def _rates(opts: Options, scenario: str) -> list[float]:
    return opts.rates or DEFAULT_RATES[scenario]


def _viewers(opts: Options, scenario: str) -> int:
    return opts.viewers if opts.viewers is not None else DEFAULT_VIEWERS.get(scenario, 10)


def _mix(opts: Options, scenario: str) -> dict[str, float]:
    return opts.mix or DEFAULT_MIX[scenario]


def _tag(opts: Options) -> str:
    """What differs from the defaults, for labels."""
    tags = [] if opts.compression else ["no-deflate"]
    tags += [f"{k}={v}" for k, v in sorted(opts.server_env.items())]
    return "".join(f" {t}" for t in tags)


def _k(sales: int) -> str:
    return f"{sales // 1_000_000}M" if sales % 1_000_000 == 0 else f"{sales // 1000}k"


def run_simple(opts: Options, scenario: str, report: Report) -> None:
    """leaf, mixed, paste, fanout: one server, one phase per rate."""
    viewers = _viewers(opts, scenario)
    with Session(opts, scenario) as session:
        for rate in _rates(opts, scenario):
            label = f"{scenario} {rate:g}/s {opts.editors}e+{viewers}v {_k(opts.sales)}{_tag(opts)}"
            report.runs.append(session.load(scenario, label, rate, _mix(opts, scenario), viewers))


def run_spread(opts: Options, report: Report) -> None:
    """Brand-month spreads at the target rate, brand-quarter `like` spreads at the same
    rate, then supplier-total spreads."""
    viewers = _viewers(opts, "spread")
    with Session(opts, "spread") as session:
        for rate in _rates(opts, "spread"):
            label = f"spread brand-month {rate:g}/s {_k(opts.sales)}{_tag(opts)}"
            report.runs.append(session.load("spread", label, rate, _mix(opts, "spread"), viewers))
        for rate in _rates(opts, "spread") if opts.mix is None else ():
            label = f"spread brand-quarter like {rate:g}/s {_k(opts.sales)}{_tag(opts)}"
            weights = {"brand_quarter_like": 1.0}
            report.runs.append(session.load("spread", label, rate, weights, viewers))
        if opts.mix is None and opts.supplier_rate > 0:
            label = f"spread supplier-total {opts.supplier_rate:g}/s {_k(opts.sales)}{_tag(opts)}"
            weights = {"supplier_total": 1.0}
            report.runs.append(session.load("spread", label, opts.supplier_rate, weights, viewers))


def run_max(opts: Options, report: Report) -> None:
    """Raise the leaf rate step by step until p99 send->viewer passes the limit (or the
    edits stop keeping up); then one step halfway back. Reports the last rate that held."""
    viewers = _viewers(opts, "max")
    rate = _rates(opts, "max")[0]
    held: float | None = None
    failed: float | None = None
    steps: list[dict[str, Any]] = []
    with Session(opts, "max") as session:
        while len(steps) < 12:
            label = f"max step {rate:g}/s {_k(opts.sales)}{_tag(opts)}"
            run = session.load("max", label, rate, _mix(opts, "max"), viewers, opts.step_duration)
            ok, why = _held(run, opts.max_p99_ms)
            run["held"], run["why"] = ok, why
            steps.append(run)
            if ok:
                held = rate
            else:
                failed = rate
            if failed is None:  # still holding: go up
                rate = _round2(rate * opts.step_factor)
            elif held is None:  # never held yet: go down
                rate = _round2(rate / 2)
                if rate < 10:
                    break
            else:  # narrow the gap between the last hold and the first miss once or twice
                rate = _round2((held + failed) / 2)
                if failed / held <= 1.15 or rate in (held, failed):
                    break
    report.runs.extend(steps)
    report.max_steps.append(
        {
            "sales": opts.sales,
            "held_rate": held,
            "failed_rate": failed,
            "p99_limit_ms": opts.max_p99_ms,
            "steps": [
                {
                    "rate": s["plan"]["rate"],
                    "held": s["held"],
                    "why": s["why"],
                    "applied_per_s": s["rate"]["applied_per_s"],
                    "viewer_p99_ms": s["latency_ms"]["send_to_viewer"]["p99"],
                    "server_cpu_pct": s["cpu"]["pct"].get("server"),
                    "generator_total_pct": s["cpu"]["generator_total_pct"],
                }
                for s in steps
            ],
        }
    )
    print(f"  max: held {held}/s, failed {failed}/s (p99 limit {opts.max_p99_ms} ms)")


def _round2(rate: float) -> float:
    """Two significant digits: 1234 -> 1200, 15 -> 15."""
    digits = len(str(int(rate))) - 2
    return float(round(rate, -digits)) if digits > 0 else float(round(rate))


def _held(run: dict[str, Any], limit_ms: float) -> tuple[bool, str]:
    p99 = run["latency_ms"]["send_to_viewer"]["p99"]
    rate = run["rate"]
    edits = run["edits"]
    if edits["unresolved"] or edits["rejected"]:
        return False, f"{edits['unresolved']} unresolved, rejected {edits['rejected']}"
    if rate["sent_per_s"] < 0.97 * rate["target"]:
        return False, f"the generator sent only {rate['sent_per_s']}/s"
    if p99 is None or p99 > limit_ms:
        return False, f"p99 send->viewer {p99} ms > {limit_ms} ms"
    if run["viewers"]["undelivered_pairs"]:
        return False, f"{run['viewers']['undelivered_pairs']} edit/viewer pairs never delivered"
    return True, f"p99 {p99} ms"


def run_baseline_scenario(opts: Options, report: Report) -> None:
    db = cached_dataset(opts.results, opts.sales)
    scratch = opts.results / "scratch" / f"baseline-{opts.stamp}"
    result = run_baseline(db, scratch)
    print(
        f"  baseline {_k(opts.sales)}: {result['edits_per_s']} edits/s "
        f"(p50 {result['latency_ms']['p50']} ms per edit, cpu {result['cpu_pct']}%)"
    )
    report.baseline.append(result)


def run_coldstart(opts: Options, report: Report, launches: int = 3) -> None:
    """Launch `serve` on an existing data dir until /healthz answers 200: first on a
    fresh copy (no Redis files yet), then restarts of the same dir (AOF present)."""
    db = cached_dataset(opts.results, opts.sales)
    data_dir = scratch_copy(db, opts.results, "coldstart")
    try:
        for n in range(launches):
            server = ServerProcess(data_dir, opts.server_env, opts.server_cmd)
            started = time.monotonic()
            startup = server.start()
            server.stop()
            entry = {
                "sales": opts.sales,
                "launch": n + 1,
                "kind": "fresh copy" if n == 0 else "restart",
                **startup,
                "stop_s": round(time.monotonic() - started - startup["to_healthy_s"], 3),
            }
            report.coldstart.append(entry)
            print(f"  cold start {_k(opts.sales)} #{n + 1}: healthy in {entry['to_healthy_s']} s")
    finally:
        if not opts.keep_scratch:
            shutil.rmtree(data_dir, ignore_errors=True)


def run_versions(opts: Options, report: Report, copies: int = 3) -> None:
    """Create `copies` versions of actual (+5 % each) on a running server: the time of
    each copy (POST /versions?wait=30 until applied), until the writer decides the next
    request of that version (it has loaded the version's state), and the data
    process's RSS then (one working state per version)."""
    db = cached_dataset(opts.results, opts.sales)
    data_dir = scratch_copy(db, opts.results, "versions")
    server = ServerProcess(data_dir, opts.server_env, opts.server_cmd)
    try:
        server.start()
        role = "data" if "data" in server.pids() else "server"
        before = memory_mb(server.pids()[role]).get("VmRSS", 0.0)
        print(f"  data process RSS with actual alone: {before:.0f} MB", flush=True)
        for n in range(1, copies + 1):
            started = time.monotonic()
            status, body = http_post_json(
                f"{server.base}/versions?wait=30",
                {"data": {"name": f"bench-{n}", "from": "actual", "percent": 5}},
                timeout=90,
            )
            seconds = time.monotonic() - started
            if status != 200:
                raise RuntimeError(f"creating version {n} failed: {status} {body}")
            # the writer loads the new version's state after publishing the copy: the
            # next request it decides (an undo with nothing to undo) waits for that
            http_post_json(f"{server.base}/undo?wait=30&version=bench-{n}", {}, timeout=60)
            ready = time.monotonic() - started
            memory = memory_mb(server.pids()[role])
            entry = {
                "sales": opts.sales,
                "versions": n + 1,
                "copy_s": round(seconds, 3),
                "ready_s": round(ready, 3),
                "rss_mb": round(memory.get("VmRSS", 0.0), 1),
                "peak_rss_mb": round(memory.get("VmHWM", 0.0), 1),
                "rss_before_mb": round(before, 1),
            }
            report.versions.append(entry)
            print(
                f"  version {n}: copied {_k(opts.sales)} rows in {entry['copy_s']} s, "
                f"editable after {entry['ready_s']} s; "
                f"data RSS {entry['rss_mb']} MB (peak {entry['peak_rss_mb']})",
                flush=True,
            )
    finally:
        server.stop()
        if not opts.keep_scratch:
            shutil.rmtree(data_dir, ignore_errors=True)


def run(scenario: str, opts: Options, report: Report) -> None:
    print(f"== {scenario} at {opts.sales:,} sales rows", flush=True)
    if scenario == "all":
        run_coldstart(opts, report)
        run_baseline_scenario(opts, report)
        for name in ("leaf", "spread", "mixed", "paste", "fanout", "max"):
            run(name, replace(opts, rates=None), report)
    elif scenario in ("leaf", "mixed", "paste", "fanout"):
        run_simple(opts, scenario, report)
    elif scenario == "spread":
        run_spread(opts, report)
    elif scenario == "max":
        run_max(opts, report)
    elif scenario == "baseline":
        run_baseline_scenario(opts, report)
    elif scenario == "coldstart":
        run_coldstart(opts, report)
    elif scenario == "versions":
        run_versions(opts, report)
    else:
        raise ValueError(f"unknown scenario {scenario!r}")
