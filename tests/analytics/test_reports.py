"""Every named report against an independent computation in Python over the raw rows of
the small seeded database, with and without date filters, through the real server."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import defaultdict
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

import conftest
import pytest
from helpers import db_read

from server.analytics.reports import REPORTS_DIR, catalog, parse_report
from server.config import Settings

Row = dict[str, Any]
RANGES = [(None, None), ("2024-03-10", "2024-07-20"), ("2025-11-15", None), (None, "2024-01-31")]


# -- the raw data and small helpers ------------------------------------------------------


class Data:
    """sales joined with product and customer, as plain Python rows."""

    def __init__(self, lines: list[Row]) -> None:
        self.lines = lines

    def between(self, start: str | None, end: str | None) -> list[Row]:
        low = dt.date.fromisoformat(start) if start else dt.date.min
        high = dt.date.fromisoformat(end) if end else dt.date.max
        return [line for line in self.lines if low <= line["invoice_date"] <= high]


async def raw_data(server) -> Data:
    def fetch(cur):
        result = cur.execute(
            "SELECT s.*, p.product_name, p.supplier, p.brand, p.family, c.region, c.segment "
            "FROM sales s JOIN product p USING (product_id) JOIN customer c USING (customer_id)"
        )
        names = [d[0] for d in result.description]
        return [dict(zip(names, row, strict=True)) for row in result.fetchall()]

    lines = await db_read(server, fetch)
    for line in lines:
        line["month"] = line["invoice_date"].strftime("%Y-%m")
    return Data(lines)


def group(lines: Iterable[Row], *keys: str) -> dict[tuple, list[Row]]:
    groups: dict[tuple, list[Row]] = defaultdict(list)
    for line in lines:
        groups[tuple(line[k] for k in keys)].append(line)
    return groups


def total(lines: list[Row], column: str = "net_price") -> Any:
    return sum((line[column] for line in lines), Decimal(0) if column == "net_price" else 0)


def nulls_last(*values: Any) -> tuple:
    return tuple((v is None, v) for v in values)


def nulls_first(*values: Any) -> tuple:
    return tuple((v is not None, v) for v in values)


async def fetch_report(server, name: str, **params: Any) -> list[Row]:
    query = {k: v for k, v in params.items() if v is not None}
    async with server.client() as http:
        response = await http.get(f"/reports/{name}", params=query)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["report"] == name
    assert all(list(row) == data["columns"] for row in data["rows"])
    return data["rows"]


def same(actual: Any, expected: Any) -> bool:
    if isinstance(expected, Decimal):
        return actual is not None and Decimal(str(actual)) == expected
    if isinstance(expected, float):
        return actual == pytest.approx(expected, rel=1e-9, abs=1e-12)
    return actual == expected


def assert_rows(actual: list[Row], expected: list[Row]) -> None:
    assert len(actual) == len(expected)
    for index, (got, want) in enumerate(zip(actual, expected, strict=True)):
        assert list(got) == list(want), f"columns of row {index}"
        bad = {k: (got[k], v) for k, v in want.items() if not same(got[k], v)}
        assert not bad, f"row {index} {want}: (actual, expected) {bad}"


async def check_report(server, name: str, expected: Callable[[list[Row]], list[Row]]) -> None:
    data = await raw_data(server)
    for start, end in RANGES:
        actual = await fetch_report(server, name, start_date=start, end_date=end)
        assert_rows(actual, expected(data.between(start, end)))


def share(part: Decimal, whole: Decimal) -> float | None:
    return float(part / whole) if whole else None


# -- each report ----------------------------------------------------------------------


def expected_monthly_summary(lines: list[Row]) -> list[Row]:
    def summary(month: str | None, members: list[Row], change: Decimal | None) -> Row:
        net = total(members)
        return {
            "month": month,
            "net_amount": net,
            "quantity": total(members, "quantity"),
            "line_count": len(members),
            "customers": len({m["customer_id"] for m in members}),
            "avg_line_amount": pytest.approx(float(net / len(members)), abs=0.0051),
            "change_from_previous": change,
        }

    rows: list[Row] = []
    for (month,), members in sorted(group(lines, "month").items()):
        change = total(members) - rows[-1]["net_amount"] if rows else None
        rows.append(summary(month, members, change))
    return [*rows, summary(None, lines, None)]


async def test_monthly_sales_summary(server):
    await check_report(server, "monthly-sales-summary", expected_monthly_summary)


def expected_breakdown(lines: list[Row]) -> list[Row]:
    rows = []
    ways = {"supplier": ("supplier",), "brand": ("supplier", "brand"), "region": ("region",)}
    for (month,), in_month in group(lines, "month").items():
        for dimension, keys in ways.items():
            groups = group(in_month, *keys)
            month_total = total(in_month)
            for values, members in groups.items():
                named = dict(zip(keys, values, strict=True))
                rows.append(
                    {
                        "month": month,
                        "dimension": dimension,
                        "supplier": named.get("supplier"),
                        "brand": named.get("brand"),
                        "region": named.get("region"),
                        "net_amount": total(members),
                        "quantity": total(members, "quantity"),
                        "line_count": len(members),
                        "share_of_month": share(total(members), month_total),
                    }
                )
    return sorted(
        rows,
        key=lambda r: nulls_last(
            r["month"], r["dimension"], r["supplier"], r["brand"], r["region"]
        ),
    )


async def test_monthly_sales_breakdown(server):
    await check_report(server, "monthly-sales-breakdown", expected_breakdown)


def expected_top(lines: list[Row], limit: int = 5) -> list[Row]:
    by_product = group(lines, "product_id")
    everything = total(lines)
    ranked = sorted(by_product.items(), key=lambda item: (-total(item[1]), item[0][0]))
    rows = []
    for rank, ((product_id,), members) in enumerate(ranked[:limit], start=1):
        first = members[0]
        rows.append(
            {
                "rank": rank,
                "product_id": product_id,
                **{k: first[k] for k in ("product_name", "supplier", "brand", "family")},
                "net_amount": total(members),
                "quantity": total(members, "quantity"),
                "line_count": len(members),
                "share_of_total": share(total(members), everything),
            }
        )
    return rows


async def test_top_5_by_revenue_with_limit(server):
    await check_report(server, "top-5-by-revenue", expected_top)
    data = await raw_data(server)
    rows = await fetch_report(server, "top-5-by-revenue", limit=12, start_date="2024-05-01")
    assert_rows(rows, expected_top(data.between("2024-05-01", None), limit=12))


LEVELS = {0: ("supplier", "brand", "family"), 1: ("supplier", "brand"), 3: ("supplier",), 7: ()}
NODE = {0: "family", 1: "brand", 3: "supplier", 7: "total"}


def hierarchy_nodes(lines: list[Row], levels: Iterable[int]) -> list[Row]:
    """Every node (supplier > brand > family, and the total) with its lines."""
    nodes = []
    for level in levels:
        keys = LEVELS[level]
        for values, members in group(lines, *keys).items():
            named = dict(zip(keys, values, strict=True))
            node = {k: named.get(k) for k in ("supplier", "brand", "family")}
            nodes.append({"level": level, **node, "lines": members})
    return nodes


def parent_key(node: Row) -> tuple:
    level = node["level"]
    return (
        level,
        node["supplier"] if level in (0, 1) else None,
        node["brand"] if level == 0 else None,
    )


def expected_share_of_parent(lines: list[Row]) -> list[Row]:
    nodes = hierarchy_nodes(lines, (0, 1, 3, 7)) if lines else []
    parents: dict[tuple, Decimal] = defaultdict(Decimal)
    for node in nodes:
        parents[parent_key(node)] += total(node["lines"])
    rows = []
    for node in nodes:
        net, top = total(node["lines"]), node["level"] == 7
        parent = None if top else parents[parent_key(node)]
        rows.append(
            {
                "level": node["level"],
                "node": NODE[node["level"]],
                "supplier": node["supplier"],
                "brand": node["brand"],
                "family": node["family"],
                "net_amount": net,
                "quantity": total(node["lines"], "quantity"),
                "parent_net_amount": parent,
                "share_of_parent": None if top else share(net, parent),
            }
        )
    return sorted(rows, key=lambda r: nulls_first(r["supplier"], r["brand"], r["family"]))


async def test_share_of_parent(server):
    await check_report(server, "share-of-parent", expected_share_of_parent)


def expected_running_totals(lines: list[Row]) -> list[Row]:
    rows = []
    for (supplier, brand), members in sorted(group(lines, "supplier", "brand").items()):
        running_net, running_quantity = Decimal(0), 0
        for (month,), in_month in sorted(group(members, "month").items()):
            running_net += total(in_month)
            running_quantity += total(in_month, "quantity")
            rows.append(
                {
                    "supplier": supplier,
                    "brand": brand,
                    "month": month,
                    "net_amount": total(in_month),
                    "running_net_amount": running_net,
                    "quantity": total(in_month, "quantity"),
                    "running_quantity": running_quantity,
                }
            )
    return rows


async def test_running_totals(server):
    await check_report(server, "running-totals", expected_running_totals)


def expected_rank_within_parent(lines: list[Row]) -> list[Row]:
    nodes = hierarchy_nodes(lines, (0, 1, 3))
    siblings: dict[tuple, list[Decimal]] = defaultdict(list)
    for node in nodes:
        siblings[parent_key(node)].append(total(node["lines"]))
    rows = []
    for node in nodes:
        net, others = total(node["lines"]), siblings[parent_key(node)]
        rows.append(
            {
                "level": node["level"],
                "node": NODE[node["level"]],
                "supplier": node["supplier"],
                "brand": node["brand"],
                "family": node["family"],
                "net_amount": net,
                "rank": 1 + sum(1 for other in others if other > net),
                "siblings": len(others),
            }
        )
    return sorted(
        rows,
        key=lambda r: (-r["level"], *nulls_last(r["supplier"], r["brand"], r["rank"], r["family"])),
    )


async def test_rank_within_parent(server):
    await check_report(server, "rank-within-parent", expected_rank_within_parent)


MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")


def expected_month_pivot(lines: list[Row]) -> list[Row]:
    rows = []
    by_brand_year = group(lines, "supplier", "brand")
    for (supplier, brand), members in sorted(by_brand_year.items()):
        for (year,), in_year in sorted(group(members, "year").items()):
            cells = {name: Decimal("0.00") for name in MONTHS}
            for line in in_year:
                cells[MONTHS[line["invoice_date"].month - 1]] += line["net_price"]
            rows.append(
                {
                    "supplier": supplier,
                    "brand": brand,
                    "year": year,
                    **cells,
                    "total": total(in_year),
                }
            )
    return rows


async def test_month_pivot(server):
    def expected(lines: list[Row]) -> list[Row]:
        return expected_month_pivot([{**line, "year": line["invoice_date"].year} for line in lines])

    await check_report(server, "month-pivot", expected)


def expected_measures(lines: list[Row]) -> list[Row]:
    rows = []
    for (supplier, month), members in sorted(group(lines, "supplier", "month").items()):
        measures = {
            "customers": Decimal(len({m["customer_id"] for m in members})),
            "line_count": Decimal(len(members)),
            "net_amount": total(members),
            "quantity": Decimal(total(members, "quantity")),
        }
        rows += [
            {"supplier": supplier, "month": month, "measure": name, "amount": value}
            for name, value in sorted(measures.items())
        ]
    return rows


async def test_measure_unpivot(server):
    await check_report(server, "measure-unpivot", expected_measures)


def expected_customer_segments(lines: list[Row]) -> list[Row]:
    everything = total(lines)

    def row(dimension: str, member: str | None, members: list[Row]) -> Row:
        return {
            "dimension": dimension,
            "member": member,
            "customers": len({m["customer_id"] for m in members}),
            "brands": len({m["brand"] for m in members}),
            "line_count": len(members),
            "quantity": total(members, "quantity") if members else None,
            "net_amount": total(members) if members else None,
            "share_of_total": share(total(members), everything) if members else None,
        }

    rows = [
        row(dimension, member, members)
        for dimension in ("segment", "region")
        for (member,), members in sorted(group(lines, dimension).items())
    ]
    return [*rows, row("total", None, lines)]


async def test_customer_segments(server):
    await check_report(server, "customer-segments", expected_customer_segments)


# -- the endpoints --------------------------------------------------------------------


async def test_list_reports_names_descriptions_and_parameters(server):
    async with server.client() as http:
        response = await http.get("/reports")
    assert response.status_code == 200
    reports = {r["name"]: r for r in response.json()["data"]["reports"]}
    assert set(reports) >= {
        "monthly-sales-summary",
        "monthly-sales-breakdown",
        "top-5-by-revenue",
        "share-of-parent",
        "running-totals",
        "rank-within-parent",
        "month-pivot",
        "measure-unpivot",
        "customer-segments",
    }
    for report in reports.values():
        assert report["description"]
        assert [p["name"] for p in report["parameters"]][:2] == ["start_date", "end_date"]
    limit = reports["top-5-by-revenue"]["parameters"][2]
    assert limit == {
        "name": "limit",
        "type": "integer",
        "default": 5,
        "min": 1,
        "max": 100,
        "description": "how many products to list",
    }


async def test_csv_format_matches_json(server):
    json_rows = await fetch_report(server, "running-totals", start_date="2024-02-01")
    async with server.client() as http:
        response = await http.get(
            "/reports/running-totals", params={"start_date": "2024-02-01", "format": "csv"}
        )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert 'filename="running-totals.csv"' in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert len(rows) == len(json_rows)
    for text_row, json_row in zip(rows, json_rows, strict=True):
        assert list(text_row) == list(json_row)
        assert Decimal(text_row["running_net_amount"]) == Decimal(
            str(json_row["running_net_amount"])
        )
        assert text_row["month"] == json_row["month"]


BAD_QUERIES = [
    {"start_date": "2024-13-01"},
    {"start_date": "2024-1-5"},
    {"end_date": "yesterday"},
    {"end_date": "2024-02-30"},
    {"start_date": "2024-06-02", "end_date": "2024-06-01"},
    {"start_date": "2024-01-01'; DROP TABLE sales; --"},
    {"limit": "0"},
    {"limit": "101"},
    {"limit": "five"},
    {"colour": "red"},
    {"format": "xml"},
]


async def test_bad_parameters_are_rejected_with_422(server):
    async with server.client() as http:
        for query in BAD_QUERIES:
            response = await http.get("/reports/top-5-by-revenue", params=query)
            assert response.status_code == 422, (query, response.text)
            assert response.json()["error"]["code"] == "invalid_value", query
        ok = await http.get("/reports/top-5-by-revenue", params={"limit": "100"})
    assert ok.status_code == 200


async def test_unknown_report_is_404(server):
    async with server.client() as http:
        response = await http.get("/reports/no-such-report")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_same_start_and_end_is_one_day(server):
    data = await raw_data(server)
    day = data.lines[0]["invoice_date"].isoformat()
    rows = await fetch_report(server, "monthly-sales-summary", start_date=day, end_date=day)
    assert rows[-1]["line_count"] == len(data.between(day, day))


async def test_reports_do_not_wait_for_the_writer_lock(server):
    """Reports run on reader cursors: holding the writer's lock does not block them."""
    async with server.services.db._lock:
        rows = await fetch_report(server, "monthly-sales-summary")
    assert rows[-1]["month"] is None and rows[-1]["line_count"] > 0


async def test_reports_see_committed_edits(server):
    data = await raw_data(server)
    line = data.lines[0]
    edit = {
        "table": "sales",
        "column": "quantity",
        "value": line["quantity"] + 1000,
        "condition": {"sale_id": line["sale_id"]},
    }
    async with server.client() as http:
        response = await http.post("/update_cell?wait=10", json={"data": edit})
        assert response.status_code == 200, response.text
    rows = await fetch_report(server, "monthly-sales-summary")
    month = next(r for r in rows if r["month"] == line["month"])
    expected = total([x for x in data.lines if x["month"] == line["month"]], "quantity") + 1000
    assert month["quantity"] == expected


def test_reports_use_every_sql_feature_the_design_asks_for():
    text = " ".join(report.sql.upper() for report in catalog().values())
    for feature in (
        "JOIN",
        "PIVOT",
        "UNPIVOT",
        "UNION",
        "GROUP BY",
        "GROUPING SETS",
        "OVER",
        "WITH",
    ):
        assert feature in text, feature


def test_report_files_declare_exactly_the_parameters_they_use():
    assert sorted(catalog()) == sorted(p.stem for p in REPORTS_DIR.glob("*.sql"))
    with pytest.raises(ValueError, match="uses"):
        parse_report("x", "-- d\nSELECT $start_date, $end_date, $limit")
    with pytest.raises(ValueError, match="malformed"):
        parse_report("x", "-- @param limit integer 5\nSELECT $start_date, $end_date, $limit")


VIEWER, ADMIN = "v" * 20, "a" * 20


async def test_roles_viewers_read_reports_admins_export_and_import(data_dir, redis_url):
    settings = Settings(
        data_dir=data_dir, redis_url=redis_url, tokens=f"val:viewer:{VIEWER},ada:admin:{ADMIN}"
    )
    csv_body = b"customer_id,customer_name,email,region,segment\n9999,Ann,a@b.c,North,Retail\n"
    async with conftest.run_server(settings) as running, running.client() as http:

        async def call(method: str, path: str, token: str | None) -> int:
            headers = {"authorization": f"Bearer {token}"} if token else {}
            if method == "POST":
                headers["content-type"] = "text/csv"
            content = csv_body if method == "POST" else None
            response = await http.request(method, path, headers=headers, content=content)
            return response.status_code

        assert await call("GET", "/reports", None) == 401
        assert await call("GET", "/reports/top-5-by-revenue", VIEWER) == 200
        assert await call("GET", "/export/customer", VIEWER) == 403
        assert await call("POST", "/import/customer", VIEWER) == 403
        assert await call("GET", "/export/customer", ADMIN) == 200
        assert await call("POST", "/import/customer", ADMIN) == 200
