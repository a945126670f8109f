"""Range checks of what a write would store, before DuckDB is asked to store it.

Values a client sends are checked at the edge (protocol.values), but a spread gives each
sales row its share of a total and every edit moves the totals above it: those results
must fit too. A summary cell keeps within the documented range of its column (which
DECIMAL(18, 2) and BIGINT hold with room to spare), and a spread's share within the
range of the sales column it lands in. What does not fit is rejected as `invalid_value`
and never reaches DuckDB, whose overflow errors would carry SQL text.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import duckdb

from protocol.catalog import SUMMARY, TABLES
from protocol.errors import ProtocolError
from protocol.values import max_abs

SUMMARY_QUANTITY = max_abs(TABLES[SUMMARY].columns["quantity"])
SUMMARY_NET = max_abs(TABLES[SUMMARY].columns["net_amount"])
SUMMARY_CENTS = int(SUMMARY_NET * 100)
# The overflow errors DuckDB raises when a result does not fit its type.
OVERFLOWS = (duckdb.OutOfRangeException, duckdb.ConversionException)


class OutOfRange(ProtocolError):
    """A write whose result would leave a column's range. The writer undoes the
    transaction it was found in and rejects the request that caused it."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__("invalid_value", message, **details)


def check_cells(measures: Iterable[tuple[int, Decimal | int]]) -> None:
    """Summary cells as they would be after a write: (quantity, net_amount) each."""
    for quantity, net_amount in measures:
        if abs(quantity) > SUMMARY_QUANTITY:
            raise OutOfRange(
                f"the change would take a quantity total past {SUMMARY_QUANTITY:,}",
                column="quantity",
            )
        if abs(net_amount) > SUMMARY_NET:
            raise OutOfRange(
                f"the change would take a net_amount total past {SUMMARY_NET:,}",
                column="net_amount",
            )


def check_shares(column: str, low: int | None, high: int | None, scale: int) -> None:
    """The smallest and largest share a spread gives a sales row of `column`, in units
    (cents when scale is 100)."""
    target = TABLES["sales"].columns[column]
    bound = int(max_abs(target) * scale)
    minimum = None if target.min_value is None else target.min_value * scale
    if high is not None and (high > bound or (low is not None and low < -bound)):
        raise OutOfRange(
            f"spreading this value would give a sales row a {column} beyond "
            f"{Decimal(bound) / scale:,}",
            column=column,
        )
    if minimum is not None and low is not None and low < minimum:
        raise OutOfRange(
            f"spreading this value would give a sales row a negative {column}", column=column
        )


def check_query(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Run a query that returns the extreme (quantity, net_amount) of the cells a write
    would produce; arithmetic that overflows on the way counts as out of range too."""
    try:
        row = con.execute(sql).fetchone()
    except OVERFLOWS as exc:
        raise OutOfRange("the change would take a summary total out of range") from exc
    if row is not None and row[0] is not None:
        check_cells([(row[0], row[1])])
