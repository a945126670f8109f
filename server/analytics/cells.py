"""How values go into spreadsheet cells, so that an export is exact and inert.

Formula injection: a spreadsheet application runs a CSV field that starts with `=`,
`+`, `-` or `@` as a formula (`=HYPERLINK(...)`, `=cmd|...`). Text that starts so is
prefixed with an apostrophe in CSV (which the application shows as plain text); xlsx
cells are typed, so text is written as a string cell and is never a formula there.
"""

from __future__ import annotations

from decimal import Decimal

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Doubles hold every cent below this (the grid's own limit, see README: Numbers and money).
EXACT_IN_EXCEL = Decimal(10) ** 13


def inert_text(text: str) -> str:
    """A CSV field that no spreadsheet application will run as a formula."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def fits_a_double(value: int | Decimal) -> bool:
    """Whether Excel's number (a double) holds `value` exactly; larger amounts are
    written as text so that no digit is lost."""
    return abs(value) < EXACT_IN_EXCEL
