"""Proportional spreading over numpy columns: the same rule as
protocol.spread.proportional_by_level (largest remainder, level by level, ties by
order), computed per level with array operations so a spread over 100,000 rows takes
milliseconds. Products too big for int64 are computed with Python integers (exact).
`like` (protocol.spread.spread_like) in its common case rests on the same."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from protocol.spread import largest_remainder
from server.writer.sorting import grouped_argsort

SAFE = 2.0**62  # |a * b| below this fits int64 with room to spare


class Overflow(ValueError):
    """A share does not fit a 64-bit integer (so no column could store it)."""


def proportional(groups: list[np.ndarray], weights: np.ndarray, amount: int) -> np.ndarray:
    """New values for rows whose `weights` (int64, not summing to zero) share `amount`.

    Rows come in path order; groups[d][i] is the group of row i at depth d below the
    edited cell, numbered 0, 1, ... in row order (so each level's groups are
    contiguous runs nested in the level above). Each row is its own last level.
    """
    roots = np.zeros(len(weights), dtype=np.int64)
    return proportional_many(roots, groups, weights, np.array([amount], dtype=np.int64))


def like(
    path: list[np.ndarray],
    values: np.ndarray,
    held: np.ndarray,
    weights: Mapping[int, int],
    target: int,
) -> tuple[np.ndarray, np.ndarray] | None:
    """protocol.spread.spread_like for rows in path order: path[d][i] is row i's group at
    depth d (path[0]: the cell's children, whose reference values `weights` holds), so
    that all rows sum to `target`. The free rows (a mask) and their new values; None
    where the pure rule decides: no children, a child whose free rows are all zero or
    sum to zero, every child held, a mix that sums to zero, shares past int64."""
    if not len(values) or not path:
        return None
    starts = _run_starts(path[0])
    free = ~held
    free_sum = np.add.reduceat(np.where(held, 0, values), starts)
    open_child = np.add.reduceat(free.astype(np.int64), starts) > 0
    if not open_child.any() or (free_sum[open_child] == 0).any():
        return None
    mix = [weights.get(child, 0) for child in path[0][starts][open_child].tolist()]
    if sum(mix) == 0:
        return None
    held_in_open = np.add.reduceat(np.where(held, values, 0), starts)[open_child].tolist()
    amount = target - int(values[held].sum()) + sum(held_in_open)
    amounts = [s - h for s, h in zip(largest_remainder(mix, amount), held_in_open, strict=True)]
    if max(abs(a) for a in amounts) >= 2**62:
        return None  # the pure rule computes with Python integers
    new_values = proportional_many(
        _dense(path[0][free]),
        [_dense(level[free]) for level in path[1:]],
        values[free],
        np.array(amounts, dtype=np.int64),
    )
    return free, new_values


def _run_starts(groups: np.ndarray) -> np.ndarray:
    """Where each run of equal group numbers starts."""
    return np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])


def _dense(groups: np.ndarray) -> np.ndarray:
    """Group numbers (in runs) renumbered 0, 1, ... in order."""
    if not groups.size:
        return groups
    return np.r_[0, np.cumsum(groups[1:] != groups[:-1])].astype(np.int64)


def proportional_many(
    roots: np.ndarray, groups: list[np.ndarray], weights: np.ndarray, amounts: np.ndarray
) -> np.ndarray:
    """Several independent proportional spreads at once: rows of root r (numbered 0, 1,
    ... in row order, contiguous) share amounts[r]; `groups` as for `proportional`,
    numbered across all roots. Each root's weights must not sum to zero."""
    return group_shares(roots, groups, weights, amounts).row_shares(weights)


@dataclass(frozen=True)
class GroupShares:
    """A proportional_many settled down to its last level of groups (the roots when
    there are none): the rows' own level, the costly one, is left to `row_shares`."""

    roots: np.ndarray  # per row
    parent: np.ndarray  # per row: its group of the last level
    shares: np.ndarray  # per group of the last level: what its rows share
    factors: np.ndarray  # per root: amount * sign(total) ...
    dens: np.ndarray  # ... over |total|: each row's share is floor(weight * that) or one more
    absolute: np.ndarray  # per root: the sum of |weight| (float64)
    largest_factor: float

    def row_shares(self, weights: np.ndarray) -> np.ndarray:
        """Each row's share (the same `weights` as given to group_shares)."""
        return self._settle(weights, self.roots, self.parent, self.shares)

    def _settle(
        self, weight: np.ndarray, root: np.ndarray, parent: np.ndarray, shares: np.ndarray
    ) -> np.ndarray:
        """Each group's share of its parent's (weight, root, parent: per group)."""
        largest_weight = float(np.abs(weight.astype(np.float64)).max()) if len(weight) else 0.0
        exact_int64 = (
            largest_weight * max(self.largest_factor, 1.0) < SAFE and self.dens.dtype != object
        )
        part, remainder = _floor_shares(weight, self.factors[root], self.dens[root], exact_int64)
        return _add_left_over(part, remainder, parent, shares)


def group_shares(
    roots: np.ndarray, groups: list[np.ndarray], weights: np.ndarray, amounts: np.ndarray
) -> GroupShares:
    """proportional_many down to the rows' parents (see GroupShares)."""
    count = len(weights)
    starts = _run_starts(roots) if count else roots
    absolute = np.add.reduceat(np.abs(weights.astype(np.float64)), starts) if count else weights
    if bool((absolute < SAFE).all()):
        totals = np.add.reduceat(weights, starts) if count else weights
    else:
        totals = np.array(
            [int(part.astype(object).sum()) for part in np.split(weights, starts[1:])],
            dtype=object,
        )
    signs = np.where(totals > 0, 1, -1)
    # the largest |factor|, to decide level by level whether weight * factor fits int64
    # (the few groups of the top levels may need Python integers, the rows rarely do)
    largest_factor = float(np.abs(amounts.astype(np.float64)).max()) if len(amounts) else 0.0
    settled = GroupShares(
        roots,
        roots,
        amounts.astype(np.int64),  # each root's amount
        amounts * signs,
        np.abs(totals),
        absolute,
        largest_factor,
    )
    for group in groups:
        starts = _run_starts(group) if count else group
        weight = np.add.reduceat(weights, starts) if count else weights
        shares = settled._settle(weight, roots[starts], settled.parent[starts], settled.shares)
        settled = replace(settled, parent=group, shares=shares)
    return settled


def _floor_shares(
    weight: np.ndarray, factor: np.ndarray, den: np.ndarray, exact_int64: bool
) -> tuple[np.ndarray, np.ndarray]:
    """floor(weight * factor / den) and its remainder in [0, den), exactly."""
    if exact_int64:
        return np.divmod(weight * factor, den)
    numerator = weight.astype(object) * factor.astype(object)
    try:
        den = den.astype(object)
        return (numerator // den).astype(np.int64), (numerator % den).astype(np.int64)
    except OverflowError as exc:
        raise Overflow("a share does not fit 64 bits") from exc


def _add_left_over(
    part: np.ndarray, remainder: np.ndarray, parent: np.ndarray, parent_share: np.ndarray
) -> np.ndarray:
    """Give each parent's left-over units to its children with the largest remainders
    (ties: the child that comes first). `parent` is ascending and names every parent:
    children come in contiguous runs, one per parent. `part` is changed in place."""
    size = len(part)
    if not size:
        return part
    starts = _run_starts(parent)
    left_over = parent_share - np.add.reduceat(part, starts)
    order = _by_remainder(remainder, parent, len(parent_share))
    lengths = np.diff(np.r_[starts, size])
    rank = np.arange(size) - np.repeat(starts, lengths)
    part[order[rank < np.repeat(left_over, lengths)]] += 1
    return part


def _by_remainder(remainder: np.ndarray, parent: np.ndarray, parents: int) -> np.ndarray:
    """Row order by parent, then remainder descending, then row order: one stable sort
    of a combined key when it fits 64 bits (it does for money), else lexsort."""
    if remainder.dtype != object and len(remainder):
        span = int(remainder.max()) + 1
        if span * parents < 2**62:
            return grouped_argsort(parent * span + (span - 1 - remainder), parent)
    return np.lexsort((-remainder, parent))  # stable: ties keep row order
