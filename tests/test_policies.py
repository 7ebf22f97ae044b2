"""libCacheSim policies on the tail-first touch stream (skipped without libcachesim)."""

from __future__ import annotations

import pytest
from oracle_lru import make_stream
from oracle_opt import opt_replay

from pytest_kvreuse import load_block_stream
from pytest_kvreuse.core.policies import policy_hits
from pytest_kvreuse.errors import KvReuseError


def test_missing_libcachesim_names_the_extra(without_libcachesim):
    with pytest.raises(KvReuseError, match=r"pytest-kvreuse\[policies\]"):
        policy_hits(make_stream([[1, 2]]), "ARC", 100)


def test_belady_equals_the_oracle():
    pytest.importorskip("libcachesim")
    requests = [[1, 2, 3], [1, 2, 4], [5], [1, 2, 3, 6], [4, 5, 1]]
    for m in range(1, 8):
        assert policy_hits(make_stream(requests), "belady", m * 4) == opt_replay(requests, m)


def test_unknown_policy():
    pytest.importorskip("libcachesim")
    with pytest.raises(KvReuseError, match="unknown policy"):
        policy_hits(make_stream([[1]]), "nope", 100)


@pytest.mark.parametrize("policy, hits", [("Belady", 224_820), ("ARC", 61_944),
                                          ("S3FIFO", 66_654), ("LRU", 60_151)])
def test_section6_figures(shared_traces, policy, hits):
    pytest.importorskip("libcachesim")
    stream = load_block_stream(shared_traces / "mooncake_synthetic_trace.jsonl", block_size=64)
    assert policy_hits(stream, policy, 345_792) == hits
