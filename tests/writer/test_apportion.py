"""The vectorized proportional spread against the pure reference."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from protocol.spread import Leaf, proportional_by_level
from server.writer.apportion import Overflow, proportional, proportional_many

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
