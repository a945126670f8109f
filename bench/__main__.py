"""`python -m bench [scenario] [options]`: benchmark a real ducksheet server.

Scenarios: all (default), leaf, spread, mixed, fanout, max, baseline, coldstart, versions.
Results go to bench/results/<stamp>.{json,md,png}; seeded data sets are cached under
bench/results/data-N and copied to a scratch dir for every server run.
"""

from __future__ import annotations

import argparse
import resource
import shlex
import sys
import time
from pathlib import Path

from bench.edits import parse_mix
from bench.report import load, machine, server_source, write
from bench.scenarios import SCENARIOS, Options, Report, run
from bench.server import SERVER_CLI

RESULTS = Path(__file__).resolve().parent / "results"


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _ints(text: str) -> list[int]:
    return [int(float(x)) for x in text.replace("_", "").split(",") if x.strip()]


def _env(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError("expected KEY=VALUE")
    return key, value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("scenario", nargs="?", default="all", choices=SCENARIOS)
    p.add_argument(
        "--sales",
        type=_ints,
        default=[1_000_000],
        help="sales rows, comma-separated for several sizes (default 1000000)",
    )
    p.add_argument(
        "--duration", type=float, default=None, help="seconds per load run (10; paste 20)"
    )
    p.add_argument(
        "--rate",
        type=_floats,
        default=None,
        help="target edits/s, comma-separated for several runs (scenario default)",
    )
    p.add_argument("--editors", type=int, default=10, help="editor sockets (10)")
    p.add_argument("--viewers", type=int, default=None, help="viewer sockets (10; fanout 1000)")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="load generator processes (auto: 1, or 2 for high rates / many sockets)",
    )
    p.add_argument(
        "--compression",
        choices=("deflate", "none"),
        default="deflate",
        help="permessage-deflate like browsers (default), or none",
    )
    p.add_argument(
        "--mix",
        type=parse_mix,
        default=None,
        help="edit kinds by weight, e.g. leaf=0.98,brand_month=0.02",
    )
    p.add_argument(
        "--supplier-rate",
        type=float,
        default=1.0,
        help="supplier-total spreads/s in the spread scenario (1; 0 skips)",
    )
    p.add_argument("--step-duration", type=float, default=5.0, help="seconds per max step (5)")
    p.add_argument("--step-factor", type=float, default=1.5, help="rate growth per max step")
    p.add_argument("--max-p99", type=float, default=100.0, help="max: p99 limit in ms (100)")
    p.add_argument(
        "--server-env",
        type=_env,
        action="append",
        default=[],
        help="KEY=VALUE for the server process, e.g. DUCKSHEET_BATCH_SIZE=500",
    )
    p.add_argument(
        "--server-cmd",
        type=shlex.split,
        default=None,
        help="command replacing `python -m server.cli` (it gets `serve --data-dir D --port 0`)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="py-spy the server during each load run (collapsed stacks + summary)",
    )
    p.add_argument("--results", type=Path, default=RESULTS, help="output dir (bench/results)")
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        help="before each load run, wait up to this many s until other processes use "
        "< 30%% of a core (shared machines; default 0: do not wait)",
    )
    p.add_argument(
        "--render",
        type=Path,
        nargs="+",
        metavar="JSON",
        help="run nothing: re-render (and merge) earlier result files into a new report",
    )
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")
    p.add_argument("--keep-scratch", action="store_true", help="keep the scratch data dirs")
    p.add_argument("--seed", type=int, default=1, help="random seed of the edit schedule")
    return p


def raise_fd_limit() -> None:
    """Many sockets on both ends of loopback: lift the soft open-files limit (inherited
    by the server and the load workers)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    raise_fd_limit()
    stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{args.scenario}"
    results: Path = args.results
    results.mkdir(parents=True, exist_ok=True)
    report = Report()
    meta = {
        "stamp": stamp,
        "command": "python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv),
        "machine": machine(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "server": server_source(
            tuple(args.server_cmd) if args.server_cmd else None,
            Path(__file__).resolve().parent.parent,
        ),
    }
    started = time.monotonic()
    if args.render:
        report, metas = load(args.render)
        stamp = time.strftime("%Y%m%d-%H%M%S") + "-merged"
        meta["stamp"] = stamp
        meta["command"] = "; ".join(m["command"] for m in metas)
        meta["machine"] = metas[0]["machine"]
        meta["merged_from"] = [str(p) for p in args.render]
    for sales in [] if args.render else args.sales:
        opts = Options(
            results=results,
            sales=sales,
            duration=args.duration,
            rates=args.rate,
            editors=args.editors,
            viewers=args.viewers,
            workers=args.workers,
            compression=None if args.compression == "none" else "deflate",
            mix=args.mix,
            server_env=dict(args.server_env),
            server_cmd=tuple(args.server_cmd) if args.server_cmd else SERVER_CLI,
            step_duration=args.step_duration,
            step_factor=args.step_factor,
            max_p99_ms=args.max_p99,
            supplier_rate=args.supplier_rate,
            seed=args.seed,
            profile=args.profile,
            keep_scratch=args.keep_scratch,
            wait_quiet=args.wait_quiet,
            stamp=stamp,
        )
        run(args.scenario, opts, report)
    meta["elapsed_s"] = round(time.monotonic() - started, 1)
    paths = write(report, meta, results, stamp, plot=not args.no_plot)
    print(paths["md"].read_text())
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
