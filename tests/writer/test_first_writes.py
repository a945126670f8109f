"""A request's row writes merged (server/writer/changes.first_writes): each distinct
position once, ascending, with the index of its first write (which holds the value
from before the request), by a mask over the rows or by sorting alike."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from server.writer.changes import first_writes


@given(st.integers(1, 200), st.lists(st.integers(0, 10**6), max_size=400))
def test_matches_the_first_occurrence_of_each_position(size, draws):
    at = np.array([d % size for d in draws], dtype=np.int64)
    unique, first = first_writes(at, size)  # many writes into few rows: the mask
    expected_unique, expected_first = np.unique(at, return_index=True)
    assert unique.tolist() == expected_unique.tolist()
    assert first.tolist() == expected_first.tolist()
    assert (at[first] == unique).all()


def test_sparse_and_dense_writes_into_a_million_rows():
    rng = np.random.default_rng(3)
    size = 1_000_000
    for count in (1_000, 900_000):  # the sorting path, then the mask
        at = np.concatenate([rng.permutation(size)[:count], rng.integers(0, size, count // 9)])
        unique, first = first_writes(at, size)
        expected_unique, expected_first = np.unique(at, return_index=True)
        assert np.array_equal(unique, expected_unique)
        assert np.array_equal(first, expected_first)
