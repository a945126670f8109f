"""Turn the raw logs of a load run into latencies, counts and rates."""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import Counter
from typing import Any

from bench.load import RawLoad
from bench.procstat import SYSTEM, Sampler

PERCENTILES = (50, 95, 99)


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list (not empty)."""
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summarize(values: list[float]) -> dict[str, float | int | None]:
    """p50/p95/p99/max in milliseconds of latencies given in seconds."""
    if not values:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}
    ordered = sorted(values)
    out: dict[str, float | int | None] = {"n": len(ordered)}
    for p in PERCENTILES:
        out[f"p{p}"] = round(1000 * percentile(ordered, p), 2)
    out["max"] = round(1000 * ordered[-1], 2)
    return out


def _series(points: list[tuple[float, float]], origin: float, step: float) -> list[dict[str, Any]]:
    """Latency percentiles per `step` seconds of due time (for the plot)."""
    bins: dict[int, list[float]] = {}
    for due, latency in points:
        bins.setdefault(int((due - origin) / step), []).append(latency)
    out = []
    for key in sorted(bins):
        ordered = sorted(bins[key])
        out.append(
            {
                "t": round(key * step, 3),
                "n": len(ordered),
                "p50": round(1000 * percentile(ordered, 50), 2),
                "p99": round(1000 * percentile(ordered, 99), 2),
                "max": round(1000 * ordered[-1], 2),
            }
        )
    return out


def analyze(raw: RawLoad, sampler: Sampler | None = None) -> dict[str, Any]:
    plan = raw.plan
    t0, duration = raw.t0, plan.duration
    editors = [log for result in raw.results for log in result.editors]
    viewers = [log for result in raw.results for log in result.viewers]

    statuses: Counter[str] = Counter()
    send_lag: list[float] = []
    to_queued: list[float] = []
    to_applied: dict[str, list[float]] = {}
    applied: list[tuple[float, int, str]] = []  # (due, seq, kind)
    last_done = t0
    for log in editors:
        for k, due in enumerate(log.due):
            status = log.status[k]
            statuses[status or "unresolved"] += 1
            send_lag.append(log.sent[k] - due)
            if log.queued[k]:
                to_queued.append(log.queued[k] - due)
            if log.done[k]:
                last_done = max(last_done, log.done[k])
            if status == "applied":
                to_applied.setdefault(log.kinds[k], []).append(log.done[k] - due)
                applied.append((due, log.seq[k], log.kinds[k]))

    # Each viewer's first `updates` frame with seq >= the applied seq contains the edit.
    to_viewer: dict[str, list[float]] = {}
    missing = 0
    worst_per_edit: list[tuple[float, float]] = []
    first_arrival_cache: list[dict[int, float | None]] = [{} for _ in viewers]
    for due, seq, kind in applied:
        worst = 0.0
        bucket = to_viewer.setdefault(kind, [])
        for v, log in enumerate(viewers):
            cache = first_arrival_cache[v]
            if seq in cache:
                arrival = cache[seq]
            else:
                index = bisect_left(log.seqs, seq)
                arrival = log.times[index] if index < len(log.seqs) else None
                cache[seq] = arrival
            if arrival is None:
                missing += 1
                continue
            latency = arrival - due
            bucket.append(latency)
            worst = max(worst, latency)
        if viewers:
            worst_per_edit.append((due, worst))

    all_applied = [x for values in to_applied.values() for x in values]
    all_viewer = [x for values in to_viewer.values() for x in values]
    scheduled = sum(statuses.values())
    applied_count = statuses.get("applied", 0)
    wall = max(duration, last_done - t0)
    frames = sum(len(v.seqs) for v in viewers)
    frame_bytes = sum(v.frame_bytes for v in viewers)
    out: dict[str, Any] = {
        "edits": {
            "scheduled": scheduled,
            "applied": applied_count,
            "rejected": {k: n for k, n in statuses.items() if k not in ("applied", "unresolved")},
            "unresolved": statuses.get("unresolved", 0),
            "by_kind": dict(Counter(kind for log in editors for kind in log.kinds)),
        },
        "rate": {
            "target": plan.rate,
            "sent_per_s": round(scheduled / duration, 1),
            "applied_per_s": round(applied_count / wall, 1),
            "last_outcome_after_end_s": round(max(0.0, last_done - t0 - duration), 3),
        },
        "latency_ms": {
            "send_lag": summarize(send_lag),
            "send_to_queued": summarize(to_queued),
            "send_to_applied": summarize(all_applied),
            "send_to_viewer": summarize(all_viewer),
            "send_to_applied_by_kind": {k: summarize(v) for k, v in to_applied.items()},
            "send_to_viewer_by_kind": {k: summarize(v) for k, v in to_viewer.items()},
        },
        "viewers": {
            "count": len(viewers),
            "updates_frames": frames,
            "avg_frame_bytes": round(frame_bytes / frames) if frames else 0,
            "undelivered_pairs": missing,
            "closed": dict(Counter(str(v.close_code) for v in viewers if v.close_code)),
        },
        "editors_closed": dict(Counter(str(e.close_code) for e in editors if e.close_code)),
        "connect_s": round(max(r.connect_s for r in raw.results), 3),
        "series": {
            "send_to_viewer_worst": _series(worst_per_edit, t0, 0.5),
            "send_to_applied": _series(
                [
                    (due, log.done[k] - due)
                    for log in editors
                    for k, due in enumerate(log.due)
                    if log.status[k] == "applied"
                ],
                t0,
                0.5,
            ),
        },
    }
    if sampler is not None:
        out["cpu"] = cpu_usage(sampler, raw, t0, t0 + wall)
    return out


def cpu_usage(sampler: Sampler, raw: RawLoad, start: float, end: float) -> dict[str, Any]:
    """CPU % (100 = one core) of the server, Redis and load workers over the window."""
    span = max(1e-9, end - start)
    names = {name for s in sampler.samples for name in s.cpu}
    pct: dict[str, float] = {}
    seconds: dict[str, float] = {}
    for name in sorted(names):
        used = sampler.cpu_between(name, start, end)
        if used is not None:
            pct[name] = round(100 * used / span, 1)
            seconds[name] = round(used, 2)
    load = [pct[n] for n in raw.worker_pids if n in pct]
    machine = pct.pop(SYSTEM, None)
    ours = sum(pct.values())
    # serve --web-workers N: the server is the supervisor and its data and web processes
    server = [v for n, v in pct.items() if n in ("server", "data") or n.startswith("web-")]
    return {
        "window_s": round(span, 2),
        "pct": pct,
        "server_total_pct": round(sum(server), 1),
        "seconds": {k: v for k, v in seconds.items() if k != SYSTEM},
        # Busy CPU of everything else on the machine (other developers' tests...): when
        # this is high the run was contended and its numbers are pessimistic.
        "other_pct": None if machine is None else round(max(0.0, machine - ours), 1),
        "generator_total_pct": round(sum(load), 1),
        "generator_max_worker_pct": max(load, default=0.0),
        # A load process near a full core cannot keep its schedule: then the latencies
        # measure the generator, not the server.
        "generator_bottleneck": max(load, default=0.0) >= 85.0,
    }


def server_rss_mb(run: dict[str, Any]) -> float:
    """The server's peak RSS: the supervisor's, the data process's and every web
    process's peaks added (Redis not counted); a bound on their peak together."""
    peaks = run["server"]["peak_rss_mb"]
    return round(sum(mb for name, mb in peaks.items() if name != "redis"), 1)
