"""engine="vllm": vLLM v1's prefix cache on a sequential replay (docs/vllm.md), against a
literal simulator of its free-block queue and section 5's reference figures."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from oracle_vllm import vllm_replay

from pytest_kvreuse import AnalysisParams, analyze
from pytest_kvreuse.baselines.drift import pair_traces
from pytest_kvreuse.cli import main
from pytest_kvreuse.core.analysis import ReuseAnalysis
from pytest_kvreuse.core.blocks import BlockStream
from pytest_kvreuse.core.lru import (
    COLD,
    lru_profile,
    stack_distances,
    touch_order,
    vllm_distances,
)
from pytest_kvreuse.errors import KvReuseError
from pytest_kvreuse.metrics import METRICS
from pytest_kvreuse.params import ParamError
from pytest_kvreuse.result import TraceResult

B = 4
EXAMPLE = Path(__file__).resolve().parents[1] / "example_traces"


def chained_stream(prompts: list[list[int]], tails: list[int],
                   sessions: list[int] | None = None) -> tuple[BlockStream, list]:
    """Requests of block contents ``prompts[r]`` (each a small int) and ``tails[r]``
    tokens past their full blocks; a block's key names its whole prefix, as loaders make
    them. Also the requests as the simulator takes them."""
    ids: dict[tuple[int, ...], int] = {}
    keys, owner, requests = [], [], []
    for r, blocks in enumerate(prompts):
        mine = [ids.setdefault(tuple(blocks[:j + 1]), len(ids)) for j in range(len(blocks))]
        keys += mine
        owner += [r] * len(mine)
        requests.append((len(blocks) * B + tails[r], mine))
    n = len(prompts)
    stream = BlockStream(
        keys=np.asarray(keys, dtype=np.int64), request=np.asarray(owner, dtype=np.int64),
        block_size=B,
        prompt_tokens=np.asarray([length for length, _ in requests], dtype=np.int64),
        timestamps=np.full(n, np.nan),
        sessions=np.asarray(sessions if sessions is not None else [-1] * n,
                            dtype=np.int64))
    return stream, requests


def model_hits(stream: BlockStream, num_blocks: int) -> list[int]:
    """Hit blocks per request at a pool of ``num_blocks`` blocks, from the one pass (touch
    time t belongs to request ``stream.request[t]``: the order permutes inside requests)."""
    dist, _ = vllm_distances(stream)
    hit = dist < num_blocks
    return np.bincount(stream.request[hit], minlength=stream.num_requests).tolist()


requests_st = st.integers(1, 12).flatmap(lambda n: st.tuples(
    st.lists(st.lists(st.integers(0, 2), max_size=6), min_size=n, max_size=n),
    st.lists(st.integers(0, B - 1), min_size=n, max_size=n)))


@given(requests_st, st.integers(0, 12), st.booleans())
def test_the_one_pass_equals_vllms_free_block_queue(trace, extra, also_first_copy):
    prompts, tails = trace
    stream, requests = chained_stream(prompts, tails)
    # vLLM refuses a cache that cannot hold the longest request: from there on up.
    need = max(-(-length // B) for length, _ in requests) + 1
    num_blocks = need + extra
    expected = vllm_replay(requests, B, num_blocks, newest_duplicate=True)
    assert model_hits(stream, num_blocks) == expected
    if also_first_copy:
        # vLLM looks a key cached in two blocks (a recomputed last block) up in the one
        # cached first; the model moves the newer. Only such a hit tells them apart.
        twice: list[int] = []
        real = vllm_replay(requests, B, num_blocks, duplicate_hits=twice)
        if real != expected:
            assert twice and real[:twice[0]] == expected[:twice[0]]


@pytest.mark.parametrize("prompts,tails,num_blocks,hits,ideal", [
    # Pinned at arrival: the last request's own new blocks do not evict its cached head,
    # as the ideal model's tail-first touches do (at the same 4 usable slots).
    ([[1], [2, 1], [1, 2, 0]], [1, 1, 1], 5, [0, 0, 1], [0, 0, 0]),
    # The null block: 4 blocks are 3 slots, just what 2 blocks and a partial tail take.
    ([[0, 1], [0, 1]], [1, 1], 4, [0, 2], [0, 2]),
    # The last token is computed: a prompt of whole blocks hits at most L - 1 tokens.
    ([[0, 1], [0, 1]], [0, 0], 8, [0, 1], [0, 2]),
    # The partial tail goes to the front of the free queue: the next allocation takes it,
    # so key 2 survives (were it queued at the end, with the keys, it would not).
    ([[2], [1], [1], [2]], [0, 1, 0, 1], 4, [0, 0, 0, 1], [0, 0, 1, 1]),
])
def test_the_four_rules(prompts, tails, num_blocks, hits, ideal):
    stream, requests = chained_stream(prompts, tails)
    assert vllm_replay(requests, B, num_blocks) == hits
    assert model_hits(stream, num_blocks) == hits
    d = stack_distances(stream)
    assert np.bincount(stream.request[d < num_blocks - 1],
                       minlength=stream.num_requests).tolist() == ideal


def test_profile_figures_add_up_and_the_recomputed_block_is_never_served():
    stream, requests = chained_stream([[0, 1], [0, 1], [0, 1, 2]], [0, 0, 2])
    p = lru_profile(stream, engine="vllm")
    # Request 1 recomputes block (0, 1): seen before, no size serves it.
    assert p.unserved_blocks == 1
    for m in range(1, 12):
        hit = p.hit_fraction(m * B)
        total = hit + p.offloadable_fraction(m * B) + p.compulsory_fraction \
            + p.unserved_fraction
        assert total == pytest.approx(1.0)
        assert p.hit_blocks(m * B) == sum(model_hits(stream, m))
    # Touch times and blocks map onto each other by the same involution.
    assert vllm_distances(stream)[0][touch_order(stream)][3] == COLD


def test_engine_and_denominator_reach_the_analysis():
    stream, _ = chained_stream([[0, 1], [0, 1, 2], [0, 1, 2]], [3, 0, 2])
    ideal = ReuseAnalysis(stream)
    vllm = ReuseAnalysis(stream, engine="vllm")
    prompt = ReuseAnalysis(stream, engine="vllm", denominator="prompt")
    per = ReuseAnalysis(stream, engine="vllm", denominator="per-request")
    c = 8 * B
    assert ideal.prompt_tokens == 11 + 12 + 14 == vllm.prompt_tokens
    hits = model_hits(stream, 8)
    assert vllm.lru_hit_tokens(c) == sum(hits) * B
    assert vllm.lru_hit_fraction(c) == sum(hits) * B / vllm.counted_tokens
    assert prompt.lru_hit_fraction(c) == sum(hits) * B / vllm.prompt_tokens
    ratios = [h * B / length for h, length in zip(hits, stream.prompt_tokens, strict=True)]
    assert per.lru_hit_fraction(c) == pytest.approx(sum(ratios) / len(ratios))
    x, y = per.lru_curve()
    assert y[-1] == pytest.approx(per.lru_hit_fraction(math.inf))
    with pytest.raises(KvReuseError, match="unknown engine"):
        lru_profile(stream, engine="sglang")


@given(requests_st, st.integers(0, 12), st.integers(0, 4),
       st.sampled_from(["blocks", "prompt", "per-request"]))
def test_denominators_against_per_request_counts(trace, extra, warm, denominator):
    prompts, tails = trace
    stream, requests = chained_stream(prompts, tails, sessions=[r % 2 for r in
                                                                range(len(prompts))])
    warm = min(warm, len(prompts) - 1)
    a = ReuseAnalysis(stream, engine="vllm", denominator=denominator,
                      warmup=warm / len(prompts) + 1e-12)
    num_blocks = max(-(-length // B) for length, _ in requests) + 1 + extra
    hits = vllm_replay(requests, B, num_blocks, newest_duplicate=True)[a.warmup_requests:]
    lengths = [length for length, _ in requests][a.warmup_requests:]
    full = [len(keys) for _, keys in requests][a.warmup_requests:]
    if denominator == "blocks":
        expected = sum(hits) / sum(full) if sum(full) else math.nan
    elif denominator == "prompt":
        expected = sum(hits) * B / sum(lengths) if sum(lengths) else math.nan
    else:
        ratios = [h * B / n for h, n in zip(hits, lengths, strict=True) if n]
        expected = sum(ratios) / len(ratios) if ratios else math.nan
    got = a.lru_hit_fraction(num_blocks * B)
    assert got == pytest.approx(expected, nan_ok=True)
    split = a.lru_hit_split(num_blocks * B)
    if split is not None and not math.isnan(got):
        assert split["same_session"] + split["cross_session"] == pytest.approx(got)


# -- section 5's reference figures (docs/vllm.md) ------------------------------------------

SIZES = (345_792, 1_000_000, 4_000_000, 16_000_000)
IDEAL_HIT_BLOCKS = (60_151, 139_665, 363_346, 612_051)
VLLM_HIT_BLOCKS = (62_546, 141_798, 363_666, 612_099)


@pytest.fixture(scope="module")
def synthetic(shared_traces):
    return shared_traces / "mooncake_synthetic_trace.jsonl"


def test_reference_hit_blocks(synthetic):
    ideal = analyze(synthetic, block_size=64)
    vllm = analyze(synthetic, block_size=64, engine="vllm")
    for size, i, v in zip(SIZES, IDEAL_HIT_BLOCKS, VLLM_HIT_BLOCKS, strict=True):
        assert ideal.lru_hit_tokens(size) == i * 64
        assert vllm.lru_hit_tokens(size) == v * 64


def test_reference_vllm_own_ratio(synthetic):
    a = analyze(synthetic, block_size=64, engine="vllm", denominator="prompt")
    assert a.lru_hit_tokens(345_792) == 4_002_944
    assert a.prompt_tokens == 61_194_628
    assert a.lru_hit_fraction(345_792) == 4_002_944 / 61_194_628
    assert f"{a.lru_hit_fraction(345_792):.4%}" == "6.5413%"


# -- one parameter, every surface ---------------------------------------------------------

def test_engine_and_denominator_are_parameters_with_their_defaults():
    assert AnalysisParams().engine == "ideal" and AnalysisParams().denominator == "blocks"
    assert AnalysisParams(engine="vllm").key() != AnalysisParams().key()
    assert "engine vllm" in AnalysisParams(engine="vllm").describe("mooncake")
    with pytest.raises(ParamError, match="unknown engine 'sglang' \\(known: ideal, vllm\\)"):
        AnalysisParams.from_mapping({"engine": "sglang"})
    with pytest.raises(ParamError, match="unknown denominator 'tokens'"):
        AnalysisParams.from_mapping({"denominator": "tokens"})


def test_the_cli_prints_vllms_hit_rate_with_its_own_denominator(capsys):
    trace = EXAMPLE / "chat_sessions.mooncake.jsonl"
    assert main(["analyze", str(trace), "--gpu-kv-cache-size", "345,792",
                 "--engine", "vllm"]) == 0
    out = capsys.readouterr().out
    a = analyze(trace, engine="vllm")
    rate = a.lru_hit_tokens(345_792) / a.prompt_tokens
    assert (f"vLLM would report a prefix cache hit rate of {rate * 100:.4f} % "
            f"({a.lru_hit_tokens(345_792):,} hit tokens / {a.prompt_tokens:,} prompt "
            f"tokens") in out
    with pytest.raises(SystemExit) as info:
        main(["analyze", str(trace), "--gpu-kv-cache-size", "345792", "--engine", "turbo"])
    assert info.value.code == 2
    assert "invalid choice: 'turbo'" in capsys.readouterr().err


def test_a_manifest_and_a_marker_take_engine_and_denominator(pytester: pytest.Pytester):
    trace = EXAMPLE / "chat_sessions.mooncake.jsonl"
    a = analyze(trace, engine="vllm", denominator="prompt")
    hit = a.lru_hit_fraction(345_792)
    pytester.makefile(".toml", kvreuse=f'''
[[trace]]
name = "vllm"
path = "{trace}"
engine = "vllm"
denominator = "prompt"
check = [{{ metric = "lru_hit_fraction", at = 345792, min = {hit - 1e-9}, max = {hit + 1e-9} }}]
''')
    pytester.makepyfile(f"""
        import pytest

        @pytest.mark.kvreuse({str(trace)!r}, engine="vllm", denominator="prompt")
        def test_marked(kvreuse):
            assert kvreuse.engine == "vllm"
            assert kvreuse.lru_hit_fraction(345792) == {hit!r}
    """)
    pytester.runpytest_inprocess().assert_outcomes(passed=2)


def test_results_saved_before_the_engine_existed_pair_as_ideal():
    saved = TraceResult(name="old", path="t.jsonl", params={"block_size": 64})
    ideal = TraceResult(name="new", path="t.jsonl", params=AnalysisParams().to_dict())
    vllm = TraceResult(name="new", path="t.jsonl",
                       params=AnalysisParams(engine="vllm").to_dict())
    assert pair_traces([saved], [ideal])[0] == [(ideal, saved)]
    assert pair_traces([saved], [vllm])[0] == [(vllm, None)]


def test_the_report_says_what_vllm_would_report(tmp_path: Path, monkeypatch):
    from pytest_kvreuse.output import report

    # This tree's templates, whichever tree the package was installed from.
    monkeypatch.setattr(report, "builtin_templates", lambda: EXAMPLE.parent / "templates")
    trace = EXAMPLE / "chat_sessions.mooncake.jsonl"
    out = tmp_path / "r.html"
    assert main(["analyze", str(trace), "-q", "--gpu-kv-cache-size", "345792",
                 "--engine", "vllm", "--html", str(out)]) == 0
    a = analyze(trace, engine="vllm")
    rate = a.lru_hit_prompt_fraction(345_792)
    html = out.read_text()
    assert "At 345,792 tokens vLLM would report a prefix cache hit rate of" in html
    assert METRICS["lru_hit_prompt_fraction"].text(rate) in html
