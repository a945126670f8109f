"""Summary deltas per cell, summed exactly (int units, Decimal cents) in Python."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

Cell = tuple[str | None, str | None, str | None, str | None, int]  # a node-month + level
Node = tuple[str, str, str, str]  # supplier, brand, family, month: a family-month node
Delta = list[Any]  # [quantity, net_amount, line_count]


def add(deltas: dict[Any, Delta], key: Any, quantity: int, net: Decimal | int, lines: int) -> None:
    """deltas[key] += (quantity, net, lines)."""
    delta = deltas.get(key)
    if delta is None:
        deltas[key] = [quantity, net, lines]
    else:
        delta[0] += quantity
        delta[1] += net
        delta[2] += lines


def roll_up(nodes: dict[Node, Delta]) -> dict[Cell, Delta]:
    """Per-cell deltas of every grouping set (by month and all months), each level summed
    from the one below it rather than each node adding into its eight cells."""
    cells: dict[Cell, Delta] = {}
    months: dict[Cell, Delta] = {(*node, 0): delta for node, delta in nodes.items()}
    for level in (0, 1, 3, 7):
        if level:
            months = _parents(months, level)
        cells.update(months)
        for (supplier, brand, family, _, _), delta in months.items():
            add(cells, (supplier, brand, family, None, level), *delta)
    return cells


def _parents(months: dict[Cell, Delta], level: int) -> dict[Cell, Delta]:
    """The month cells one level up (1 brand, 3 supplier, 7 total), summed."""
    parents: dict[Cell, Delta] = {}
    for (supplier, brand, _, month, _), delta in months.items():
        parent = (supplier if level < 7 else None, brand if level < 3 else None, None, month)
        add(parents, (*parent, level), *delta)
    return parents
