"""Deterministic seed data: Faker for the dimensions, DuckDB SQL for the fact table.

The same `seed` always gives the same database. The fact table is generated inside
DuckDB from hashes of the row number, so a million rows take seconds.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import duckdb
from faker import Faker

from seed.schema import create_month_pivot, create_schema, rebuild_summary

FIRST_DAY = "2024-01-01"
DAYS = 731  # 2024-01-01 .. 2025-12-31: 24 months of invoices
REGIONS = ("North", "South", "East", "West", "Central")
SEGMENTS = ("Retail", "Wholesale", "Online", "Enterprise")


@dataclass(frozen=True)
class Shape:
    """How big the hierarchy is; the fact table size is separate."""

    suppliers: int = 12
    brands: tuple[int, int] = (3, 5)  # per supplier, inclusive range
    families: tuple[int, int] = (3, 5)  # per brand
    products: tuple[int, int] = (2, 6)  # per family
    customers: int = 2000


def seed_database(
    con: duckdb.DuckDBPyConnection,
    sales: int = 200_000,
    seed: int = 42,
    shape: Shape = Shape(),
    progress: Callable[[str], None] = lambda _msg: None,
) -> None:
    """Fill an empty database: dimensions, sales, the summary and the views."""
    create_schema(con)
    con.execute("BEGIN")
    try:
        progress("generating products and customers")
        con.executemany("INSERT INTO product VALUES (?, ?, ?, ?, ?, ?)", make_products(seed, shape))
        con.executemany("INSERT INTO customer VALUES (?, ?, ?, ?, ?)", make_customers(seed, shape))
        progress(f"generating {sales:,} sales rows")
        insert_sales(con, sales, seed)
        progress("building the summary (grouping sets)")
        rebuild_summary(con)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    create_month_pivot(con)
    con.execute("CHECKPOINT")


def make_products(seed: int, shape: Shape) -> list[tuple[int, str, str, str, str, str]]:
    fake = Faker()
    fake.seed_instance(seed)
    rng = random.Random(seed)
    rows: list[tuple[int, str, str, str, str, str]] = []
    used: set[str] = set()

    def unique(make: Callable[[], str]) -> str:
        for _ in range(100):
            name = make()
            if name not in used:
                used.add(name)
                return name
        raise RuntimeError("could not draw a unique name")

    for _ in range(shape.suppliers):
        supplier = unique(fake.company)
        for _ in range(rng.randint(*shape.brands)):
            brand = unique(lambda: fake.word().capitalize() + rng.choice(("", " Pro", "ix", "a")))
            for _ in range(rng.randint(*shape.families)):
                family = fake.word()
                for _ in range(rng.randint(*shape.products)):
                    product_id = len(rows) + 1
                    name = f"{brand} {family} {fake.word()} {product_id}"
                    price = f"{rng.randint(200, 50_000) / 100:.2f}"
                    rows.append((product_id, name, supplier, brand, family, price))
    return rows


def make_customers(seed: int, shape: Shape) -> list[tuple[int, str, str, str, str]]:
    fake = Faker()
    fake.seed_instance(seed + 1)
    rng = random.Random(seed + 1)
    return [
        (
            customer_id,
            fake.name(),
            fake.email(),
            rng.choice(REGIONS),
            rng.choice(SEGMENTS),
        )
        for customer_id in range(1, shape.customers + 1)
    ]


def insert_sales(con: duckdb.DuckDBPyConnection, count: int, seed: int) -> None:
    """Fact rows from hashes of the row number: deterministic, and fast in DuckDB.
    Rows are stored in invoice order (as invoices arrive), so month-scoped reads and
    updates skip most of the table through DuckDB's min/max zone maps."""
    products = con.execute("SELECT count(*) FROM product").fetchone()[0]  # type: ignore[index]
    customers = con.execute("SELECT count(*) FROM customer").fetchone()[0]  # type: ignore[index]
    con.execute(
        f"""
        INSERT INTO sales
        WITH draws AS (
            SELECT
                i,
                DATE '{FIRST_DAY}' + CAST(hash(i, $seed, 1) % {DAYS} AS INTEGER) AS invoice_date,
                CAST(1 + hash(i, $seed, 2) % $products AS INTEGER) AS product_id,
                CAST(1 + hash(i, $seed, 3) % $customers AS INTEGER) AS customer_id,
                CAST(1 + hash(i, $seed, 4) % 12 AS INTEGER) AS quantity,
                CAST(80 + hash(i, $seed, 5) % 41 AS INTEGER) AS price_pct
            FROM range($count) t(i)
        )
        SELECT row_number() OVER (ORDER BY d.invoice_date, d.i) AS sale_id,
               d.invoice_date, d.product_id, d.customer_id, d.quantity,
               ROUND(d.quantity * p.unit_price * d.price_pct / 100, 2)::DECIMAL(18, 2)
        FROM draws d JOIN product p USING (product_id)
        ORDER BY sale_id
        """,
        {"seed": seed, "products": products, "customers": customers, "count": count},
    )
