"""Exact analysis on Dask: a two-worker LocalCluster gives the single-process figures to
the last digit; the distributed sort's buckets against the one-pass interval sort; errors
in one line (skipped where the extra ``[dask]`` is absent, except the missing-extra line)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from partitioned import assert_same_analysis, with_bad_record, write_chat_trace

from pytest_kvreuse import analyze, cluster
from pytest_kvreuse.cli import main
from pytest_kvreuse.core.blocks import BlockStream, request_index
from pytest_kvreuse.core.intervals import reuse_intervals_and_pairs
from pytest_kvreuse.errors import TraceFormatError

MOONCAKE = "mooncake_synthetic_trace.jsonl"
AIPERF = "synthetic_head120.aiperf.json"


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    # Threads, not processes: the tasks are the same, and the cluster starts in a blink.
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as lc, \
            distributed.Client(lc, set_as_default=False) as c:
        yield c


@pytest.mark.parametrize("warmup", [0.0, 0.3])
def test_mooncake_on_two_workers_equals_serial(shared_traces, client, warmup):
    path = shared_traces / MOONCAKE
    serial = analyze(path, warmup=warmup)
    on_cluster = analyze(path, warmup=warmup, dask=client)
    assert_same_analysis(serial, on_cluster)
    assert on_cluster.cluster["workers"] == 2 and serial.cluster is None


def test_head120_tokenized_on_two_workers_equals_serial(shared_traces, client, head120):
    on_cluster = analyze(shared_traces / AIPERF, block_size=64, dask=client,
                         use_cache=False)
    assert_same_analysis(head120, on_cluster)
    assert on_cluster.cluster["lru"] == cluster.LRU_SOURCE


def test_sessions_and_timestamps_across_partitions(tmp_path, client):
    trace = write_chat_trace(tmp_path / "chat.jsonl")
    serial = analyze(trace, use_cache=False, warmup=0.25)
    assert serial.reuse_times is not None and serial.stream.has_sessions
    assert_same_analysis(serial, analyze(trace, use_cache=False, warmup=0.25, dask=client))
    # A cached stream: its keys are scattered to the workers for the sort.
    analyze(trace, cache_dir=tmp_path / "c")
    assert_same_analysis(serial, analyze(trace, cache_dir=tmp_path / "c", warmup=0.25,
                                         dask=client))


def test_kvreuse_dask_names_the_cluster(shared_traces, client, monkeypatch):
    monkeypatch.setenv(cluster.ENV, client.scheduler.address)
    assert analyze(shared_traces / MOONCAKE).cluster is not None
    assert analyze(shared_traces / MOONCAKE, dask="").cluster is None


def test_cli_dask_prints_the_serial_summary_and_says_where(shared_traces, client, capsys):
    args = ["analyze", str(shared_traces / MOONCAKE), "--gpu-kv-cache-size", "345792"]
    assert main(args) == 0
    serial = capsys.readouterr().out.splitlines()
    assert main([*args, "--dask", client.scheduler.address]) == 0
    out = capsys.readouterr().out.splitlines()
    ran_on = [line for line in out if line.startswith("ran on:")]
    assert ran_on == [f"ran on:           Dask, 2 workers at {client.scheduler.address}; "
                      f"LRU/OPT {cluster.LRU_SOURCE}"]
    assert [line for line in out if line not in ran_on] == serial


def test_a_bad_record_on_a_worker_is_the_serial_error(tmp_path, client):
    trace = with_bad_record(write_chat_trace(tmp_path / "chat.jsonl"), 20, "{not json")
    with pytest.raises(TraceFormatError) as serial:
        analyze(trace, use_cache=False)
    with pytest.raises(TraceFormatError) as on_cluster:
        analyze(trace, use_cache=False, dask=client)
    assert on_cluster.value.one_line() == serial.value.one_line()


def test_unreachable_scheduler_is_one_line_soon(tmp_path, capsys, monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 1.0)
    trace = write_chat_trace(tmp_path / "chat.jsonl")
    assert main(["analyze", str(trace), "--dask", "tcp://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("kvreuse: error: cannot reach the Dask scheduler at "
                             "tcp://127.0.0.1:9: ")


def test_without_the_extra_one_line_names_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import fails
    trace = write_chat_trace(tmp_path / "chat.jsonl")
    assert main(["analyze", str(trace), "--dask", "tcp://scheduler:8786"]) == 2
    assert capsys.readouterr().err.strip() == (
        'kvreuse: error: --dask needs the Dask extra: pip install "pytest-kvreuse[dask]"')


# -- the distributed sort, without a cluster -------------------------------------------

streams = st.lists(st.lists(st.integers(0, 6), max_size=6), min_size=1, max_size=12)


@given(streams, st.integers(1, 5), st.integers(1, 4), st.integers(0, 12))
def test_buckets_give_the_one_pass_intervals_and_pairs(requests, parts, buckets, warm):
    """Any cut into partitions and any number of buckets: the union of the buckets'
    intervals, keys and pairs is what the one-pass sort finds."""
    counts = np.array([len(r) for r in requests])
    keys = np.array([k for r in requests for k in r], dtype=np.int64)
    stream = BlockStream(keys=keys, request=request_index(counts), block_size=3,
                         prompt_tokens=counts * 3, timestamps=np.zeros(len(requests)),
                         sessions=np.full(len(requests), -1))
    counted_from = min(warm, keys.size)
    want, unique, pairs = reuse_intervals_and_pairs(stream, counted_from=counted_from)
    bounds = np.linspace(0, keys.size, parts + 1).astype(int)
    splits = [cluster.split_by_key(cluster._key_words(keys[a:b]), a, buckets)
              for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    found = [cluster.bucket_reuse([s[q] for s in splits], stream.request_starts, 3,
                                  counted_from) for q in range(buckets)]
    assert np.sort(np.concatenate([f[0] for f in found])).tolist() == want.tolist()
    assert sum(f[1] for f in found) == unique
    got = sorted(zip(np.concatenate([f[2] for f in found]).tolist(),
                     np.concatenate([f[3] for f in found]).tolist(), strict=True))
    assert got == sorted(zip(pairs.first.tolist(), pairs.second.tolist(), strict=True))
