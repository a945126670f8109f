"""`ducksheet` command line: serve, seed, check, export, import, bench."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from protocol.actions import IMPORT_TABLES
from protocol.catalog import EXPORT_FORMATS, TABLES
from server import logs
from server.config import Settings
from server.progress import Progress

log = logging.getLogger("ducksheet")
SEED_STEPS = 3  # the progress calls of seed_database


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "bench":
        return run_bench(args.args)
    logs.setup(logs.log_format(), logs.log_level())
    settings = Settings.from_env(
        data_dir=args.data_dir,
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        redis_url=getattr(args, "redis_url", None),
        tokens_file=getattr(args, "tokens_file", None),
        web_workers=getattr(args, "web_workers", None),
    )
    handlers = {
        "serve": run_serve,
        "seed": run_seed,
        "check": run_check,
        "export": run_export,
        "import": run_import,
    }
    return handlers[args.command](settings, args)


def build_parser() -> argparse.ArgumentParser:
    """Every command's arguments. Built from the protocol's names alone: the supervisor
    that `serve` becomes keeps nothing of DuckDB, Faker or the xlsx writer in memory."""
    parser = argparse.ArgumentParser(prog="ducksheet", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the server (seeds an empty database)")
    _data_dir(serve)
    serve.add_argument("--host", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8000)")
    serve.add_argument("--redis-url", help="external Redis; unset starts the embedded one")
    serve.add_argument(
        "--tokens-file", type=Path, help="name:role:token lines (env DUCKSHEET_TOKENS_FILE)"
    )
    serve.add_argument(
        "--role",
        choices=["web", "data"],
        help="run one role alone against a shared REDIS_URL (default: every role)",
    )
    serve.add_argument(
        "--web-workers",
        type=int,
        help="web processes beside one data process; 0 runs every role in one process "
        f"(env DUCKSHEET_WEB_WORKERS, default {Settings.web_workers})",
    )
    # set by the supervisor for its children only
    serve.add_argument("--listen-fd", type=int, help=argparse.SUPPRESS)
    serve.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)

    seed = commands.add_parser("seed", help="create and fill a new database")
    _data_dir(seed)
    seed.add_argument(
        "--sales",
        type=int,
        default=Settings.seed_sales,
        help=f"sales rows (default {Settings.seed_sales})",
    )
    seed.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    seed.add_argument("--force", action="store_true", help="replace an existing database")

    check = commands.add_parser("check", help="verify the summary; exit 1 on drift")
    _data_dir(check)
    _data_dir(_export_parser(commands))
    _data_dir(_import_parser(commands))

    bench = commands.add_parser(
        "bench",
        help="run the benchmarks (python -m bench from the source tree; --help for options)",
        add_help=False,  # --help goes to the bench itself
        prefix_chars="\0",  # pass every option through untouched
    )
    bench.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def _export_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """`ducksheet export --table T --format csv|parquet|xlsx --output FILE`."""
    parser = commands.add_parser("export", help="write a table to a CSV, Parquet or xlsx file")
    parser.add_argument("--table", required=True, choices=list(TABLES), help="table to export")
    parser.add_argument("--format", default="csv", choices=EXPORT_FORMATS, help="default csv")
    parser.add_argument("--output", required=True, type=Path, help="file to write")
    return parser


def _import_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """`ducksheet import FILE --table T [--validate] [--upsert]`."""
    parser = commands.add_parser("import", help="load a CSV or xlsx file (with the server stopped)")
    parser.add_argument(
        "file", type=Path, help="CSV file with a header line, or an xlsx workbook (first sheet)"
    )
    parser.add_argument("--table", required=True, choices=IMPORT_TABLES)
    parser.add_argument(
        "--validate",
        action="store_true",
        help="load the good rows and log the bad ones in validation_logs (default: all or nothing)",
    )
    parser.add_argument(
        "--upsert", action="store_true", help="update rows whose key exists (default: reject)"
    )
    return parser


def _data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", type=Path, help="data directory (env DUCKSHEET_DATA_DIR, default ./data)"
    )


def run_serve(settings: Settings, args: argparse.Namespace) -> int:
    """Every role in one process, one role alone (--role), or the supervisor of a data
    process and --web-workers web processes."""
    from server.edge.auth import TokenError, load_tokens, refuse_open_mode

    if args.role is not None and settings.redis_url is None:
        print(f"ducksheet: --role {args.role} needs REDIS_URL (a shared Redis)", file=sys.stderr)
        return 2
    if settings.web_workers < 0:
        print("ducksheet: --web-workers must be 0 or more", file=sys.stderr)
        return 2
    try:
        tokens = load_tokens(settings.tokens, settings.tokens_file)
    except TokenError as exc:
        print(f"ducksheet: {exc}", file=sys.stderr)
        return 2
    if args.role != "data":  # the data process serves only its internal socket
        refuse_open_mode(settings.host, not tokens)
    if not settings.database_path.exists() and args.role != "web":
        log.info("no database yet: seeding %s sales rows (first start only)", settings.seed_sales)
    if args.role == "data":
        import asyncio

        import uvloop  # as uvicorn runs the web processes: socket I/O costs a fraction

        from server.data_process import serve_data

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(serve_data(settings, args.ready_fd))
        return 0
    if args.role is None and settings.web_workers > 0:
        from server.supervisor import Supervisor

        return Supervisor(settings, settings.web_workers).run()
    from server.runner import make_server  # the web app: not in the supervisor's memory

    if args.role == "web":  # text conditions are parsed by the data process's DuckDB
        from protocol.conditions import use_sql_parser
        from server.edge.sql_trees import TREES

        use_sql_parser(TREES)

    server = make_server(
        settings, role=args.role or "all", listen_fd=args.listen_fd, ready_fd=args.ready_fd
    )
    server.run()
    return 0


def run_export(settings: Settings, args: argparse.Namespace) -> int:
    from server.analytics import exporter

    return exporter.run_command(settings, args)


def run_import(settings: Settings, args: argparse.Namespace) -> int:
    from server.analytics import import_command

    return import_command.run_command(settings, args)


def run_seed(settings: Settings, args: argparse.Namespace) -> int:
    import duckdb

    from seed.generate import seed_database

    path = settings.database_path
    if path.exists():
        if not args.force:
            print(f"{path} exists; pass --force to replace it", file=sys.stderr)
            return 2
        path.unlink()
        Path(f"{path}.wal").unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    bar = Progress(SEED_STEPS)
    with duckdb.connect(str(path)) as con:
        seed_database(con, sales=args.sales, seed=args.seed, progress=bar.step)
    bar.finish(f"seeded {args.sales:,} sales rows into {path}")
    return 0


def run_check(settings: Settings, _args: argparse.Namespace) -> int:
    import duckdb

    from protocol.versions import ACTUAL
    from server.analytics.check import footing_errors, summary_drift
    from server.store.versions import has_versions, in_version, read_versions

    path = settings.database_path
    if not path.exists():
        print(f"no database at {path}", file=sys.stderr)
        return 2
    with duckdb.connect(str(path), read_only=True) as con:
        versions = read_versions(con) if has_versions(con) else {}
        schemas = {name: v.schema for name, v in versions.items()} or {ACTUAL: None}
        bar = Progress(2 * len(schemas))
        drift, footing = [], []
        for name, schema in schemas.items():
            with in_version(con, schema):
                bar.step(f"{name}: comparing the summary with a fresh GROUPING SETS query")
                drift += [(name, row) for row in summary_drift(con)]
                bar.step(f"{name}: checking that every parent foots")
                footing += [(name, row) for row in footing_errors(con)]
    bar.finish(f"checked {path}")
    for name, row in drift:
        print(f"drift ({name}):", row)
    for name, row in footing:
        print(f"footing ({name}):", row)
    if drift or footing:
        print("summary is NOT exact", file=sys.stderr)
        return 1
    print(
        f"summary is exact in {', '.join(schemas)}: equals a fresh GROUPING SETS query, "
        "and every parent foots"
    )
    return 0


def run_bench(bench_args: list[str]) -> int:
    """bench/ lives in the source tree (it is not an installed package)."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    if not (root / "bench" / "__main__.py").exists():
        print("ducksheet bench needs the source tree (bench/ is not installed)", file=sys.stderr)
        return 2
    return subprocess.call([sys.executable, "-m", "bench", *bench_args], cwd=root)


if __name__ == "__main__":
    sys.exit(main())
