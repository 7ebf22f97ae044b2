"""``--jobs N``: a text trace tokenized in partitions of whole records, in N processes, is
the single-pass stream number for number, and shares its cache entry."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from partitioned import assert_same_analysis, with_bad_record, write_chat_trace

import pytest_kvreuse.loaders.partitions as partitions
import pytest_kvreuse.text.blocks as textblocks
from pytest_kvreuse import analyze
from pytest_kvreuse.cli import main
from pytest_kvreuse.errors import KvReuseError, TraceFormatError
from pytest_kvreuse.loaders.partitions import in_process, iter_partitions, partitioned_stream
from pytest_kvreuse.loaders.text import iter_text_requests
from pytest_kvreuse.text.blocks import token_block_stream


@pytest.mark.parametrize("parts", [1, 3, 50])
def test_partitions_are_the_requests_in_order(tmp_path, parts):
    trace = write_chat_trace(tmp_path / "chat.jsonl")
    cut = list(iter_partitions(str(trace), "chat", parts))
    assert [r for p in cut for r in p] == list(iter_text_requests(trace, "chat"))
    assert all(cut) and (len(cut) == 1 if parts == 1 else len(cut) > 1)


token_requests = st.lists(
    st.tuples(st.lists(st.integers(0, 3), max_size=14),
              st.one_of(st.none(), st.integers(0, 3), st.sampled_from(["a", "b"]))),
    min_size=1, max_size=25)


@given(token_requests, st.integers(1, 7), st.integers(1, 4))
def test_partitions_merge_to_the_single_pass_stream(tmp_path_factory, requests, parts, block):
    """Obviously right: any cut of the records into runs, merged, is the stream of one
    pass (dense keys, request index, sessions numbered in first-seen order)."""
    path = tmp_path_factory.mktemp("tok") / "t.jsonl"
    path.write_text("".join(json.dumps({"token_ids": ids, "session_id": s,
                                        "timestamp": i}) + "\n"
                            for i, (ids, s) in enumerate(requests)))
    whole = token_block_stream(path, block_size=block)
    cut = partitioned_stream(str(path), "token-ids", {"block_size": block}, jobs=parts,
                             mapper=in_process, meta={})
    for name in ("keys", "request", "prompt_tokens", "timestamps", "sessions"):
        a, b = getattr(whole, name), getattr(cut, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name


@pytest.mark.parametrize("prompt", ["raw", "per-message"])
def test_text_partitions_equal_the_single_pass(tmp_path, prompt):
    trace = write_chat_trace(tmp_path / "chat.jsonl")
    serial = analyze(trace, prompt=prompt, use_cache=False, warmup=0.2)
    import pytest_kvreuse.loaders.stream as stream_module

    orig = stream_module.in_processes
    stream_module.in_processes = in_process
    try:
        cut = analyze(trace, prompt=prompt, use_cache=False, warmup=0.2, jobs=3)
    finally:
        stream_module.in_processes = orig
    assert_same_analysis(serial, cut)


def test_jobs_in_processes_equal_serial_and_share_the_cache(tmp_path, monkeypatch):
    trace = write_chat_trace(tmp_path / "chat.jsonl")
    serial = analyze(trace, use_cache=False)
    two = analyze(trace, jobs=2, cache_dir=tmp_path / "cache")
    assert_same_analysis(serial, two)

    def no_tokenizing(*args, **kw):
        raise AssertionError("tokenized again: the cache entry was not shared")

    monkeypatch.setattr(textblocks, "text_block_stream", no_tokenizing)
    monkeypatch.setattr(textblocks, "text_stream_part", no_tokenizing)
    monkeypatch.setattr(partitions, "text_stream_part", no_tokenizing)
    assert_same_analysis(serial, analyze(trace, cache_dir=tmp_path / "cache"))
    assert len(list((tmp_path / "cache").iterdir())) == 1


def test_a_bad_record_is_the_error_a_single_pass_names(tmp_path, capsys):
    trace = with_bad_record(write_chat_trace(tmp_path / "chat.jsonl"), 17,
                            '{"messages": 3}')
    with pytest.raises(TraceFormatError) as serial:
        analyze(trace, use_cache=False)
    assert serial.value.line == 18
    assert main(["analyze", str(trace), "--no-cache", "--jobs", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"kvreuse: error: {serial.value.one_line()}"


def test_an_error_crosses_processes_with_its_file_and_line():
    exc = pickle.loads(pickle.dumps(TraceFormatError("bad", path="t.jsonl", line=3)))
    assert type(exc) is TraceFormatError and (exc.path, exc.line) == ("t.jsonl", 3)
    assert str(exc) == "t.jsonl:3: bad"


def test_cli_jobs_prints_the_serial_summary(tmp_path, capsys):
    trace = write_chat_trace(tmp_path / "chat.jsonl")
    args = ["analyze", str(trace), "--no-cache", "--gpu-kv-cache-size", "2048"]
    assert main(args) == 0
    serial = capsys.readouterr().out
    assert main([*args, "-j", "2"]) == 0
    assert capsys.readouterr().out == serial


@pytest.mark.parametrize("bad", ["0", "-1", "two"])
def test_cli_refuses_a_bad_job_count(bad, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["analyze", "t.jsonl", "--jobs", bad])
    assert exc.value.code == 2
    assert "--jobs" in capsys.readouterr().err


def test_api_refuses_a_bad_job_count(tmp_path):
    with pytest.raises(KvReuseError, match="jobs must be a positive integer"):
        analyze(tmp_path / "t.jsonl", jobs=0)
