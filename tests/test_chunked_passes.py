"""The memory-bounded passes (chunked gathers, neighbour scan, dense ids) give exactly the
arrays of one whole-stream pass: checked with chunks far smaller than the stream."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import pytest_kvreuse.core.blocks as blocks
import pytest_kvreuse.core.intervals as intervals
import pytest_kvreuse.loaders.hashids as hashids
from pytest_kvreuse.loaders.stream import load_block_stream
from pytest_kvreuse.synthetic import Workload, generate, write_mooncake


@pytest.mark.parametrize("block_size", [16, 512, 2048])
def test_small_chunks_change_nothing(tmp_path, monkeypatch, block_size):
    trace = tmp_path / "t.jsonl"
    write_mooncake(generate(Workload(sessions=12, seed=4)), trace)
    whole = load_block_stream(trace, block_size=block_size)
    whole_iv, whole_unique = intervals.reuse_intervals(whole, counted_from=5)
    for chunk in (1, 3, 7, 64):
        monkeypatch.setattr(hashids, "_GATHER", chunk)
        monkeypatch.setattr(intervals, "_CHUNK", chunk)
        monkeypatch.setattr(blocks, "_CHUNK", chunk)
        small = load_block_stream(trace, block_size=block_size)
        assert np.array_equal(small.keys, whole.keys)
        assert np.array_equal(small.request, whole.request)
        iv, unique = intervals.reuse_intervals(small, counted_from=5)
        assert unique == whole_unique and np.array_equal(iv, whole_iv)


def test_dense_ids_match_np_unique():
    rng = np.random.default_rng(0)
    values = rng.integers(-(2**62), 2**62, 500)
    values[::3] = values[0]
    ids, n = blocks.dense_ids(values)
    uniq, inverse = np.unique(values, return_inverse=True)
    assert n == len(uniq) and np.array_equal(ids, inverse.reshape(-1))
    assert ids.dtype == np.int32


@given(values=st.one_of(
    st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=300),
    st.lists(st.sampled_from([0, 1, 2**62, -(2**63), 2**63 - 1, 7 * 10**17]), min_size=1,
             max_size=300),
    st.lists(st.integers(0, 2**40).map(lambda x: x * 2**20), min_size=1, max_size=300)),
    repeat=st.integers(1, 4), unsigned=st.booleans())
def test_dense_ids_renumber_any_spread_of_values_as_np_unique(values, repeat, unsigned):
    # Spread-out values take the bucket table and its few steps (_Ranks); clustered ones
    # overflow the steps into the binary search: both must give np.unique's ranks.
    array = np.array(values * repeat, dtype=np.int64)
    if unsigned:
        array = array.view(np.uint64)
    ids, n = blocks.dense_ids(array)
    uniq, inverse = np.unique(array, return_inverse=True)
    assert n == len(uniq) and np.array_equal(ids, inverse.reshape(-1))
