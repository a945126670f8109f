"""protocol/ is the pure layer: it imports nothing of the server and opens no database."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CODE = """
import importlib, pkgutil, sys
import protocol
for module in pkgutil.iter_modules(protocol.__path__):
    importlib.import_module(f"protocol.{module.name}")
print(sorted(m for m in sys.modules if m.split(".")[0] in ("server", "duckdb", "redis")))
"""


def test_protocol_imports_neither_the_server_nor_duckdb_nor_redis():
    result = subprocess.run(
        [sys.executable, "-c", CODE], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]", result.stdout


def test_text_conditions_parse_once_the_server_installed_its_parser():
    import server  # noqa: F401  (installs DuckDB's parser)
    from protocol.catalog import TABLES
    from protocol.conditions import Compare, parse_text_condition

    expr = parse_text_condition(TABLES["product"], "brand = 'Nova'")
    assert expr == Compare("brand", "=", "Nova")
