"""The directory where every process of a `serve` writes its metrics (prometheus_client's
multi-process mode), prepared and tidied by the supervisor. Apart from server/metrics.py
so that the supervisor, which only does this, does not hold prometheus_client."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def prepare_multiprocess_dir(directory: Path) -> None:
    """Empty (or create) the shared directory and point this process and its children at
    it; call before any child starts, since stale files would add old counts."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(directory)


def process_exited(pid: int, directory: str | None = None) -> None:
    """Forget the live gauges of a child process that ended (the supervisor calls it)."""
    path = directory or multiprocess_dir()
    if path is not None:
        from prometheus_client import multiprocess  # only once a child has ended

        multiprocess.mark_process_dead(pid, path)
