"""CSV import on real DuckDB files: the fast all-or-nothing path, the validating path
with every kind of bad row, upserts, a large file, the writer's batch, HTTP and CLI.
After every import the summary must equal a fresh GROUPING SETS query and foot."""

from __future__ import annotations

import argparse
import csv
import datetime as dt
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
from test_export import run_cli

from protocol.catalog import SUMMARY, TABLES
from protocol.errors import ProtocolError
from server.analytics.check import footing_errors, summary_drift
from server.analytics.csv_import import apply_import
from server.analytics.import_command import run_command
from server.cli import build_parser
from server.config import Settings
from server.edge import analytics_routes
from server.edge.uploads import save_upload
from server.writer.before_image import capture_before, prepare
from server.writer.upkeep import update_summary

SALES_HEADER = "sale_id,invoice_date,product_id,customer_id,quantity,net_price"


@pytest.fixture
def con(db_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    with duckdb.connect(str(db_path)) as connection:
        yield connection


def write(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def run_import(
    con: duckdb.DuckDBPyConnection, path: Path, table: str = "sales", **spec: Any
) -> dict[str, Any]:
    """apply_import inside a transaction opened here, as the writer does."""
    con.execute("BEGIN TRANSACTION")
    try:
        stats = apply_import(
            con, {"table": table, "path": str(path), "file_name": path.name, **spec}
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return stats


def assert_exact(con: duckdb.DuckDBPyConnection) -> None:
    assert summary_drift(con) == []
    assert footing_errors(con) == []


def scalar(con: duckdb.DuckDBPyConnection, sql: str, *params: Any) -> Any:
    return con.execute(sql, list(params)).fetchone()[0]


def grand_total(con: duckdb.DuckDBPyConnection) -> tuple[int, Decimal, int]:
    return con.execute(
        f"SELECT quantity, net_amount, line_count FROM {SUMMARY} WHERE level = 7 AND month IS NULL"
    ).fetchone()


def next_sale_id(con: duckdb.DuckDBPyConnection) -> int:
    return scalar(con, "SELECT max(sale_id) + 1 FROM sales")


def sales_lines(first_id: int, count: int, products: int = 3, customers: int = 5) -> list[str]:
    """Valid sales rows with new keys, spread over two years and the first products."""
    return [
        f"{first_id + i},{dt.date(2024, 1, 1) + dt.timedelta(days=i % 731)},"
        f"{1 + i % products},{1 + i % customers},{1 + i % 9},{(i % 5000) / 4:.2f}"
        for i in range(count)
    ]


# -- the fast path --------------------------------------------------------------------


def test_clean_sales_file_fast(con, tmp_path):
    before = grand_total(con)
    first = next_sale_id(con)
    lines = sales_lines(first, 50)
    stats = run_import(con, write(tmp_path / "s.csv", SALES_HEADER, *lines), import_id="clean-1")
    assert stats == {
        "import_id": "clean-1",
        "table": "sales",
        "mode": "fast",
        "inserted": 50,
        "updated": 0,
        "rejected": 0,
    }
    rows = con.execute(
        "SELECT sale_id, invoice_date::VARCHAR, product_id, customer_id, quantity, "
        "net_price::VARCHAR FROM sales WHERE sale_id >= ? ORDER BY sale_id",
        [first],
    ).fetchall()
    assert [",".join(map(str, row)) for row in rows] == lines
    added = sum(Decimal(line.rsplit(",", 1)[1]) for line in lines)
    after = grand_total(con)
    assert after[1] == before[1] + added and after[2] == before[2] + 50
    assert_exact(con)


def test_columns_may_come_in_any_order(con, tmp_path):
    first = next_sale_id(con)
    path = write(
        tmp_path / "s.csv",
        "net_price,quantity,customer_id,product_id,invoice_date,sale_id",
        f"12.34,3,2,1,2024-05-06,{first}",
    )
    assert run_import(con, path)["inserted"] == 1
    row = con.execute("SELECT * FROM sales WHERE sale_id = ?", [first]).fetchone()
    assert row == (first, dt.date(2024, 5, 6), 1, 2, 3, Decimal("12.34"))
    assert_exact(con)


def test_product_and_customer_files(con, tmp_path):
    product_id = scalar(con, "SELECT max(product_id) + 1 FROM product")
    customer_id = scalar(con, "SELECT max(customer_id) + 1 FROM customer")
    products = write(
        tmp_path / "p.csv",
        "product_id,product_name,supplier,brand,family,unit_price",
        f'{product_id},"New, improved",Acme Imports,Nova,gadgets,19.90',
    )
    customers = write(
        tmp_path / "c.csv",
        "customer_id,customer_name,email,region,segment",
        f"{customer_id},Ann Example,ann@example.com,North,Retail",
    )
    assert run_import(con, products, "product")["inserted"] == 1
    assert run_import(con, customers, "customer")["inserted"] == 1
    sales = write(
        tmp_path / "s.csv",
        SALES_HEADER,
        f"{next_sale_id(con)},2025-02-03,{product_id},{customer_id},2,39.80",
    )
    assert run_import(con, sales)["inserted"] == 1
    node = con.execute(
        f"SELECT net_amount, line_count FROM {SUMMARY} "
        "WHERE supplier = 'Acme Imports' AND level = 3 AND month IS NULL"
    ).fetchone()
    assert node == (Decimal("39.80"), 1)
    assert scalar(con, "SELECT product_name FROM product WHERE product_id = ?", product_id) == (
        "New, improved"
    )
    assert_exact(con)


def test_fast_path_rejects_the_whole_file_naming_the_first_bad_line(con, tmp_path):
    before = scalar(con, "SELECT count(*) FROM sales")
    summary = con.execute(f"SELECT * FROM {SUMMARY} ORDER BY ALL").fetchall()
    lines = sales_lines(next_sale_id(con), 20)
    parts = lines[13].split(",")
    lines[13] = ",".join([parts[0], "2024-02-30", *parts[2:]])  # no such day, on line 15
    lines[16] = lines[16] + ",extra"
    path = write(tmp_path / "s.csv", SALES_HEADER, *lines)
    con.execute("BEGIN TRANSACTION")
    with pytest.raises(ProtocolError) as caught:
        apply_import(con, {"table": "sales", "path": str(path)})
    # Nothing changed and the caller's transaction is still usable.
    assert scalar(con, "SELECT count(*) FROM sales") == before
    con.execute("COMMIT")
    error = caught.value
    assert error.code == "invalid_import" and error.http_status == 422
    assert error.details["line"] == 15 and error.details["rejected"] == 2
    assert "line 15" in error.message and "nothing was imported" in error.message
    assert con.execute(f"SELECT * FROM {SUMMARY} ORDER BY ALL").fetchall() == summary
    assert scalar(con, "SELECT count(*) FROM validation_logs") == 0
    tables = "SELECT count(*) FROM duckdb_tables() WHERE temporary AND table_name LIKE '_import%'"
    assert scalar(con, tables) == 0


def test_a_file_the_reader_cannot_parse_leaves_the_transaction_usable(con, tmp_path):
    """DuckDB raises on some files (here a stray carriage return); inside the writer's
    transaction that would abort the whole batch, so it must come out as invalid_import."""
    path = tmp_path / "s.csv"
    path.write_bytes(SALES_HEADER.encode() + b"\n8;b\r")
    con.execute("BEGIN TRANSACTION")
    con.execute("UPDATE sales SET quantity = 77 WHERE sale_id = 1")  # an earlier edit
    with pytest.raises(ProtocolError) as caught:
        apply_import(con, {"table": "sales", "path": str(path), "mode": "validate"})
    con.execute("COMMIT")
    assert caught.value.code == "invalid_import"
    assert "cannot be read as CSV" in caught.value.message
    assert scalar(con, "SELECT quantity FROM sales WHERE sale_id = 1") == 77


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("sale_id,invoice_date,product_id,customer_id,quantity", "missing: ['net_price']"),
        (SALES_HEADER + ",colour", "unknown: ['colour']"),
        ("sale_id,sale_id,product_id,customer_id,quantity,net_price", "once each"),
    ],
)
def test_bad_header_is_rejected(con, tmp_path, header, message):
    with pytest.raises(ProtocolError) as caught:
        run_import(con, write(tmp_path / "s.csv", header, "1,2,3,4,5,6"))
    assert caught.value.code == "invalid_import" and caught.value.details["line"] == 1
    assert message in caught.value.message


def test_empty_file_and_unsupported_table(con, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ProtocolError, match="empty"):
        run_import(con, empty)
    with pytest.raises(ProtocolError) as caught:
        run_import(con, write(tmp_path / "x.csv", "a"), table=SUMMARY)
    assert caught.value.code == "invalid_value"


# -- the validating path: every kind of bad row ---------------------------------------

BAD_ROWS = [  # (line, row, column, reason prefix); {n} is a new sale_id
    (3, "{n1},2024-13-05,1,1,5,10.50", "invoice_date", "wrong type"),
    (4, "{n2},2024-01-05,x,1,5,10.50", "product_id", "wrong type"),
    (5, "{n3},2024-01-05,1,1,5", "net_price", "too few columns"),
    (6, "{n4},2024-01-05,1,1,5,10.50,99", None, "too many columns"),
    (7, "{n5},2024-01-05,1,1,-5,10.50", "quantity", "negative quantity"),
    (8, ",2024-01-05,1,1,5,10.50", "sale_id", "missing key"),
    (9, "{n0},2024-02-05,1,1,5,1.50", "sale_id", "duplicate key: first on line 2"),
    (10, "1,2024-01-05,1,1,5,1.50", "sale_id", "duplicate key: already in table"),
    (11, "{n6},2024-01-05,99999,1,5,1.50", "product_id", "unknown product_id"),
    (12, "{n7},2024-01-05,1,99999,5,1.50", "customer_id", "unknown customer_id"),
    (13, "{n8},2024-01-05,1,1,5,abc", "net_price", "wrong type: not a number"),
    (14, "{n9},2024-01-05,1,1,5,10.555", "net_price", "more than 2 decimal places"),
    (15, "{n10},,1,1,5,10.50", "invoice_date", "missing value"),
    (16, "{n11},2024-01-05,1,1,2000000000,1.00", "quantity", "out of range"),
    (17, "{n12},2024-01-05,1,1,5.7,1.00", "quantity", "wrong type: not a whole number"),
    (18, "{n13},2024-01-05,1,1,1e2,1.00", "quantity", "wrong type: not a whole number"),
    (19, "{n14},2024-01-05,3000000000,1,1,1.00", "product_id", "out of range"),
]


def bad_file(con: duckdb.DuckDBPyConnection, path: Path) -> tuple[Path, int]:
    first = next_sale_id(con)
    ids = {f"n{i}": first + i for i in range(20)}
    good = [f"{first},2024-02-05,1,1,5,1.50", f"{first + 15},2024-03-05,2,2,1,2.50"]
    rows = [good[0], *(row.format(**ids) for _, row, _, _ in BAD_ROWS), good[1]]
    return write(path, SALES_HEADER, *rows), first


def test_validate_loads_good_rows_and_logs_every_kind_of_bad_row(con, tmp_path):
    path, first = bad_file(con, tmp_path / "bad.csv")
    before = grand_total(con)
    stats = run_import(con, path, mode="validate", import_id="v-1")
    assert (stats["inserted"], stats["updated"], stats["rejected"]) == (2, 0, len(BAD_ROWS))
    assert scalar(con, "SELECT count(*) FROM sales WHERE sale_id >= ?", first) == 2
    logged = con.execute(
        "SELECT import_id, file_name, row_number, column_name, value, reason "
        "FROM validation_logs ORDER BY row_number"
    ).fetchall()
    assert len(logged) == len(BAD_ROWS)
    for (line, _, column, reason), entry in zip(BAD_ROWS, logged, strict=True):
        assert entry[:4] == ("v-1", "bad.csv", line, column), entry
        assert entry[5].startswith(reason), entry
    values = {entry[2]: entry[4] for entry in logged}
    assert values[3] == "2024-13-05" and values[4] == "x" and values[14] == "10.555"
    after = grand_total(con)
    assert after[1] == before[1] + Decimal("4.00") and after[2] == before[2] + 2
    assert_exact(con)


def test_fast_path_rejects_the_same_file(con, tmp_path):
    path, _ = bad_file(con, tmp_path / "bad.csv")
    with pytest.raises(ProtocolError) as caught:
        run_import(con, path)
    assert caught.value.details == {"line": 3, "column": "invoice_date", "rejected": len(BAD_ROWS)}


def test_text_rules_of_edits_apply_to_imports(con, tmp_path):
    first = scalar(con, "SELECT max(customer_id) + 1 FROM customer")
    path = write(
        tmp_path / "c.csv",
        "customer_id,customer_name,email,region,segment",
        f'{first},"{"x" * 201}",a@b.c,North,Retail',
        f'{first + 1},"   ",a@b.c,North,Retail',
        f'{first + 2},"tab\there",a@b.c,North,Retail',
        f"{first + 3},Fine Name,a@b.c,North,Retail",
    )
    stats = run_import(con, path, "customer", mode="validate")
    assert (stats["inserted"], stats["rejected"]) == (1, 3)
    reasons = [
        r[0] for r in con.execute("SELECT reason FROM validation_logs ORDER BY 1").fetchall()
    ]
    assert reasons == [
        "blank text",
        "control characters in text",
        "text longer than 200 characters",
    ]


# -- upserts ----------------------------------------------------------------------------


def test_upsert_updates_existing_rows_and_inserts_new_ones(con, tmp_path):
    old = con.execute("SELECT * FROM sales WHERE sale_id IN (1, 2) ORDER BY sale_id").fetchall()
    first = next_sale_id(con)
    path = write(
        tmp_path / "s.csv",
        SALES_HEADER,
        "1,2025-12-31,2,3,7,700.00",
        f"2,{old[1][1]},{old[1][2]},{old[1][3]},{old[1][4]},0.01",
        f"{first},2024-06-01,1,1,1,1.00",
    )
    without = run_import(con, path, mode="validate", import_id="no-upsert")
    assert (without["inserted"], without["updated"], without["rejected"]) == (1, 0, 2)
    assert scalar(con, "SELECT net_price FROM sales WHERE sale_id = 1") == old[0][5]

    stats = run_import(con, path, upsert=True)  # now every key exists
    assert (stats["inserted"], stats["updated"], stats["rejected"]) == (0, 3, 0)
    rows = con.execute("SELECT * FROM sales WHERE sale_id IN (1, 2) ORDER BY sale_id").fetchall()
    assert rows[0] == (1, dt.date(2025, 12, 31), 2, 3, 7, Decimal("700.00"))
    assert rows[1] == (*old[1][:5], Decimal("0.01"))
    assert_exact(con)


def test_product_upsert_reparents_and_the_summary_follows(con, tmp_path):
    product = con.execute("SELECT * FROM product WHERE product_id = 1").fetchone()
    other = con.execute(
        "SELECT supplier, brand FROM product WHERE supplier <> ? LIMIT 1", [product[2]]
    ).fetchone()
    path = tmp_path / "p.csv"
    with path.open("w", newline="") as file:  # supplier names hold commas: quote them
        writer = csv.writer(file)
        writer.writerow(TABLES["product"].columns)
        writer.writerow([1, product[1], other[0], other[1], "moved", product[5]])
    assert run_import(con, path, "product", upsert=True)["updated"] == 1
    moved = scalar(
        con,
        f"SELECT line_count FROM {SUMMARY} WHERE family = 'moved' AND level = 0 AND month IS NULL",
    )
    assert moved == scalar(con, "SELECT count(*) FROM sales WHERE product_id = 1")
    assert_exact(con)


# -- a large file -----------------------------------------------------------------------


def test_large_file_fast_then_validate_with_bad_rows_at_known_lines(con, tmp_path):
    count = 200_000
    first = next_sale_id(con)
    lines = sales_lines(first, count)
    before = grand_total(con)
    stats = run_import(con, write(tmp_path / "big.csv", SALES_HEADER, *lines))
    assert stats["inserted"] == count
    added = sum(Decimal(line.rsplit(",", 1)[1]) for line in lines)
    after = grand_total(con)
    assert after[1] == before[1] + added and after[2] == before[2] + count
    assert_exact(con)

    # Again with new keys and bad rows scattered: reader rejects and SQL checks mixed,
    # so the line numbers of good rows must be reconstructed exactly.
    lines = sales_lines(first + count, count)
    bad = {
        1_000: lines[1_000].replace(",2024-", ",x2024-", 1),  # wrong type (reader)
        77_777: lines[77_777] + ",1",  # too many columns (reader)
        123_456: lines[123_456].rsplit(",", 3)[0] + ",99999,1,1.00",  # unknown customer
        150_000: lines[150_000].rsplit(",", 2)[0] + ",-1,1.00",  # negative quantity
        199_999: lines[199_999].rsplit(",", 1)[0] + ",1.001",  # decimals
    }
    for index, row in bad.items():
        lines[index] = row
    stats = run_import(
        con, write(tmp_path / "big2.csv", SALES_HEADER, *lines), mode="validate", import_id="big"
    )
    assert (stats["inserted"], stats["rejected"]) == (count - len(bad), len(bad))
    logged = con.execute("SELECT row_number FROM validation_logs ORDER BY 1").fetchall()
    assert [row[0] for row in logged] == [index + 2 for index in sorted(bad)]
    loaded = con.execute(
        "SELECT sale_id FROM sales WHERE sale_id >= ? ORDER BY sale_id", [first + count]
    ).fetchall()
    assert [row[0] for row in loaded] == [first + count + i for i in range(count) if i not in bad]
    assert_exact(con)


# -- inside the writer's batch ------------------------------------------------------------


def test_import_inside_a_writer_batch_keeps_the_summary_exact(con, tmp_path):
    """Edits before and after an import in one transaction, with the writer's summary
    upkeep: the rebuild makes the pending deltas void, so nothing is counted twice."""
    prepare(con)
    first = next_sale_id(con)
    path = write(tmp_path / "s.csv", SALES_HEADER, *sales_lines(first, 30))

    def edit(*sale_ids: int) -> None:  # a base edit as the writer applies it
        keys = list(sale_ids)
        capture_before(con, "s.sale_id IN (SELECT unnest(?::BIGINT[]))", [keys])
        con.execute(
            "UPDATE sales SET quantity = quantity + 3 "
            "WHERE sale_id IN (SELECT unnest(?::BIGINT[]))",
            [keys],
        )

    con.execute("BEGIN TRANSACTION")
    con.execute("DELETE FROM _before")
    edit(5, 6)
    apply_import(con, {"table": "sales", "path": str(path)})
    edit(6, 7, first)
    update_summary(con)
    con.execute("COMMIT")
    assert_exact(con)


# -- HTTP ---------------------------------------------------------------------------------


async def post_csv(server, table: str, body: bytes, **params: Any):
    async with server.client() as http:
        return await http.post(
            f"/import/{table}",
            content=body,
            params=params,
            headers={"content-type": "text/csv"},
        )


async def test_http_import_validate_and_fast(server):
    db = server.services.db

    def prepare_file(cur: duckdb.DuckDBPyConnection) -> bytes:
        path, _ = bad_file(cur, server.services.settings.data_dir / "upload-source.csv")
        return path.read_bytes()

    body = await db.read(prepare_file)
    response = await post_csv(server, "sales", body, mode="validate", file_name="mine.csv")
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["status"] == "applied"
    assert data["stats"]["inserted"] == 2 and data["stats"]["rejected"] == len(BAD_ROWS)

    def logged(cur: duckdb.DuckDBPyConnection) -> list[tuple]:
        return cur.execute("SELECT DISTINCT import_id, file_name FROM validation_logs").fetchall()

    assert await db.read(logged) == [(data["import_id"], "mine.csv")]
    rejected = await post_csv(server, "sales", body)  # its good rows are in the table now
    assert rejected.status_code == 422, rejected.text
    error = rejected.json()["error"]
    assert error["code"] == "invalid_import" and error["line"] == 2
    assert "already in table" in error["message"]
    assert rejected.json()["data"]["status"] == "rejected"
    assert await db.read(lambda cur: footing_errors(cur) + summary_drift(cur)) == []
    uploads = server.services.settings.data_dir / "imports"
    assert sorted(p.name for p in uploads.iterdir()) == [], "uploads are deleted once decided"


async def test_http_import_refusals(server, monkeypatch):
    monkeypatch.setattr(analytics_routes, "MAX_UPLOAD_BYTES", 100)
    too_big = await post_csv(server, "sales", b"x" * 101)
    unknown = await post_csv(server, "nope", b"a\n")
    summary = await post_csv(server, SUMMARY, b"a\n")
    bad_mode = await post_csv(server, "sales", b"a\n", mode="quick")
    empty = await post_csv(server, "sales", b"")
    assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "too_big"
    assert unknown.status_code == 404
    assert summary.status_code == 422 and bad_mode.status_code == 422
    assert empty.status_code == 422 and empty.json()["error"]["code"] == "invalid_import"
    uploads = server.services.settings.data_dir / "imports"
    assert not uploads.exists() or not list(uploads.iterdir())


async def test_save_upload_writes_the_body_and_enforces_the_limit(tmp_path):
    async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
        for part in parts:
            yield part

    path = await save_upload(chunks(b"a,b\n", b"1,2\n"), tmp_path, "imp-1", max_bytes=8)
    assert path == tmp_path / "imports" / "imp-1.csv" and path.read_bytes() == b"a,b\n1,2\n"
    with pytest.raises(ProtocolError) as caught:
        await save_upload(chunks(b"a,b\n", b"1,2\n", b"3"), tmp_path, "imp-2", max_bytes=8)
    assert caught.value.code == "too_big"
    assert sorted(p.name for p in (tmp_path / "imports").iterdir()) == ["imp-1.csv"]
    with pytest.raises(ValueError, match="bad import id"):
        await save_upload(chunks(b"x"), tmp_path, "../escape", max_bytes=8)


# -- command line ---------------------------------------------------------------------------


def cli_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["import", *argv])


def test_cli_import_with_progress(data_dir, tmp_path, capsys):
    db_path = data_dir / "ducksheet.duckdb"
    with duckdb.connect(str(db_path)) as con:
        path, first = bad_file(con, tmp_path / "bad.csv")
    settings = Settings(data_dir=data_dir)
    assert run_command(settings, cli_args(str(path), "--table", "sales")) == 1
    assert "import rejected: line 3" in capsys.readouterr().err
    assert run_command(settings, cli_args(str(path), "--table", "sales", "--validate")) == 0
    out = capsys.readouterr().out
    assert f"read {len(BAD_ROWS) + 2:,} rows" in out and "summary rebuilt" in out
    assert f"2 inserted, 0 updated, {len(BAD_ROWS)} rejected (see validation_logs)" in out
    with duckdb.connect(str(db_path)) as con:
        assert scalar(con, "SELECT count(*) FROM sales WHERE sale_id >= ?", first) == 2
        assert_exact(con)


async def test_cli_import_says_the_file_is_locked_while_the_server_runs(server, tmp_path):
    path = write(tmp_path / "c.csv", "customer_id,customer_name,email,region,segment")
    data_dir = server.services.settings.data_dir
    result = await run_cli(data_dir, "import", str(path), "--table", "customer")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "in use" in result.stderr and "POST /import/customer" in result.stderr
