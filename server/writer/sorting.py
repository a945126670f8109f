"""A stable argsort of large grouped keys on two cores: numpy sorts without holding the
GIL, so the two halves of a sort whose keys are grouped in ascending runs can sort at
once, in two threads, when they are split where a group ends. Keys small enough to
carry their row's index in their low bits sort as values (numpy's SIMD sort, about
twice as fast as its stable argsort), the index then read back from those bits."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

PARALLEL_FROM = 100_000  # below this a thread's hand-off costs more than it saves
_helper = ThreadPoolExecutor(1, thread_name_prefix="ducksheet-sort")


def grouped_argsort(
    keys: np.ndarray, groups: np.ndarray, parallel_from: int = PARALLEL_FROM
) -> np.ndarray:
    """np.argsort(keys, kind="stable") where `groups` is ascending and every key of a
    group is below every key of a later group."""
    size = len(keys)
    split = _split(groups) if size >= parallel_from and (os.cpu_count() or 1) > 1 else 0
    if not split:
        return stable_argsort(keys)
    second = _helper.submit(stable_argsort, keys[split:])
    first = stable_argsort(keys[:split])
    return np.concatenate([first, second.result() + split])


def stable_argsort(keys: np.ndarray) -> np.ndarray:
    """np.argsort(keys, kind="stable") of int64 keys: a sort of the keys with each one's
    index in its low bits (distinct, so ties keep their order), when they fit."""
    size = len(keys)
    bits = max(1, (size - 1).bit_length())
    if not size or keys.dtype != np.int64 or keys.min() < 0 or keys.max() >> (63 - bits):
        return np.argsort(keys, kind="stable")
    packed = keys << bits
    packed |= np.arange(size, dtype=np.int64)
    packed.sort()
    packed &= (1 << bits) - 1
    return packed


def _split(groups: np.ndarray) -> int:
    """Where the group holding the middle row starts, or ends if it starts at 0; 0 when
    one group holds every row."""
    middle = groups[len(groups) // 2]
    split = int(np.searchsorted(groups, middle, side="left"))
    if split == 0:
        split = int(np.searchsorted(groups, middle, side="right"))
    return split if split < len(groups) else 0
