"""Fixtures of the writer tests: a tiny seeded database and fresh copies of it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from itertools import count
from pathlib import Path
from typing import Any

import duckdb
import pytest

from seed.generate import Shape, seed_database
from server.writer.before_image import prepare

TINY = Shape(suppliers=2, brands=(2, 2), families=(2, 2), products=(1, 2), customers=10)
_copies = count(1)


@pytest.fixture(scope="module")
def tiny_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny") / "tiny.duckdb"
    with duckdb.connect(str(path)) as con:
        seed_database(con, sales=300, seed=11, shape=TINY)
    return path


@pytest.fixture
def fresh(tiny_db: Path, tmp_path: Path) -> Iterator[Any]:
    """A factory of fresh copies (hypothesis runs many examples per test call)."""
    opened: list[duckdb.DuckDBPyConnection] = []

    def make() -> duckdb.DuckDBPyConnection:
        path = tmp_path / f"copy{next(_copies)}.duckdb"
        shutil.copy(tiny_db, path)
        con = duckdb.connect(str(path))
        prepare(con)
        opened.append(con)
        return con

    yield make
    for con in opened:
        con.close()
