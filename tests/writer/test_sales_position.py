"""A sale_id's row position: found at once where the ids have no gaps, by search where
they do, and None for an id that is not there."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from server.writer.state import Sales

BIGINT = st.integers(-(2**63), 2**63 - 1)
GAPLESS = st.builds(lambda first, n: list(range(first, first + n)), BIGINT, st.integers(0, 50))


def sales(ids: list[int]) -> Sales:
    sale_id = np.array(sorted(set(ids)), dtype=np.int64)
    empty = np.zeros(len(sale_id), dtype=np.int64)
    return Sales(sale_id, empty, empty, empty, empty, empty)


@given(st.lists(BIGINT, max_size=50) | GAPLESS.filter(lambda ids: ids[-1:] < [2**63]), BIGINT)
def test_position_is_the_index_of_the_id_or_none(ids: list[int], probe: int) -> None:
    rows = sales(ids)
    known = rows.sale_id.tolist()
    for sale_id in [*known, probe, *(k + 1 for k in known[:5]), *(k - 1 for k in known[:5])]:
        if not -(2**63) <= sale_id < 2**63:
            continue
        expected = known.index(sale_id) if sale_id in known else None
        assert rows.position(sale_id) == expected
