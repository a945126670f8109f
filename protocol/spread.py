"""Rebalancing math: pure functions over integer units (cents or pieces).

Amounts are integers so every split foots exactly. Shares are rounded with the
largest-remainder method: each part gets the floor of its exact share, and the units
left over go one each to the parts with the largest remainders; ties go to the part
that comes first in the given order (the caller orders leaves by path, then key), so a
spread is deterministic. A proportional spread rounds level by level: the child nodes
of the edited cell first, then their children, down to the rows, so children with
equal values get equal shares whenever the amount divides.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from decimal import Decimal
from typing import NamedTuple

from protocol.errors import ProtocolError


class SpreadError(ProtocolError):
    """A spread that cannot be done: code is cannot_spread_proportionally,
    cannot_spread_like, nothing_to_spread or all_held."""


class Leaf(NamedTuple):
    """One base row below the edited cell. `path` names the child node at each level
    between the cell and the row (e.g. (family, month)); `held` rows keep their value."""

    key: int
    path: tuple[Hashable, ...]
    value: int
    held: bool = False


def largest_remainder(weights: Sequence[int], total: int) -> list[int]:
    """Split `total` in proportion to `weights` (whose sum must not be zero) into
    integers that add up to exactly `total`."""
    denominator = sum(weights)
    if denominator == 0:
        raise ValueError("weights sum to zero")
    sign = 1 if denominator > 0 else -1
    denominator *= sign
    parts: list[int] = []
    remainders: list[int] = []
    for weight in weights:
        # floor division by a positive denominator: remainder in [0, denominator)
        part, remainder = divmod(total * weight * sign, denominator)
        parts.append(part)
        remainders.append(remainder)
    left_over = total - sum(parts)  # 0 <= left_over < len(weights)
    by_remainder = sorted(range(len(parts)), key=lambda i: -remainders[i])  # stable: ties by order
    for i in by_remainder[:left_over]:
        parts[i] += 1
    return parts


def percent_target(current: int, percent: str) -> int:
    """The units a cell of `current` units reaches when changed by `percent` (at most 4
    decimal places), rounded half away from zero: +5 % of 10.01 is 10.51."""
    per_million = int(Decimal(percent).scaleb(4))  # exact: 4 decimal places at most
    quotient, remainder = divmod(abs(current) * (1_000_000 + per_million), 1_000_000)
    rounded = quotient + (2 * remainder >= 1_000_000)
    return rounded if current >= 0 else -rounded


def split_equally(count: int, total: int) -> list[int]:
    return largest_remainder([1] * count, total)


def spread(leaves: Sequence[Leaf], target: int, method: str = "proportional") -> dict[int, int]:
    """New values of the free leaves so that all leaves sum to `target`.

    proportional: each free leaf scaled by (target - held) / (free total); when every free
    leaf is zero this falls back to equal. equal: the remainder is shared equally among
    child nodes level by level down to the rows.
    """
    if not leaves:
        raise SpreadError("nothing_to_spread", "there are no rows below this cell to spread over")
    free = [leaf for leaf in leaves if not leaf.held]
    if not free:
        raise SpreadError(
            "all_held", "every row below this cell is held; release a hold to change it"
        )
    amount = target - sum(leaf.value for leaf in leaves if leaf.held)
    if method == "proportional":
        values = [leaf.value for leaf in free]
        if any(values):
            if sum(values) == 0:
                raise _sums_to_zero("this cell", "use spread 'equal'")
            return proportional_by_level(free, amount)
    elif method != "equal":
        raise ValueError(f"unknown spread method {method!r}")
    return _spread_equal(leaves, amount, depth=0)


def _sums_to_zero(below: str, instead: str) -> SpreadError:
    return SpreadError(
        "cannot_spread_proportionally",
        f"the values below {below} sum to zero, so proportions are undefined; {instead}",
    )


def proportional_by_level(free: Sequence[Leaf], amount: int) -> dict[int, int]:
    """Share `amount` over the free leaves (whose values must not sum to zero) in
    proportion to their values, rounding at each level of their paths in turn.

    Every part's exact share is value * amount / total with the one overall factor; a
    group's rounded amount is split among its children by the largest remainder of
    their exact shares, so each level foots exactly to the level above.
    """
    total = sum(leaf.value for leaf in free)
    sign = 1 if total > 0 else -1
    result: dict[int, int] = {}

    def split(leaves: Sequence[Leaf], share: int, depth: int) -> None:
        if depth == len(leaves[0].path):
            groups = [[leaf] for leaf in leaves]
        else:
            by_child: dict[Hashable, list[Leaf]] = {}
            for leaf in leaves:
                by_child.setdefault(leaf.path[depth], []).append(leaf)
            groups = list(by_child.values())
        exact = [divmod(sum(x.value for x in g) * amount * sign, abs(total)) for g in groups]
        parts = [part for part, _ in exact]
        left_over = share - sum(parts)  # 0 <= left_over <= len(groups)
        ranked = sorted(range(len(groups)), key=lambda i: -exact[i][1])  # stable: ties by order
        for i in ranked[:left_over]:
            parts[i] += 1
        for group, part in zip(groups, parts, strict=True):
            if depth == len(leaves[0].path):
                result[group[0].key] = part
            else:
                split(group, part, depth + 1)

    split(free, amount, 0)
    return result


def spread_like(
    leaves: Sequence[Leaf], target: int, weights: Mapping[Hashable, int]
) -> dict[int, int]:
    """New values of the free leaves so that all leaves sum to `target`, the cell's
    children (each leaf's path[0]) taking the mix of a reference cell: `weights` holds
    each child's value there (missing: zero). Children entirely held keep their value;
    held rows inside a child count toward that child's share (as in `equal`). Within a
    child its share goes proportionally over its free rows (equally when they are all
    zero)."""
    if not leaves:
        raise SpreadError("nothing_to_spread", "there are no rows below this cell to spread over")
    if all(leaf.held for leaf in leaves):
        raise SpreadError(
            "all_held", "every row below this cell is held; release a hold to change it"
        )
    if not leaves[0].path:
        raise SpreadError(
            "cannot_spread_like",
            "a family-month has no child cells to take a mix from; spread it proportionally",
        )
    amount = target - sum(leaf.value for leaf in leaves if leaf.held)
    children: dict[Hashable, list[Leaf]] = {}
    for leaf in leaves:
        children.setdefault(leaf.path[0], []).append(leaf)
    open_children = [(c, rows) for c, rows in children.items() if not all(r.held for r in rows)]
    mix = [weights.get(child, 0) for child, _ in open_children]
    if sum(mix) == 0:
        raise SpreadError(
            "cannot_spread_like",
            "the reference cell's children have no values here (or they sum to zero), so "
            "there is no mix to take; spread proportionally or equally",
        )
    held_in_open = [sum(r.value for r in rows if r.held) for _, rows in open_children]
    shares = largest_remainder(mix, amount + sum(held_in_open))
    result: dict[int, int] = {}
    for (_, rows), share, held in zip(open_children, shares, held_in_open, strict=True):
        free = [Leaf(r.key, r.path[1:], r.value) for r in rows if not r.held]
        values = [leaf.value for leaf in free]
        if any(values):
            if sum(values) == 0:
                raise _sums_to_zero("a child of this cell", "spread the cell equally")
            result.update(proportional_by_level(free, share - held))
        else:
            result.update(_spread_equal(free, share - held, depth=0))
    return result


def _spread_equal(leaves: Sequence[Leaf], amount: int, depth: int) -> dict[int, int]:
    """Share `amount` (what the free rows of `leaves` must add up to) equally among the
    child nodes at `depth`, skipping children that are entirely held."""
    if depth == len(leaves[0].path):
        free = [leaf for leaf in leaves if not leaf.held]
        return dict(zip((leaf.key for leaf in free), split_equally(len(free), amount), strict=True))
    children: dict[Hashable, list[Leaf]] = {}
    for leaf in leaves:
        children.setdefault(leaf.path[depth], []).append(leaf)
    open_children = [rows for rows in children.values() if not all(r.held for r in rows)]
    held_in_open = [sum(r.value for r in rows if r.held) for rows in open_children]
    # Each open child gets an equal share of the whole amount plus what it holds, so that
    # held rows inside a child count toward that child's share rather than a sibling's.
    shares = split_equally(len(open_children), amount + sum(held_in_open))
    result: dict[int, int] = {}
    for rows, share, held in zip(open_children, shares, held_in_open, strict=True):
        result.update(_spread_equal(rows, share - held, depth + 1))
    return result
