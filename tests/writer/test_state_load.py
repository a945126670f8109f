"""The writer's state at start: the sales rows in sale_id order whatever order DuckDB
stores them in, and each row's family-month node exactly as a SQL join and sort over
the same file gives them (rows of missing products in none), over all of DATE's years
and product ids of every size."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from unittest.mock import patch

import duckdb
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seed.schema import create_schema
from server.writer import state as state_module
from server.writer.state import NO_NODE, load

INT32 = st.integers(-(2**31), 2**31 - 1)
DATES = st.dates(dt.date(1, 1, 1), dt.date(9999, 12, 31))
NAMES = st.sampled_from(["A", "B", "Ä", "a", "Z-1"])
PRODUCTS = st.dictionaries(INT32, st.tuples(NAMES, NAMES, NAMES), max_size=8)
REFERENCE_NODES = """
    SELECT DISTINCT p.supplier, p.brand, p.family, strftime(s.invoice_date, '%Y-%m') AS month
    FROM sales s JOIN product p USING (product_id)
    ORDER BY supplier, brand, family, month
"""
REFERENCE_ROWS = """
    SELECT s.sale_id, p.supplier, p.brand, p.family, strftime(s.invoice_date, '%Y-%m')
    FROM sales s LEFT JOIN product p USING (product_id) ORDER BY s.sale_id
"""


@pytest.fixture(scope="module")
def con(tmp_path_factory: pytest.TempPathFactory) -> duckdb.DuckDBPyConnection:
    path: Path = tmp_path_factory.mktemp("load") / "ducksheet.duckdb"
    connection = duckdb.connect(str(path))
    create_schema(connection)
    return connection


@st.composite
def tables(draw: st.DrawFn) -> tuple[dict, list[tuple]]:
    products = draw(PRODUCTS)
    known = sorted(products)
    product_ids = st.sampled_from(known) | INT32 if known else INT32
    sale_ids = draw(st.lists(st.integers(-(2**63), 2**63 - 1), unique=True, max_size=40))
    rows = [(s, draw(DATES), draw(product_ids)) for s in sale_ids]  # in drawn order
    return products, rows


def fill(con: duckdb.DuckDBPyConnection, products: dict, rows: list[tuple]) -> None:
    con.execute("DELETE FROM sales")
    con.execute("DELETE FROM product")
    for product_id, (supplier, brand, family) in products.items():
        con.execute(
            "INSERT INTO product VALUES (?, 'p', ?, ?, ?, 1)", [product_id, supplier, brand, family]
        )
    for sale_id, day, product_id in rows:
        con.execute("INSERT INTO sales VALUES (?, ?, ?, 1, 1, 1)", [sale_id, day, product_id])


@pytest.mark.parametrize("mask", [True, False], ids=["mask", "sorted keys"])
@pytest.mark.parametrize("table", [True, False], ids=["product table", "product search"])
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=tables())
def test_rows_and_nodes_load_as_sql_orders_and_joins_them(
    con: duckdb.DuckDBPyConnection, mask: bool, table: bool, data: tuple[dict, list[tuple]]
) -> None:
    products, rows = data
    fill(con, products, rows)
    limits = {"KEY_MASK_MAX": 1 << 24 if mask else 0, "PRODUCT_TABLE_MAX": 1 << 20 if table else 0}
    with patch.multiple(state_module, **limits):
        state = load(con)
    assert state.nodes == con.execute(REFERENCE_NODES).fetchall()
    expected = con.execute(REFERENCE_ROWS).fetchall()
    assert state.sales.sale_id.tolist() == [row[0] for row in expected]
    nodes = [None if k == NO_NODE else state.nodes[k][:3] for k in state.row_node.tolist()]
    assert nodes == [None if row[1] is None else row[1:4] for row in expected]
    months = [state.nodes[k][3] for k in state.row_node.tolist() if k != NO_NODE]
    assert months == [row[4] for row in expected if row[1] is not None]
    days = con.execute(
        "SELECT (invoice_date - DATE '1970-01-01')::INTEGER, product_id FROM sales ORDER BY sale_id"
    ).fetchall()
    loaded = zip(state.sales.invoice_date.tolist(), state.sales.product_id.tolist(), strict=True)
    assert list(loaded) == days
    assert state.row_node.dtype == np.int32
