"""Proportional spreading over numpy columns: the same rule as
protocol.spread.proportional_by_level (largest remainder, level by level, ties by
order), computed per level with array operations so a spread over 100,000 rows takes
milliseconds. Products too big for int64 are computed with Python integers (exact)."""

from __future__ import annotations

import numpy as np

SAFE = 2.0**62  # |a * b| below this fits int64 with room to spare


class Overflow(ValueError):
    """A share does not fit a 64-bit integer (so no column could store it)."""


def proportional(groups: list[np.ndarray], weights: np.ndarray, amount: int) -> np.ndarray:
    """New values for rows whose `weights` (int64, not summing to zero) share `amount`.

    Rows come in path order; groups[d][i] is the group of row i at depth d below the
    edited cell, numbered 0, 1, ... in row order (so each level's groups are
    contiguous runs nested in the level above). Each row is its own last level.
    """
    count = len(weights)
    absolute = float(np.abs(weights.astype(np.float64)).sum())
    exact_int64 = absolute * max(abs(amount), 1) < SAFE
    total = int(weights.sum()) if absolute < SAFE else int(weights.astype(object).sum())
    sign = 1 if total > 0 else -1
    factor, den = amount * sign, abs(total)
    shares = np.array([amount], dtype=np.int64)  # the root's rounded amount
    parent = np.zeros(count, dtype=np.int64)  # each row's group one level up
    for depth in range(len(groups) + 1):
        group = groups[depth] if depth < len(groups) else np.arange(count, dtype=np.int64)
        starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
        weight = np.add.reduceat(weights, starts) if count else weights
        part, remainder = _floor_shares(weight, factor, den, exact_int64)
        shares = _add_left_over(part, remainder, parent[starts], shares)
        parent = group
    return shares


def _floor_shares(
    weight: np.ndarray, factor: int, den: int, exact_int64: bool
) -> tuple[np.ndarray, np.ndarray]:
    """floor(weight * factor / den) and its remainder in [0, den), exactly."""
    if exact_int64:
        numerator = weight * factor
        return numerator // den, numerator % den
    numerator = weight.astype(object) * factor
    try:
        return (numerator // den).astype(np.int64), (numerator % den).astype(np.int64)
    except OverflowError as exc:
        raise Overflow("a share does not fit 64 bits") from exc


def _add_left_over(
    part: np.ndarray, remainder: np.ndarray, parent: np.ndarray, parent_share: np.ndarray
) -> np.ndarray:
    """Give each parent's left-over units to its children with the largest remainders
    (ties: the child that comes first)."""
    size = len(part)
    floors = np.zeros(len(parent_share), dtype=np.int64)
    np.add.at(floors, parent, part)
    left_over = parent_share - floors
    order = np.lexsort((np.arange(size), -remainder, parent))
    sorted_parent = parent[order]
    first = np.searchsorted(sorted_parent, sorted_parent)  # where each parent's run starts
    rank = np.arange(size) - first
    part = part.copy()
    part[order[rank < left_over[sorted_parent]]] += 1
    return part
