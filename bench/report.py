"""Results: JSON (everything), a Markdown summary, and a latency plot (matplotlib,
optional). Also the pass/miss check against the targets."""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.scenarios import Report
from bench.stats import server_rss_mb

MILLION = 1_000_000


@dataclass(frozen=True)
class Check:
    target: str
    measured: str
    passed: bool | None  # None: the run needed for it was not part of this invocation


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _name(run: dict[str, Any]) -> str:
    label: str = run["label"]
    if run["plan"]["compression"] == "none" and "no-deflate" not in label:
        label += " no-deflate"
    return label


def _runs(report: Report, scenario: str, sales: int = MILLION) -> list[dict[str, Any]]:
    return [r for r in report.runs if r["scenario"] == scenario and r["sales"] == sales]


def _viewer_p99(run: dict[str, Any], kind: str | None = None) -> float | None:
    lat = run["latency_ms"]
    stats = lat["send_to_viewer_by_kind"].get(kind, {}) if kind else lat["send_to_viewer"]
    return stats.get("p99")


def _closed(codes: dict[str, int]) -> int:
    """Sockets the server closed on the load (a normal close at the end aside)."""
    return sum(n for code, n in codes.items() if code != "1000")


def faults(run: dict[str, Any]) -> dict[str, int]:
    """What went wrong in a run besides latency: edits that never got an outcome,
    (edit, viewer) pairs never delivered, rejected edits, sockets the server closed."""
    return {
        "unresolved": run["edits"]["unresolved"],
        "undelivered": run["viewers"]["undelivered_pairs"],
        "rejected": sum(run["edits"]["rejected"].values()),
        "editors_closed": _closed(run.get("editors_closed", {})),
        "viewers_closed": _closed(run["viewers"]["closed"]),
    }


def _clean(run: dict[str, Any]) -> bool:
    return not any(faults(run).values())


def _marked(run: dict[str, Any], text: str) -> str:
    """`text`, with what went wrong in the run when anything did."""
    found = {k: n for k, n in faults(run).items() if n}
    if not found:
        return text
    return (
        text
        + " [UNCLEAN: "
        + ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in found.items())
        + "]"
    )


def best_leaf_rate(report: Report, sales: int = MILLION) -> float | None:
    """The highest leaf rate that held (p99 send->viewer within 100 ms, nothing lost)."""
    held = [s["held_rate"] for s in report.max_steps if s["sales"] == sales and s["held_rate"]]
    if held:
        return max(held)
    ok = [
        r["rate"]["applied_per_s"]
        for r in _runs(report, "leaf", sales)
        if _clean(r) and (_viewer_p99(r) or 1e9) <= 100
    ]
    return max(ok, default=None)


def peak_leaf_throughput(report: Report, sales: int = MILLION) -> float | None:
    """The most leaf edits/s applied in any run, whatever the latency."""
    runs = _runs(report, "leaf", sales) + _runs(report, "max", sales)
    return max((r["rate"]["applied_per_s"] for r in runs if _clean(r)), default=None)


def checks(report: Report) -> list[Check]:
    """Every target of the issues' tables that this report has the runs for."""
    out = _leaf_checks(report)
    out.append(_p99_check("mixed 1M at 1,000/s: p99 <= 50 ms", _runs(report, "mixed"), 50))
    out += _supplier_checks(report)
    fan = _runs(report, "fanout")
    out.append(_p99_check("fanout 1M: 1,000 viewers, 200 edits/s, p99 <= 50 ms", fan, 50))
    if fan:
        rss = max(server_rss_mb(r) for r in fan)
        out.append(Check("fanout: server peak RSS <= 500 MB", f"{rss:.0f} MB", rss <= 500))
    else:
        out.append(Check("fanout: server peak RSS <= 500 MB", "not run", None))
    spread = [r for r in _runs(report, "spread") if "brand_month" in r["edits"]["by_kind"]]
    out.append(
        _p99_check(
            "spread 1M: brand-month p99 <= 100 ms at 20 spreads/s", spread, 100, kind="brand_month"
        )
    )
    like = [r for r in _runs(report, "spread") if "brand_quarter_like" in r["edits"]["by_kind"]]
    out.append(
        _p99_check(
            "spread 1M: brand-quarter like p99 <= 50 ms at 20 spreads/s",
            like,
            50,
            kind="brand_quarter_like",
        )
    )
    paste = _runs(report, "paste")
    out.append(_p99_check("paste 1M: one 5,000-cell edit_many, p99 <= 300 ms", paste, 300))
    base = [b for b in report.baseline if b["sales"] == MILLION]
    peak = peak_leaf_throughput(report)
    target = "baseline ratio (leaf max throughput, 1M) >= 100x"
    if base and peak:
        # Like for like: the naive design's edits/s are measured back to back, whatever
        # the latency, so ducksheet's are its most applied edits/s in any leaf run.
        naive = base[-1]["edits_per_s"]
        ratio = peak / naive
        measured = f"peak applied {peak:g} / naive {naive:g} edits/s = {ratio:.0f}x"
        best = best_leaf_rate(report)
        if best:
            measured += f"; held at p99 <= 100 ms: {best:g}/s = {best / naive:.1f}x"
        out.append(Check(target, measured, ratio >= 100))
    else:
        measured = "needs the baseline and leaf/max runs at 1M"
        out.append(Check(target, measured, None))
    cold = [c for c in report.coldstart if c["sales"] == MILLION]
    if cold:
        worst = max(c["to_healthy_s"] for c in cold)
        out.append(
            Check("cold start (1M) <= 3 s to /healthz 200", f"worst {worst:g} s", worst <= 3)
        )
    else:
        out.append(Check("cold start (1M) <= 3 s to /healthz 200", "not run", None))
    out += _version_checks(report)
    return out


def _at_rate(report: Report, rate: float) -> list[dict[str, Any]]:
    return [r for r in _runs(report, "leaf") if r["plan"]["rate"] == rate]


def _leaf_checks(report: Report) -> list[Check]:
    out = [
        _p99_check("leaf 1M at 1,000/s: p99 <= 10 ms", _at_rate(report, 1000), 10),
        _p99_check("leaf 1M at 2,000/s: p99 <= 25 ms", _at_rate(report, 2000), 25),
    ]
    target = "leaf 1M at 5,000/s: all applied, p99 <= 100 ms"
    at_5k = _at_rate(report, 5000)
    parts, passed = [], bool(at_5k)
    for r in at_5k:
        p99 = _viewer_p99(r)
        applied = r["rate"]["applied_per_s"]
        passed = passed and _clean(r) and applied >= 0.99 * r["plan"]["rate"]
        passed = passed and p99 is not None and p99 <= 100
        parts.append(_marked(r, f"applied {applied:g}/s, p99 {_ms(p99)} ms"))
    out.append(Check(target, "; ".join(parts) or "not run", passed if at_5k else None))
    held = [s["held_rate"] for s in report.max_steps if s["sales"] == MILLION]
    target = "max 1M: >= 5,000 edits/s held at p99 <= 100 ms"
    if held:
        best = max(rate or 0 for rate in held)
        out.append(Check(target, f"held {best:g}/s" if best else "no step held", best >= 5000))
    else:
        out.append(Check(target, "not run", None))
    lags = [(r["server"].get("persist_lag_ms") or {}).get("p99_ms") for r in _at_rate(report, 1000)]
    target = "persistence lag at 1,000/s: p99 <= 500 ms"
    if lags:
        measured = "; ".join(f"p99 {_ms(lag)} ms" for lag in lags)
        out.append(Check(target, measured, all(lag is not None and lag <= 500 for lag in lags)))
    else:
        out.append(Check(target, "not run", None))
    return out


def _supplier_checks(report: Report) -> list[Check]:
    runs = [r for r in _runs(report, "spread") if "supplier_total" in r["edits"]["by_kind"]]
    spread = _p99_check("spread 1M: supplier-total p99 <= 100 ms", runs, 100, kind="supplier_total")
    target = "spread 1M: server RSS <= 500 MB throughout the supplier-total spreads"
    if not runs:
        return [spread, Check(target, "not run", None)]
    rss = max(server_rss_mb(r) for r in runs)
    return [spread, Check(target, f"peak {rss:.0f} MB", rss <= 500)]


def _version_checks(report: Report) -> list[Check]:
    copies = [v for v in report.versions if v["sales"] == MILLION]
    copy_target = "versions 1M: creating a version (a copy of 1M rows) <= 2 s"
    rss_target = "versions 1M: data process RSS with 3 versions <= 600 MB"
    if not copies:
        return [Check(copy_target, "not run", None), Check(rss_target, "not run", None)]
    slowest = max(v.get("ready_s", v["copy_s"]) for v in copies)
    measured = f"slowest {slowest:g} s of {len(copies)} (until the copy is editable)"
    checks = [Check(copy_target, measured, slowest <= 2)]
    three = [v for v in copies if v["versions"] == 3]
    if three:
        rss = three[0]["rss_mb"]
        checks.append(
            Check(rss_target, f"{rss:g} MB (peak {three[0]['peak_rss_mb']:g})", rss <= 600)
        )
    else:
        checks.append(Check(rss_target, "not run", None))
    return checks


def _p99_check(
    target: str, runs: list[dict[str, Any]], limit: float, kind: str | None = None
) -> Check:
    if not runs:
        return Check(target, "not run", None)
    parts, passed = [], True
    for r in runs:
        p99 = _viewer_p99(r, kind)
        parts.append(_marked(r, f"p99 {_ms(p99)} ms ({_name(r)})"))
        passed = passed and _clean(r) and p99 is not None and p99 <= limit
    return Check(target, "; ".join(parts), passed)


# -- writing -------------------------------------------------------------------------


def git_state(directory: Path) -> dict[str, Any]:
    """The commit of the git tree holding `directory` and whether it has changes."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(directory), *args], capture_output=True, text=True, check=True
            )
        except (OSError, subprocess.CalledProcessError):
            return None
        return done.stdout.strip()

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def server_source(server_cmd: tuple[str, ...] | None, here: Path) -> dict[str, Any]:
    """Where the benchmarked server's code came from: this tree, or the PYTHONPATH that
    a --server-cmd sets (e.g. `env PYTHONPATH=/tmp/base ...`)."""
    source = here
    for word in server_cmd or ():
        if word.startswith("PYTHONPATH="):
            source = Path(word.split("=", 1)[1].split(os.pathsep)[0])
    out = {"tree": str(source), **git_state(source)}
    if server_cmd:
        out["server_cmd"] = shlex.join(server_cmd)
    return out


def server_line(server: dict[str, Any]) -> str:
    if not server:
        return "commit not recorded"
    commit = (server.get("commit") or "unknown")[:12]
    dirty = {True: " (dirty tree)", False: "", None: " (dirty: unknown)"}[server.get("dirty")]
    line = f"`{commit}`{dirty} from {server.get('tree')}"
    if server.get("server_cmd"):
        line += f", `--server-cmd {server['server_cmd']}`"
    return line


def machine() -> dict[str, Any]:
    import duckdb

    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "loadavg_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "platform": platform.platform(),
    }


def write(
    report: Report, meta: dict[str, Any], directory: Path, stamp: str, plot: bool
) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    found = checks(report)
    data = {"meta": meta, **asdict(report), "targets": [asdict(c) for c in found]}
    paths = {"json": directory / f"{stamp}.json", "md": directory / f"{stamp}.md"}
    paths["json"].write_text(json.dumps(data, indent=1, default=str))
    paths["md"].write_text(markdown(report, meta, found))
    if plot:
        png = directory / f"{stamp}.png"
        if plot_latency(report, png):
            paths["png"] = png
    return paths


def markdown(report: Report, meta: dict[str, Any], found: list[Check]) -> str:
    lines = [f"# ducksheet bench {meta['stamp']}", ""]
    m = meta["machine"]
    lines += [
        f"`{meta['command']}`",
        "",
        f"{m['cpus']} CPUs ({m['cpu_model']}), load average at start "
        f"{', '.join(f'{x:.2f}' for x in m['loadavg_at_start'])}; Python {m['python']}, "
        f"DuckDB {m['duckdb']}. Server, embedded Redis and load generator share the machine; "
        "numbers are noisy when anything else runs.",
        "",
        f"Server: {server_line(meta.get('server', {}))}.",
        "",
    ]
    if report.runs:
        lines += [
            "## Load runs",
            "",
            "Latencies in ms from each edit's scheduled send time; viewer = first `updates` "
            "frame containing the edit, over every (edit, viewer) pair. CPU in % of one core; "
            "*other* is everything else busy on the machine meanwhile (other developers' "
            "work): a high value means the run was contended.",
            "",
            "| run | sent/s | applied/s | applied p50 / p99 | viewer p50 / p95 / p99 / max "
            "| send lag p99 | rejected / unresolved / undelivered / closed editors / closed "
            "viewers | server CPU | redis CPU | load CPU (workers) | other CPU "
            "| server RSS MB (data) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in report.runs:
            lat = r["latency_ms"]
            a, v = lat["send_to_applied"], lat["send_to_viewer"]
            cpu = r["cpu"]
            f = faults(r)
            lost = " / ".join(
                str(f[k])
                for k in (
                    "rejected",
                    "unresolved",
                    "undelivered",
                    "editors_closed",
                    "viewers_closed",
                )
            )
            lines.append(
                f"| {_name(r)} | {r['rate']['sent_per_s']:g} | {r['rate']['applied_per_s']:g} "
                f"| {_ms(a['p50'])} / {_ms(a['p99'])} "
                f"| {_ms(v['p50'])} / {_ms(v['p95'])} / {_ms(v['p99'])} / {_ms(v['max'])} "
                f"| {_ms(lat['send_lag']['p99'])} | {lost} "
                f"| {cpu.get('server_total_pct', cpu['pct'].get('server', 0)):g} "
                f"| {cpu['pct'].get('redis', 0):g} "
                f"| {cpu['generator_total_pct']:g} ({r['plan']['workers']}) "
                f"| {_ms(cpu.get('other_pct'))} "
                f"| {server_rss_mb(r):g} ({r['server']['peak_rss_mb'].get('data', 0):g}) |"
            )
        contended = [_name(r) for r in report.runs if (r["cpu"].get("other_pct") or 0) > 50]
        if contended:
            note = "Contended (other processes used > 50% of a core): "
            lines += ["", note + ", ".join(contended)]
        bound = [_name(r) for r in report.runs if r["cpu"].get("generator_bottleneck")]
        lines += [
            "",
            "Generator-bound (a load process >= 85% of a core): " + (", ".join(bound) or "none"),
        ]
        kinds = [r for r in report.runs if len(r["latency_ms"]["send_to_viewer_by_kind"]) > 1]
        if kinds:
            lines += ["", "By edit kind (viewer p50 / p99 ms):", ""]
            for r in kinds:
                parts = [
                    f"{k} {_ms(s['p50'])} / {_ms(s['p99'])} (n={s['n']})"
                    for k, s in r["latency_ms"]["send_to_viewer_by_kind"].items()
                ]
                lines.append(f"* {_name(r)}: " + "; ".join(parts))
        lines.append("")
    for steps in report.max_steps:
        lines += [
            f"## Max leaf rate ({steps['sales']:,} rows): held {steps['held_rate']}/s, "
            f"failed {steps['failed_rate']}/s",
            "",
            "| rate | held | why | applied/s | viewer p99 | server CPU | load CPU |",
            "|---:|---|---|---:|---:|---:|---:|",
        ]
        for s in steps["steps"]:
            lines.append(
                f"| {s['rate']:g} | {'yes' if s['held'] else 'no'} | {s['why']} "
                f"| {s['applied_per_s']:g} | {_ms(s['viewer_p99_ms'])} "
                f"| {s['server_cpu_pct']} | {s['generator_total_pct']} |"
            )
        lines.append("")
    if report.baseline:
        lines += ["## Baseline (naive design, in-process, no server)", ""]
        for b in report.baseline:
            lines.append(
                f"* {b['sales']:,} rows: {b['edits_per_s']:g} edits/s "
                f"({b['edits']} edits in {b['seconds']} s; per edit p50 "
                f"{_ms(b['latency_ms']['p50'])} ms, p99 {_ms(b['latency_ms']['p99'])} ms; "
                f"CPU {b['cpu_pct']}%, DuckDB threads {b['duckdb_threads']})"
            )
        lines.append("")
    if report.coldstart:
        lines += ["## Cold start (launch -> /healthz 200)", ""]
        for c in report.coldstart:
            lines.append(
                f"* {c['sales']:,} rows, launch {c['launch']} ({c['kind']}): "
                f"listening {c['to_listening_s']} s, healthy {c['to_healthy_s']} s"
            )
        lines.append("")
    if report.versions:
        lines += ["## Versions (each a copy of actual +5 %)", ""]
        for v in report.versions:
            lines.append(
                f"* {v['sales']:,} rows, {v['versions']} versions: copied in {v['copy_s']} s, "
                f"editable after {v.get('ready_s')} s; "
                f"data process RSS {v['rss_mb']} MB (peak {v['peak_rss_mb']}, "
                f"actual alone {v['rss_before_mb']})"
            )
        lines.append("")
    lines += ["## Targets", "", "| target | measured | result |", "|---|---|---|"]
    for c in found:
        result = {True: "PASS", False: "MISS", None: "not run"}[c.passed]
        lines.append(f"| {c.target} | {c.measured} | {result} |")
    lines.append("")
    return "\n".join(lines)


def _per_second(timeline: list[dict[str, Any]], name: str) -> tuple[list[float], list[float]]:
    """CPU % of `name` averaged over whole seconds (the samples are 0.25 s apart)."""
    bins: dict[int, list[float]] = {}
    for point in timeline:
        if name in point["cpu_pct"]:
            bins.setdefault(int(point["t"] // 1), []).append(point["cpu_pct"][name])
    keys = sorted(bins)
    return [k + 0.5 for k in keys], [sum(bins[k]) / len(bins[k]) for k in keys]


def plot_latency(report: Report, path: Path) -> bool:
    """p99 send->viewer over time per run, server CPU over time, and (for `max`) p99
    against the offered rate. False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    runs = [r for r in report.runs if r["series"]["send_to_viewer_worst"]]
    if not runs:
        return False
    if report.max_steps and any(r["scenario"] != "max" for r in runs):
        runs = [r for r in runs if r["scenario"] != "max"]  # the steps get their own panel
    panels = 3 if report.max_steps else 2
    fig, axes = plt.subplots(panels, 1, figsize=(11, 4 * panels))
    latency, cpu = axes[0], axes[1]
    for r in runs:
        series = r["series"]["send_to_viewer_worst"]
        latency.plot([p["t"] for p in series], [p["p99"] for p in series], label=_name(r))
        seconds, busy = _per_second(r["timeline"], "server")
        cpu.plot(seconds, busy, label=_name(r))
    latency.set_yscale("log")
    latency.axhline(100, color="red", linestyle="--", linewidth=0.8)
    latency.set_title("p99 send -> slowest viewer, per 0.5 s of scheduled send time")
    latency.set_xlabel("s since start")
    latency.set_ylabel("ms")
    latency.legend(fontsize=7)
    cpu.set_title("server process CPU (% of one core)")
    cpu.set_xlabel("s since start")
    cpu.set_ylabel("%")
    cpu.legend(fontsize=7)
    if report.max_steps:
        ax = axes[2]
        for steps in report.max_steps:
            rates = [s["rate"] for s in steps["steps"]]
            p99s = [s["viewer_p99_ms"] or float("nan") for s in steps["steps"]]
            ax.plot(rates, p99s, marker="o", linestyle="none", label=f"{steps['sales']:,} rows")
        ax.axhline(100, color="red", linestyle="--", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_xscale("log")
        ax.set_title("max: p99 send -> viewer against offered leaf edits/s")
        ax.set_xlabel("edits/s")
        ax.set_ylabel("ms")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def load(paths: list[Path]) -> tuple[Report, list[dict[str, Any]]]:
    """Merge the reports of several JSON result files (to re-render or combine them)."""
    merged = Report()
    metas: list[dict[str, Any]] = []
    for path in paths:
        data = json.loads(path.read_text())
        metas.append(data["meta"])
        merged.runs += data.get("runs", [])
        merged.baseline += data.get("baseline", [])
        merged.coldstart += data.get("coldstart", [])
        merged.max_steps += data.get("max_steps", [])
        merged.versions += data.get("versions", [])
    return merged, metas
