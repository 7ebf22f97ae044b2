"""Where reuse comes from and where it breaks (docs/causes.md): the engine equals plain
Python oracles (a dict trie, turn-by-turn comparison) on random traces, and planted
breakers in generated chat sessions are found with their text."""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_kvreuse import analyze
from pytest_kvreuse.core import causes as causes_module
from pytest_kvreuse.core.analysis import ReuseAnalysis
from pytest_kvreuse.core.blocks import BlockStream, Category, dense_ids, request_index
from pytest_kvreuse.core.causes import (
    departure,
    explain_breaks,
    normalise,
    previous_occurrence,
    turn_breaks,
)
from pytest_kvreuse.errors import KvReuseError
from pytest_kvreuse.synthetic import Workload, generate, write_chat

# Requests as block contents from a small alphabet: prefixes are shared often.
REQUESTS = st.lists(st.lists(st.integers(0, 2), max_size=6), min_size=1, max_size=14)


def stream_of(blocks: list[list[int]], sessions: list[int] | None = None,
              category: list[str] | None = None, block_size: int = 4) -> BlockStream:
    """Prefix-chained keys: one per distinct prefix of block contents."""
    counts = np.asarray([len(b) for b in blocks], dtype=np.int64)
    prefixes = [hash(tuple(b[:j + 1])) for b in blocks for j in range(len(b))]
    keys = dense_ids(np.asarray(prefixes, dtype=np.int64))[0] if prefixes else \
        np.zeros(0, dtype=np.int64)
    n = len(blocks)
    categories = {}
    if category is not None:
        labels, codes = np.unique(np.asarray(category, dtype=str), return_inverse=True)
        # A label no request has must not show up as a category.
        categories["type"] = Category(codes.astype(np.int32), (*labels.tolist(), "unused"))
    return BlockStream(
        keys=keys, request=request_index(counts), block_size=block_size,
        prompt_tokens=counts * block_size, timestamps=np.arange(n, dtype=np.float64) * 2.0,
        sessions=np.asarray(sessions if sessions is not None else [-1] * n, dtype=np.int64),
        categories=categories)


# -- oracles ---------------------------------------------------------------------------


def oracle_prefixes(blocks: list[list[int]], warmup: int, block_size: int) -> list[dict]:
    """The trie as a dict of prefix tuples; chains walked node by node."""
    occ: Counter = Counter()
    holders: dict[tuple, list[int]] = {}
    first_seen: dict[tuple, int] = {}
    reused: Counter = Counter()
    pos = 0
    for r, b in enumerate(blocks):
        for j in range(len(b)):
            node = tuple(b[:j + 1])
            if node in occ and r >= warmup:
                reused[node] += 1
            occ[node] += 1
            holders.setdefault(node, []).append(r)
            first_seen.setdefault(node, pos)
            pos += 1

    def is_head(node: tuple) -> bool:
        return len(node) == 1 or occ[node[:-1]] != occ[node]

    chains: dict[tuple, list[tuple]] = {}
    for node in occ:
        head = node
        while not is_head(head):
            head = head[:-1]
        chains.setdefault(head, []).append(node)
    total = sum(reused.values())
    out = []
    for head, nodes in chains.items():
        tokens = sum(reused[n] for n in nodes) * block_size
        if tokens == 0:
            continue
        out.append({"depth_blocks": len(head) - 1, "blocks": len(nodes),
                    "requests": occ[head], "reused_tokens": tokens,
                    "share": tokens / (total * block_size),
                    "first_request": min(holders[head]), "last_request": max(holders[head]),
                    "_order": first_seen[head]})
    out.sort(key=lambda d: (-d["reused_tokens"], d["_order"]))
    for d in out:
        del d["_order"]
    return out


def oracle_breaks(blocks: list[list[int]], sessions: list[int], warmup: int
                  ) -> set[tuple[int, int, int, int]]:
    """(turn, previous, shared, lost) of every counted turn after its session's last."""
    last: dict[int, int] = {}
    out = set()
    for r, s in enumerate(sessions):
        if s < 0:
            continue
        if s in last and r >= warmup:
            p = last[s]
            shared = 0
            while shared < min(len(blocks[p]), len(blocks[r])) and \
                    blocks[p][shared] == blocks[r][shared]:
                shared += 1
            out.add((r, p, shared, min(len(blocks[p]), len(blocks[r])) - shared))
        last[s] = r
    return out


def oracle_categories(blocks: list[list[int]], labels: list[str], warmup: int,
                      size: int, block_size: int) -> dict[str, tuple[int, int, float, float]]:
    seen: dict[tuple, int] = {}
    owner: dict[int, int] = {}
    tokens: Counter = Counter()
    hits: Counter = Counter()
    beyond: Counter = Counter()
    requests: Counter = Counter()
    pos = 0
    for r, b in enumerate(blocks):
        if r >= warmup:
            requests[labels[r]] += 1
        for j in range(len(b)):
            node = tuple(b[:j + 1])
            if r >= warmup:
                tokens[labels[r]] += block_size
                if node in seen and owner[seen[node]] != r:
                    hits[labels[r]] += block_size
                    if (pos - seen[node] - 1) * block_size > size:
                        beyond[labels[r]] += block_size
            seen[node] = pos
            owner[pos] = r
            pos += 1
    out = {}
    for label in set(labels):
        t = tokens[label]
        out[label] = (requests[label], t, hits[label] / t if t else math.nan,
                      beyond[label] / t if t else math.nan)
    return out


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b)


# -- engine vs oracle ------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(REQUESTS, st.floats(0.0, 0.9), st.integers(1, 30))
def test_top_prefixes_equal_the_trie_oracle(blocks, warmup, n):
    a = ReuseAnalysis(stream_of(blocks), warmup=warmup)
    want = oracle_prefixes(blocks, a.warmup_requests, 4)
    got = [p.to_dict() for p in a.top_prefixes(n)]
    for g in got:
        assert g["tokens"] == g["blocks"] * 4
        assert g["prefix_tokens"] == (g["depth_blocks"] + g["blocks"]) * 4
        assert g["first_time"] == g["first_request"] * 2.0
        assert g["last_time"] == g["last_request"] * 2.0
        assert g["text"] is None
    keys = ("depth_blocks", "blocks", "requests", "reused_tokens", "first_request",
            "last_request")
    assert [{k: g[k] for k in keys} for g in got] == [{k: w[k] for k in keys}
                                                      for w in want[:n]]
    assert [g["share"] for g in got] == pytest.approx([w["share"] for w in want[:n]])
    # Every reuse lies in exactly one shared prefix.
    everything = a.top_prefixes(10**6)
    assert sum(p.reused_tokens for p in everything) == a.reuse_count * a.block_size
    if everything:
        assert sum(p.share for p in everything) == pytest.approx(1.0)


@settings(max_examples=150, deadline=None)
@given(REQUESTS, st.data(), st.floats(0.0, 0.9))
def test_turn_breaks_equal_turn_by_turn_oracle(blocks, data, warmup):
    sessions = data.draw(st.lists(st.integers(-1, 3), min_size=len(blocks),
                                  max_size=len(blocks)))
    stream = stream_of(blocks, sessions)
    a = ReuseAnalysis(stream, warmup=warmup)
    want = oracle_breaks(blocks, sessions, a.warmup_requests)
    if not a.stream.has_sessions:
        assert a.turn_breaks is None and a.broken_reuse_fraction != a.broken_reuse_fraction
        assert a.to_dict()["broken_reuse_fraction"] is None
        return
    b = a.turn_breaks
    got = set(zip(b.turn.tolist(), b.previous.tolist(), b.shared.tolist(), b.lost.tolist(),
                  strict=True))
    assert got == want
    # A few block pairs at a time: the chunks of a big trace give the same breaks.
    small = causes_module._CHUNK
    try:
        causes_module._CHUNK = 3
        chunked = turn_breaks(stream, warmup_requests=a.warmup_requests)
    finally:
        causes_module._CHUNK = small
    assert np.array_equal(chunked.shared, b.shared) and np.array_equal(chunked.lost, b.lost)
    lost = sum(w[3] for w in want) * 4
    assert same(a.broken_reuse_fraction, lost / a.counted_tokens if a.counted_tokens
                else math.nan)


@settings(max_examples=150, deadline=None)
@given(REQUESTS, st.data(), st.floats(0.0, 0.9), st.integers(0, 30))
def test_category_breakdown_equals_oracle(blocks, data, warmup, size):
    labels = data.draw(st.lists(st.sampled_from(["text", "search", "image"]),
                                min_size=len(blocks), max_size=len(blocks)))
    a = ReuseAnalysis(stream_of(blocks, category=labels), warmup=warmup)
    assert a.category_names == ("type",)
    want = oracle_categories(blocks, labels, a.warmup_requests, size, 4)
    rows = a.reuse_by_category([size])
    assert {r.label for r in rows} == set(labels[a.warmup_requests:])
    want = {k: v for k, v in want.items() if v[0]}
    for r in rows:
        requests, tokens, reused, beyond = want[r.label]
        assert (r.requests, r.tokens) == (requests, tokens)
        assert same(r.reused_fraction, reused) and same(r.offloadable[size], beyond)


def test_category_breakdown_sums_the_rest_as_other():
    blocks = [[i % 3, 1] for i in range(12)]
    a = ReuseAnalysis(stream_of(blocks, category=[f"c{i}" for i in range(12)]))
    rows = a.reuse_by_category(limit=4)
    assert len(rows) == 5 and rows[-1].label == "other (8 categories)"
    assert sum(r.tokens for r in rows) == a.counted_tokens
    assert sum(r.requests for r in rows) == 12


def test_sessions_stand_in_for_categories():
    a = ReuseAnalysis(stream_of([[1, 2], [1, 2, 3]], sessions=[0, -1]))
    assert a.category_names == ("session",)
    assert sorted(r.label for r in a.reuse_by_category()) == ["no session", "session 0"]
    assert ReuseAnalysis(stream_of([[1]])).reuse_by_category() is None
    with pytest.raises(KvReuseError, match=r"unknown category 'model' \(known: session\)"):
        a.reuse_by_category(by="model")


def test_bailian_type_is_the_category(tmp_path: Path):
    records = [{"chat_id": 1, "parent_chat_id": -1, "timestamp": 0.0, "input_length": 32,
                "output_length": 1, "type": "text", "turn": 1, "hash_ids": [1, 2]},
               {"chat_id": 2, "parent_chat_id": 1, "timestamp": 1.0, "input_length": 48,
                "output_length": 1, "type": "text", "turn": 2, "hash_ids": [1, 2, 3]},
               {"chat_id": 3, "parent_chat_id": -1, "timestamp": 2.0, "input_length": 16,
                "output_length": 1, "type": "search", "turn": 1, "hash_ids": [1]}]
    path = tmp_path / "b.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    a = analyze(path, block_size=16)
    assert a.stream.categories["type"].labels == ("search", "text")
    rows = {r.label: r for r in a.reuse_by_category([0])}
    assert rows["text"].tokens == 80 and rows["text"].reused_fraction == pytest.approx(2 / 5)
    assert rows["search"].reused_fraction == 1.0
    assert a.broken_reuse_fraction == 0.0


# -- departures --------------------------------------------------------------------------


class FakePrompts:
    """Token ids given outright; a token decodes as its number in brackets."""

    def __init__(self, ids: list[list[int]]) -> None:
        self.ids = ids

    def token_ids(self, requests):
        return {r: np.asarray(self.ids[r], dtype=np.int64) for r in requests}

    def decode(self, ids) -> str:
        return "".join(f"<{int(i)}>" if int(i) >= 0 else "\n" for i in ids)


TOKENS = st.lists(st.lists(st.integers(0, 3), max_size=16), min_size=2, max_size=10)


@settings(max_examples=150, deadline=None)
@given(TOKENS, st.data())
def test_departures_are_the_first_differing_token(prompts, data):
    sessions = data.draw(st.lists(st.integers(0, 2), min_size=len(prompts),
                                  max_size=len(prompts)))
    bs = 2
    blocks = [[tuple(p[i:i + bs]) for i in range(0, len(p) // bs * bs, bs)] for p in prompts]
    codes = {b: i for i, b in enumerate(sorted({b for r in blocks for b in r}))}
    stream = stream_of([[codes[b] for b in r] for r in blocks], sessions, block_size=bs)
    breaks = turn_breaks(stream)
    causes, explained = explain_breaks(breaks, stream.sessions, FakePrompts(prompts))
    assert explained == len(breaks.broken)
    deps = {c.example.turn for c in causes}
    assert sum(c.turns for c in causes) == explained
    assert sum(c.lost_tokens for c in causes) == breaks.lost_tokens
    for i in breaks.broken.tolist():
        t, p = int(breaks.turn[i]), int(breaks.previous[i])
        d = next(k for k in range(len(prompts[t]))
                 if k >= len(prompts[p]) or prompts[t][k] != prompts[p][k])
        dep = departure(t, p, 0, np.asarray(prompts[t]), np.asarray(prompts[p]),
                        FakePrompts(prompts).decode)
        assert dep.token == d
        # The lost blocks start at the block holding the departure.
        assert int(breaks.shared[i]) == d // bs
        assert dep.now.startswith(f"<{prompts[t][d]}>")
    assert deps <= set(breaks.turn.tolist())


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 5), max_size=40))
def test_previous_occurrence_whatever_the_key_sizes(keys):
    want, last = [], {}
    for i, k in enumerate(keys):
        want.append(last.get(k, -1))
        last[k] = i
    small = np.asarray(keys, dtype=np.int64)
    # Keys too wide to pack with their positions take the argsort path.
    assert previous_occurrence(small).tolist() == want
    assert previous_occurrence(small + 2**61).tolist() == want


def test_a_clock_groups_as_one_cause_whatever_digits_change():
    assert normalise("time is 2026-12-01 09:00:") == normalise("time is 2026-12-01 12:")
    assert normalise("12:01") == normalise("9:59:02.") == "#"
    assert normalise("a \n\t b") == "a b"


# -- planted breakers in generated chat sessions (the built-in tokenizer) ----------------


WORKLOAD = Workload(sessions=24, system_prompts=2, system_tokens=(150, 300), turns=(2, 5),
                    user_tokens=(20, 60), reply_tokens=(20, 60), document_share=0.0, seed=5)


@pytest.fixture(scope="module")
def sessions_traces(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("sessions")
    requests = generate(WORKLOAD)
    change = requests[len(requests) // 2].timestamp_ms / 1000.0
    paths = {"clean": out / "clean.jsonl", "clock": out / "clock.jsonl",
             "template": out / "template.jsonl"}
    write_chat(requests, paths["clean"])
    write_chat(requests, paths["clock"], clock=True)
    write_chat(requests, paths["template"], template_change_s=change)
    return paths


def test_clean_sessions_report_nothing(sessions_traces):
    a = analyze(sessions_traces["clean"], block_size=16)
    assert a.broken_reuse_fraction == 0.0
    assert a.why() == ([], 0)


def test_a_per_turn_clock_is_named_with_its_text(sessions_traces):
    a = analyze(sessions_traces["clock"], block_size=16)
    causes, explained = a.why()
    assert explained == len(a.turn_breaks.broken) > 0
    assert len(causes) == 1
    (c,) = causes
    assert c.cause.startswith("The current time is # #[#")
    assert c.example.before.startswith("The current time is 2026-12-01 ")
    assert c.example.was.isdigit() and c.example.now.isdigit()
    assert c.lost_tokens == a.turn_breaks.lost_tokens
    assert a.broken_reuse_fraction == pytest.approx(c.lost_tokens / a.counted_tokens)
    assert a.broken_reuse_fraction > 0.1


def test_a_template_change_is_named_with_its_text(sessions_traces):
    a = analyze(sessions_traces["template"], block_size=16)
    causes, explained = a.why()
    assert [c.cause for c in causes] == ["[ -> Assistant: ]"]
    (c,) = causes
    assert (c.example.was, c.example.now) == ("", "Assistant: ")
    # Each session spanning the change breaks once.
    assert c.turns == c.sessions > 0


def test_top_prefixes_of_a_text_trace_carry_their_text(sessions_traces, deepseek):
    a = analyze(sessions_traces["clean"], block_size=16)
    top = a.top_prefixes(3)
    assert top and all(p.text for p in top)
    lines = sessions_traces["clean"].read_text().splitlines()
    first = json.loads(lines[top[0].first_request])["messages"][0]["content"]
    assert first.startswith(top[0].text)
    assert len(top[0].text) == 80


def test_a_pipe_has_no_text_but_its_figures(sessions_traces, tmp_path):
    from pytest_kvreuse.text.prompts import trace_prompts

    # A pipe's bytes are gone once read: nothing to re-tokenize.
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert trace_prompts(fifo, "chat", "deepseek-v3", "raw") is None
    assert trace_prompts(sessions_traces["clock"], "mooncake", None, None) is None
    a = analyze(sessions_traces["clock"], block_size=16)
    a.prompts = None
    assert a.why() is None
    assert all(p.text is None for p in a.top_prefixes(2))
    assert a.broken_reuse_fraction > 0


# -- the shared reference traces ---------------------------------------------------------


def oracle_prefixes_of_keys(stream: BlockStream) -> list[tuple[int, int, int, int]]:
    """(reused tokens, depth, blocks, requests) of every shared prefix, from the keys with
    plain dicts: a node's parent is the key before it in its request."""
    keys, request = stream.keys.tolist(), stream.request.tolist()
    occ = Counter(keys)
    parent: dict[int, int | None] = {}
    depth: dict[int, int] = {}
    reused: Counter = Counter()
    seen_in: dict[int, int] = {}
    for i, (k, r) in enumerate(zip(keys, request, strict=True)):
        start = i == 0 or request[i - 1] != r
        parent.setdefault(k, None if start else keys[i - 1])
        depth.setdefault(k, 0 if start else depth[keys[i - 1]] + 1)
        if k in seen_in and seen_in[k] != r:
            reused[k] += 1
        seen_in[k] = r
    head_of: dict[int, int] = {}
    for k in occ:
        h, path = k, []
        while h not in head_of and parent[h] is not None and occ[parent[h]] == occ[h]:
            path.append(h)
            h = parent[h]
        head = head_of.get(h, h)
        for node in (*path, h):
            head_of[node] = head
    chains: dict[int, list[int]] = {}
    for k, h in head_of.items():
        chains.setdefault(h, []).append(k)
    return sorted(((sum(reused[n] for n in nodes) * stream.block_size, depth[h], len(nodes),
                    occ[h]) for h, nodes in chains.items()
                   if sum(reused[n] for n in nodes)), reverse=True)


def test_top_prefixes_of_the_mooncake_reference_trace(shared_traces):
    a = analyze(shared_traces / "mooncake_synthetic_trace.jsonl", block_size=64)
    everything = a.top_prefixes(10**9)
    got = sorted(((p.reused_tokens, p.depth, p.blocks, p.requests) for p in everything),
                 reverse=True)
    assert got == oracle_prefixes_of_keys(a.stream)
    assert sum(p.reused_tokens for p in everything) == a.reuse_count * 64
    assert a.broken_reuse_fraction is not None and math.isnan(a.broken_reuse_fraction)


def test_the_aiperf_reference_sessions_re_send_every_prompt(head120):
    assert head120.broken_reuse_fraction == 0.0
    assert head120.why() == ([], 0)


def test_per_message_prompts_are_not_turns(sessions_traces):
    a = analyze(sessions_traces["clock"], block_size=16, prompt="per-message")
    assert a.turn_breaks is None and a.why() is None
    assert "per-message" in a.breaks_reason
    assert a.to_dict()["broken_reuse_fraction"] is None


def test_warm_up_turns_are_not_counted(sessions_traces):
    full = analyze(sessions_traces["clock"], block_size=16)
    warm = analyze(sessions_traces["clock"], block_size=16, warmup=0.5)
    assert warm.turn_breaks.turn.min() >= warm.warmup_requests
    kept = full.turn_breaks.turn >= warm.warmup_requests
    assert warm.turn_breaks.lost_tokens == int(full.turn_breaks.lost[kept].sum()) * 16
    assert warm.broken_reuse_fraction == pytest.approx(
        warm.turn_breaks.lost_tokens / warm.counted_tokens)


def test_prompts_not_the_streams_get_no_text(sessions_traces):
    from pytest_kvreuse.text.prompts import trace_prompts

    a = analyze(sessions_traces["clean"], block_size=16)
    # As if the loader had put the requests in another order: lengths no longer match.
    shuffled = a.stream.prompt_tokens[::-1].copy()
    a.prompts = trace_prompts(sessions_traces["clean"], "chat", "deepseek-v3", "raw",
                              shuffled)
    top = a.top_prefixes(3)
    mismatched = [p for p in top if shuffled[p.first_request]
                  != a.stream.prompt_tokens[p.first_request]]
    assert mismatched and all(p.text is None for p in mismatched)


def test_a_partial_native_block_of_hash_ids_is_not_lost(tmp_path: Path):
    # Native blocks of 64, analysis blocks of 16: turn 1's second native block is partial
    # (36 tokens, id 2); turn 2 re-sends it whole under an id of its own (3).
    records = [{"chat_id": 1, "parent_chat_id": -1, "timestamp": 0.0, "input_length": 100,
                "output_length": 1, "type": "text", "turn": 1, "hash_ids": [1, 2]},
               {"chat_id": 2, "parent_chat_id": 1, "timestamp": 1.0, "input_length": 200,
                "output_length": 1, "type": "text", "turn": 2, "hash_ids": [1, 3, 4, 5]},
               {"chat_id": 3, "parent_chat_id": 2, "timestamp": 2.0, "input_length": 200,
                "output_length": 1, "type": "text", "turn": 3, "hash_ids": [1, 6, 7, 8]}]
    path = tmp_path / "b.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    a = analyze(path, block_size=16, hash_block_size=64)
    b = a.turn_breaks
    assert b.shared.tolist() == [4, 4] and b.lost.tolist() == [0, 8]
    assert a.broken_reuse_fraction == 8 * 16 / a.counted_tokens
