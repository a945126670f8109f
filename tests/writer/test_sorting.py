"""The two-thread stable argsort of grouped keys against numpy's own."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from server.writer.sorting import grouped_argsort, stable_argsort


def grouped_keys(sizes: list[int], values: list[int], span: int) -> tuple[np.ndarray, np.ndarray]:
    groups = np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)
    within = np.resize(np.array(values, dtype=np.int64) % span, len(groups))
    return groups * span + within, groups


@given(
    st.lists(st.integers(1, 40), min_size=1, max_size=30),
    st.lists(st.integers(0, 10**6), min_size=1, max_size=50),
    st.sampled_from([1, 2, 7, 10**9]),  # span 1 and 2: nearly every key ties
    st.integers(0, 50),
)
def test_matches_a_stable_argsort(sizes, values, span, parallel_from):
    keys, groups = grouped_keys(sizes, values, span)
    expected = np.argsort(keys, kind="stable")
    got = grouped_argsort(keys, groups, parallel_from=parallel_from)
    assert got.tolist() == expected.tolist()


def test_large_sorts_split_or_not_match():
    rng = np.random.default_rng(7)
    for sizes in ([300_000], [1] + [150_000] * 2, list(rng.integers(1, 400, 2_000))):
        values = rng.integers(0, 1_000, 1_000).tolist()
        keys, groups = grouped_keys(sizes, values, 1_000)
        assert np.array_equal(grouped_argsort(keys, groups), np.argsort(keys, kind="stable"))


INT64 = st.integers(-(2**63), 2**63 - 1)


@given(st.lists(st.one_of(INT64, st.integers(0, 5)), max_size=300))
def test_any_int64_keys_sort_stably(values):
    """Keys that fit beside their index (small, non-negative: many ties) and keys that
    do not (negative, huge) alike."""
    keys = np.array(values, dtype=np.int64)
    assert stable_argsort(keys).tolist() == np.argsort(keys, kind="stable").tolist()


@given(st.integers(2, 70), st.integers(0, 3))
def test_keys_at_the_edge_of_fitting(size, below):
    """The largest key that still fits beside an index of `size` rows, and the first
    that does not, each among ties and zeros."""
    bits = (size - 1).bit_length()
    for edge in ((1 << (63 - bits)) - 1 - below, 1 << (63 - bits)):
        keys = np.resize(np.array([edge, 0, edge, 1], dtype=np.int64), size)
        assert stable_argsort(keys).tolist() == np.argsort(keys, kind="stable").tolist()
