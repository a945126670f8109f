"""The vectorized proportional and `like` spreads against the pure reference."""

from __future__ import annotations

import numpy as np
from hypothesis import example, given
from hypothesis import strategies as st

from protocol.spread import Leaf, SpreadError, proportional_by_level, spread_like
from server.writer.apportion import Overflow, like, proportional, proportional_many

paths = st.tuples(st.integers(0, 2), st.integers(0, 2))
weights = st.one_of(st.integers(-(10**6), 10**6), st.integers(-(10**16), 10**16))


@given(
    st.lists(st.tuples(paths, weights), min_size=1, max_size=40),
    st.integers(-(10**16), 10**16),
)
def test_the_numpy_spread_matches_the_reference(rows, amount):
    """server.writer.apportion computes exactly protocol.spread.proportional_by_level,
    also past int64 products (Python integers) and with negative weights."""
    rows = sorted(rows)  # path order, then (as the key) position
    leaves = [Leaf(i, path, w) for i, (path, w) in enumerate(rows)]
    if sum(w for _, w in rows) == 0:
        return
    expected = proportional_by_level(leaves, amount)
    groups = []
    for depth in range(2):
        prefixes = [path[: depth + 1] for path, _ in rows]
        numbers = {p: n for n, p in enumerate(dict.fromkeys(prefixes))}
        groups.append(np.array([numbers[p] for p in prefixes], dtype=np.int64))
    try:
        got = proportional(groups, np.array([w for _, w in rows], dtype=np.int64), amount)
    except Overflow:
        assert any(abs(v) >= 2**63 for v in expected.values())
        return
    assert got.tolist() == [expected[i] for i in range(len(rows))]


@given(
    st.lists(
        st.tuples(
            st.lists(st.tuples(paths, weights), min_size=1, max_size=12),
            st.integers(-(10**16), 10**16),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_many_spreads_at_once_equal_each_alone(roots):
    """proportional_many (a block of disjoint cells) gives each root what proportional
    gives it alone."""
    roots = [(sorted(rows), amount) for rows, amount in roots if sum(w for _, w in rows) != 0]
    if not roots:
        return
    expected: list[int] = []
    all_groups: list[list[int]] = [[], []]
    root_ids: list[int] = []
    weights_all: list[int] = []
    try:
        for r, (rows, amount) in enumerate(roots):
            groups = []
            for depth in range(2):
                prefixes = [path[: depth + 1] for path, _ in rows]
                numbers = {p: n for n, p in enumerate(dict.fromkeys(prefixes))}
                local = [numbers[p] for p in prefixes]
                groups.append(np.array(local, dtype=np.int64))
                offset = (max(all_groups[depth]) + 1) if all_groups[depth] else 0
                all_groups[depth] += [g + offset for g in local]
            w = np.array([w for _, w in rows], dtype=np.int64)
            expected += proportional(groups, w, amount).tolist()
            root_ids += [r] * len(rows)
            weights_all += [w for _, w in rows]
    except Overflow:
        return
    got = proportional_many(
        np.array(root_ids, dtype=np.int64),
        [np.array(g, dtype=np.int64) for g in all_groups],
        np.array(weights_all, dtype=np.int64),
        np.array([amount for _, amount in roots], dtype=np.int64),
    )
    assert got.tolist() == expected


def path_groups(paths: list[tuple[int, ...]]) -> list[np.ndarray]:
    """Each depth's group numbers of rows in path order, numbered in that order."""
    groups = []
    for depth in range(len(paths[0])):
        prefixes = [path[: depth + 1] for path in paths]
        numbers = {p: n for n, p in enumerate(dict.fromkeys(prefixes))}
        groups.append(np.array([numbers[p] for p in prefixes], dtype=np.int64))
    return groups


small = st.one_of(st.just(0), st.integers(-50, 50), st.integers(-(10**9), 10**9))


@given(
    st.lists(st.tuples(paths, small, st.booleans()), min_size=1, max_size=40),
    st.dictionaries(st.integers(0, 3), small, max_size=4),
    st.integers(-(10**12), 10**12),
)
@example(rows=[((0, 0), 1, False), ((1, 0), 1, False)], mix={0: 1, 1: 1}, target=1)  # a tie
def test_the_numpy_like_matches_the_reference(rows, mix, target):
    """apportion.like computes exactly protocol.spread.spread_like, held rows, zeros and
    negatives included, or leaves the case to it (None); the mix is by child number."""
    rows = sorted(rows)
    paths_ = [path for path, _, _ in rows]
    groups = path_groups(paths_)
    leaves = [
        Leaf(i, (int(groups[0][i]), *path[1:]), value, held)
        for i, (path, value, held) in enumerate(rows)
    ]
    values = np.array([value for _, value, _ in rows], dtype=np.int64)
    held = np.array([h for _, _, h in rows], dtype=bool)
    got = like(groups, values, held, mix, target)
    try:
        expected = spread_like(leaves, target, mix)
    except SpreadError:
        assert got is None  # a refusal is the pure rule's to word
        return
    if got is None:
        return  # decided by the pure rule (e.g. a child of zeros spread equally)
    free, new_values = got
    assert dict(zip(np.flatnonzero(free).tolist(), new_values.tolist(), strict=True)) == expected
    changed = sum(expected.values()) + sum(v for (_, v, h) in rows if h)
    assert changed == target


def test_the_numpy_like_takes_the_common_case():
    """A brand's months with values, one row held: like decides it, not the fallback."""
    groups = path_groups([(0, 0), (0, 1), (1, 0), (1, 1), (2, 0)])
    values = np.array([10, 30, 5, 5, 7], dtype=np.int64)
    held = np.array([False, False, True, False, False])
    free, new_values = like(groups, values, held, {0: 1, 1: 1, 2: 2}, 100)
    assert free.tolist() == [True, True, False, True, True]
    assert new_values.tolist() == [6, 19, 20, 50]  # 25 | 25 (5 held) | 50
