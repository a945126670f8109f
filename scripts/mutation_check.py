"""Apply known mutations of documented behaviour one at a time and report which the
tests kill.

    .venv/bin/python scripts/mutation_check.py [--list scripts/mutations.toml] [ID ...]

The tree (as it is on disk, uncommitted changes included) is copied once to a scratch
folder; each mutation replaces its exact snippet there, runs its tests, and the file is
restored. A mutation is `killed` when its tests fail, `survived` when they pass, `moved`
when its snippet is not found exactly once (the list needs updating), and the run stops
being trusted when the unmutated tests fail (`baseline`). Exit status 1 unless every
mutation was killed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIP = {".git", ".venv", "node_modules", "data", ".hypothesis", ".pytest_cache", ".ruff_cache"}
SKIP_UNDER = {"bench/results"}


@dataclass(frozen=True)
class Mutation:
    id: str
    behaviour: str
    file: str
    find: str
    replace: str
    tests: tuple[str, ...]


def load(path: Path) -> list[Mutation]:
    entries = tomllib.loads(path.read_text())["mutation"]
    return [
        Mutation(e["id"], e["behaviour"], e["file"], e["find"], e["replace"], tuple(e["tests"]))
        for e in entries
    ]


def ignore(directory: str, names: list[str]) -> set[str]:
    relative = Path(directory).resolve().relative_to(ROOT).as_posix()
    skipped = {n for n in names if n in SKIP or n.endswith(".egg-info") or n == "__pycache__"}
    return skipped | {n for n in names if f"{relative}/{n}".lstrip("./") in SKIP_UNDER}


def scratch_copy(target: Path) -> Path:
    tree = target / "tree"
    shutil.copytree(ROOT, tree, ignore=ignore, symlinks=True)
    if (ROOT / "node_modules").exists():
        (tree / "node_modules").symlink_to(ROOT / "node_modules")
    return tree


def run_tests(tree: Path, tests: tuple[str, ...], timeout: float) -> tuple[str, float, str]:
    """'passed', 'failed' or 'timeout', the seconds it took, and pytest's last lines."""
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("CI", None)  # a skip is not a kill; let pytest report it as it is
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]
    command += ["--hypothesis-profile=mutation", *tests]  # no shrinking: a kill is a kill
    started = time.monotonic()
    try:
        done = subprocess.run(
            command, cwd=tree, env=env, capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return "timeout", time.monotonic() - started, ""
    tail = "\n".join(done.stdout.decode(errors="replace").splitlines()[-15:])
    return ("passed" if done.returncode == 0 else "failed"), time.monotonic() - started, tail


def check(tree: Path, mutation: Mutation, timeout: float) -> tuple[str, float]:
    path = tree / mutation.file
    if not path.exists():
        return "moved (no such file)", 0.0
    original = path.read_text()
    found = original.count(mutation.find)
    if found != 1:
        return f"moved (snippet found {found} times)", 0.0
    path.write_text(original.replace(mutation.find, mutation.replace))
    try:
        outcome, seconds, _ = run_tests(tree, mutation.tests, timeout)
    finally:
        path.write_text(original)
    verdict = {"failed": "killed", "timeout": "killed (timed out)", "passed": "survived"}
    return verdict[outcome], seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ids", nargs="*", help="only these mutations")
    parser.add_argument("--list", type=Path, default=ROOT / "scripts" / "mutations.toml")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per test run")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated run")
    args = parser.parse_args(argv)
    mutations = [m for m in load(args.list) if not args.ids or m.id in args.ids]
    unknown = set(args.ids) - {m.id for m in mutations}
    if unknown:
        parser.error(f"unknown mutation ids: {', '.join(sorted(unknown))}")
    with tempfile.TemporaryDirectory(prefix="ducksheet-mutants-") as scratch:
        tree = scratch_copy(Path(scratch))
        if not args.no_baseline:
            tests = tuple(dict.fromkeys(t for m in mutations for t in m.tests))
            outcome, seconds, tail = run_tests(tree, tests, args.timeout * 2)
            print(f"baseline: {len(tests)} tests {outcome} ({seconds:.0f} s)", flush=True)
            if outcome != "passed":
                print(f"{tail}\nthe unmutated tests do not pass: fix them before trusting kills")
                return 1
        results = []
        for mutation in mutations:
            verdict, seconds = check(tree, mutation, args.timeout)
            results.append(verdict)
            print(f"{verdict:<22} {mutation.id:<38} ({seconds:.0f} s)", flush=True)
    killed = sum(v.startswith("killed") for v in results)
    print(f"\n{killed}/{len(results)} killed", end="")
    for kind in ("survived", "moved"):
        count = sum(v.startswith(kind) for v in results)
        print(f", {count} {kind}" if count else "", end="")
    print()
    return 0 if killed == len(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
