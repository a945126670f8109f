"""The pure rebalancing math."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.spread import (
    Leaf,
    SpreadError,
    largest_remainder,
    percent_target,
    split_equally,
    spread,
    spread_like,
)


def test_largest_remainder_foots_and_breaks_ties_by_order():
    assert largest_remainder([1, 1, 1], 100) == [34, 33, 33]
    assert largest_remainder([1, 2], 10) == [3, 7]  # 3.33 / 6.67: the larger remainder wins
    assert split_equally(4, 2) == [1, 1, 0, 0]


def test_largest_remainder_with_negative_values_and_weights():
    assert largest_remainder([2, 1], -10) == [-7, -3]
    assert largest_remainder([-1, -3], 8) == [2, 6]
    assert sum(largest_remainder([5, -2, 4], 1001)) == 1001


def test_largest_remainder_rejects_zero_sum():
    with pytest.raises(ValueError):
        largest_remainder([1, -1], 5)


@given(
    st.lists(st.integers(-(10**9), 10**9), min_size=1, max_size=40).filter(lambda w: sum(w) != 0),
    st.integers(-(10**12), 10**12),
)
def test_largest_remainder_is_exact_and_within_one_unit(weights, total):
    parts = largest_remainder(weights, total)
    assert sum(parts) == total
    for weight, part in zip(weights, parts, strict=True):
        exact = Fraction(total * weight, sum(weights))
        assert abs(part - exact) < 1


def leaves(
    *values: int, paths: list[tuple] | None = None, held: set[int] = frozenset()
) -> list[Leaf]:
    paths = paths or [()] * len(values)
    return [Leaf(i, paths[i], v, i in held) for i, v in enumerate(values)]


def test_proportional_scales_every_leaf():
    assert spread(leaves(100, 300), 800) == {0: 200, 1: 600}


def test_all_zero_children_fall_back_to_equal():
    assert spread(leaves(0, 0, 0), 10) == {0: 4, 1: 3, 2: 3}


def test_nonzero_children_summing_to_zero_cannot_be_proportional():
    with pytest.raises(SpreadError) as info:
        spread(leaves(5, -5), 10)
    assert info.value.code == "cannot_spread_proportionally"
    assert spread(leaves(5, -5), 10, "equal") == {0: 5, 1: 5}


def test_nothing_to_spread():
    with pytest.raises(SpreadError) as info:
        spread([], 10)
    assert info.value.code == "nothing_to_spread"


def test_equal_is_recursive_over_child_nodes():
    # family a has three rows, family b one: each family gets half, then rows share it
    tree = leaves(1, 1, 1, 1, paths=[("a",), ("a",), ("a",), ("b",)])
    assert spread(tree, 600, "equal") == {0: 100, 1: 100, 2: 100, 3: 300}


def test_held_leaves_keep_their_value():
    result = spread(leaves(100, 100, 200, held={0}), 1000)
    assert 0 not in result
    assert result == {1: 300, 2: 600}
    with pytest.raises(SpreadError) as info:
        spread(leaves(1, 2, held={0, 1}), 10)
    assert info.value.code == "all_held"


def test_equal_with_a_held_row_inside_a_child():
    tree = leaves(50, 0, 0, paths=[("a",), ("a",), ("b",)], held={0})
    # total 300: each family 150; family a already holds 50, so its free row gets 100
    assert spread(tree, 300, "equal") == {1: 100, 2: 150}


@given(
    st.lists(
        st.tuples(
            st.sampled_from("abc"), st.sampled_from("xy"), st.integers(-1000, 1000), st.booleans()
        ),
        min_size=1,
        max_size=30,
    ),
    st.integers(-(10**7), 10**7),
    st.sampled_from(["proportional", "equal"]),
)
def test_spread_always_lands_exactly_on_target(rows, target, method):
    tree = [Leaf(i, (a, b), value, held) for i, (a, b, value, held) in enumerate(rows)]
    try:
        result = spread(tree, target, method)
    except SpreadError as exc:
        assert exc.code in {"all_held", "cannot_spread_proportionally"}
        return
    final = {leaf.key: result.get(leaf.key, leaf.value) for leaf in tree}
    assert sum(final.values()) == target
    assert all(final[leaf.key] == leaf.value for leaf in tree if leaf.held)


def test_level_by_level_keeps_equal_children_equal():
    """Four equal families of different row counts: each gets a quarter exactly when
    the amount divides, however their rows are split (rounding per row would not)."""
    leaves = [Leaf(k, ("f1",), 3) for k in range(3)]  # 9 in three rows
    leaves += [Leaf(10 + k, ("f2",), v) for k, v in enumerate((4, 5))]  # 9 in two
    leaves += [Leaf(20, ("f3",), 9), Leaf(30 + 0, ("f4",), 2), Leaf(31, ("f4",), 7)]
    shares = spread(leaves, 4 * 12_449_988, "proportional")
    per_family: dict[str, int] = {}
    for leaf in leaves:
        per_family[leaf.path[0]] = per_family.get(leaf.path[0], 0) + shares[leaf.key]
    assert set(per_family.values()) == {12_449_988}
    assert sum(shares.values()) == 4 * 12_449_988


@given(
    st.integers(2, 6),
    st.integers(1, 10**6),
    st.lists(st.lists(st.integers(1, 50), min_size=1, max_size=6), min_size=6, max_size=6),
    st.integers(-(10**9), 10**9),
)
def test_equal_siblings_stay_equal_when_the_total_divides(families, total, splits, share):
    """Children with equal values get equal shares whenever the amount divides among
    them, however many rows each has and however their rows differ."""
    leaves = []
    for family in range(families):
        parts = splits[family]
        rows = [total * p // sum(parts) for p in parts]
        rows[-1] += total - sum(rows)  # each family sums to `total` exactly
        leaves += [Leaf(family * 100 + i, (family,), v) for i, v in enumerate(rows)]
    shares = spread(leaves, share * families, "proportional")
    per_family = [
        sum(shares[leaf.key] for leaf in leaves if leaf.path == (family,))
        for family in range(families)
    ]
    assert per_family == [share] * families


def _percent_reference(current: int, percent: str) -> int:
    """current * (1 + percent / 100), rounded half away from zero, in exact fractions."""
    exact = Fraction(current) * (1 + Fraction(percent) / 100)
    magnitude = abs(exact)
    rounded = int(magnitude) + (magnitude - int(magnitude) >= Fraction(1, 2))
    return rounded if exact >= 0 else -rounded


def test_percent_target_rounds_half_away_from_zero():
    assert percent_target(1001, "5") == 1051  # 10.01 + 5 % = 10.5105 -> 10.51
    assert percent_target(10, "5") == 11  # 10.5 -> 11
    assert percent_target(-10, "5") == -11  # -10.5 -> -11
    assert percent_target(12345, "-100") == 0
    assert percent_target(0, "250") == 0
    assert percent_target(3, "-50") == 2  # 1.5 -> 2


@given(
    st.integers(-(10**17), 10**17),
    st.decimals(min_value=-100, max_value=10_000, places=4, allow_nan=False),
)
def test_percent_target_matches_the_exact_reference(current, percent):
    text = str(percent)
    assert percent_target(current, text) == _percent_reference(current, text)


def test_like_gives_the_children_the_reference_mix():
    # two families now (path[0] 0 and 1), the reference had them 1 : 3
    leaves = [Leaf(1, (0,), 50), Leaf(2, (0,), 50), Leaf(3, (1,), 100)]
    assert spread_like(leaves, 400, {0: 10, 1: 30}) == {1: 50, 2: 50, 3: 300}


def test_like_keeps_held_children_and_counts_held_rows_in_their_child():
    leaves = [Leaf(1, (0,), 70, held=True), Leaf(2, (0,), 30), Leaf(3, (1,), 100, held=True)]
    # child 1 is held whole; child 0 takes all of the mix: 1000 - 100 held in child 1
    assert spread_like(leaves, 1000, {0: 1, 1: 1}) == {2: 830}


def test_like_with_no_reference_values_or_no_children_is_refused():
    leaves = [Leaf(1, (0,), 5), Leaf(2, (1,), 5)]
    for mix in ({}, {0: 0, 1: 0}, {0: 4, 1: -4}, {7: 10}):
        with pytest.raises(SpreadError) as refused:
            spread_like(leaves, 100, mix)
        assert refused.value.code == "cannot_spread_like"
    with pytest.raises(SpreadError) as refused:
        spread_like([Leaf(1, (), 5)], 100, {})
    assert refused.value.code == "cannot_spread_like"


@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 2), st.integers(-500, 5000), st.booleans()),
        min_size=1,
        max_size=12,
    ),
    st.dictionaries(st.integers(0, 4), st.integers(0, 10_000), max_size=5),
    st.integers(-(10**6), 10**7),
)
def test_like_lands_on_target_with_the_reference_mix(rows, mix, target):
    leaves = [Leaf(i, (c, f), v, held) for i, (c, f, v, held) in enumerate(rows)]
    try:
        values = spread_like(leaves, target, mix)
    except SpreadError as refused:
        assert refused.code in {"all_held", "cannot_spread_like", "cannot_spread_proportionally"}
        return
    final = {leaf.key: values.get(leaf.key, leaf.value) for leaf in leaves}
    assert sum(final.values()) == target
    assert all(final[leaf.key] == leaf.value for leaf in leaves if leaf.held)
    # each child not held whole ends within one unit of its exact share of the mix
    children = {}
    for leaf in leaves:
        children.setdefault(leaf.path[0], []).append(leaf)
    open_children = {c: ls for c, ls in children.items() if not all(x.held for x in ls)}
    weight = sum(mix.get(c, 0) for c in open_children)
    shared = target - sum(x.value for ls in children.values() for x in ls if x.held)
    shared += sum(x.value for ls in open_children.values() for x in ls if x.held)
    for child, child_leaves in open_children.items():
        exact = Fraction(shared * mix.get(child, 0), weight)
        assert abs(sum(final[x.key] for x in child_leaves) - exact) < 1
