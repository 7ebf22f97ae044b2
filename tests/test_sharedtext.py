"""Tokenizing shared text once gives exactly the ids of plain tokenization."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from pytest_kvreuse.text.sharedtext import (
    _LLAMA3,
    ChunkedEncoder,
    cut_offsets,
    cut_points_are_safe,
)
from pytest_kvreuse.text.tokenizer import TextTokenizer

EXAMPLE = Path(__file__).resolve().parents[1] / "example_traces" / "chat_sessions.aiperf.json"

PIECES = [
    "hello", "World", "the", "a", "xyzzy", "don't", "it's", "I'M", " ", "  ", "   ", "\t",
    "\n", "\r\n", "\n\n", " \n", "0", "7", "42", "1234", "98765", "3.14", "1,000", "½", "²",
    ".", ",", "!", "?", "...", "--", "(", ")", "\"", "'", "#", "$", "%", "->", "::", "_x",
    "中文", "日本語", "ひらがな", "カタカナ", "한국어", "𝔘𝔫𝔦", "😀", "👍🏽", "🇫🇷", "é", "e\u0301",
    "naïve", "Ω", "ß", "\u00a0", "\u200b", "<｜User｜>", "<｜Assistant｜>",
    "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜tool▁sep｜>", "<|im_start|>",
    "<s>", "</s>",
]
texts = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=6)), max_size=80).map(
    "".join)
# Word-heavy text so that many "letter space letter" cuts appear.
wordy = st.lists(st.one_of(st.sampled_from(PIECES), st.sampled_from(["lorem", "ipsum", " ", " "]),
                           st.text(max_size=4)), min_size=20, max_size=200).map("".join)


def plain(tok: TextTokenizer, items: list[str]) -> list[list[int]]:
    return [e.ids for e in tok.backend.encode_batch(items, add_special_tokens=False)]


def check_equal(tok: TextTokenizer, items: list[str], **kw) -> ChunkedEncoder:
    enc = ChunkedEncoder(tok, **kw)
    got = enc.encode(items)
    want = plain(tok, items)
    for text, g, w in zip(items, got, want, strict=True):
        assert g.tolist() == w, repr(text)
    return enc


def test_deepseek_cut_points_are_proven_safe(deepseek):
    assert cut_points_are_safe(deepseek.backend)


def test_cut_offsets_only_between_letter_space_letter():
    data = b"one two3 four  five six\tseven, eight nine ten eleven twelve"
    cuts = cut_offsets(data, 0).tolist()
    assert cuts
    for c in cuts:
        assert data[c:c + 1] == b" " and data[c - 1:c].isalpha() and data[c + 1:c + 2].isalpha()
    assert 4 not in cuts  # "one| two3" only lies within the first 8 bytes: never cut
    assert set(cut_offsets(data).tolist()) <= set(cuts)


def test_cut_points_are_content_defined():
    body = " ".join(f"w{chr(97 + i % 26)}ord{chr(97 + i * 7 % 26)}" for i in range(3000))
    a = cut_offsets(("prefix one " + body).encode())
    b = cut_offsets(("another much longer prefix " + body).encode())
    shift = len("another much longer prefix ") - len("prefix one ")
    assert a.size > 10
    assert set((a + shift).tolist()[1:]) <= set(b.tolist())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(texts, min_size=1, max_size=6))
def test_chunked_equals_plain_deepseek(deepseek, items):
    check_equal(deepseek, items, cut_bits=0)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(wordy, wordy, wordy)
def test_shared_text_across_prompts_deepseek(deepseek, a, b, c):
    # The same text inside different prompts is cut identically and found in the memo.
    items = [a + b, c + b, a + b + c, b, a]
    enc = check_equal(deepseek, items, cut_bits=0)
    check_equal(deepseek, items, cut_bits=2)
    assert enc.chunks_tokenized <= enc.chunks_seen


def test_generated_text_default_cuts(deepseek):
    rng = np.random.default_rng(0)
    words = np.array(PIECES + ["alpha", "beta", "gamma", "delta"] * 10)
    items = [" ".join(rng.choice(words, 3000)) for _ in range(8)]
    items += [items[0] + items[1], items[2][:5000] + items[3]]
    enc = check_equal(deepseek, items)
    assert enc.chunks_tokenized < enc.chunks_seen  # shared chunks were reused


def test_example_trace_equal(deepseek):
    data = json.loads(EXAMPLE.read_text())["data"]
    items = ["\n".join(m["content"] for m in p["messages"])
             for e in data for p in e["payloads"]]
    enc = check_equal(deepseek, items)
    assert enc.chunks_tokenized < enc.chunks_seen / 2


def test_shared_trace_equal(deepseek, shared_traces):
    data = json.loads((shared_traces / "synthetic_head120.aiperf.json").read_text())["data"]
    items = [m["content"] for e in data[:12] for p in e["payloads"] for m in p["messages"]]
    check_equal(deepseek, items, cut_bits=2)


def _trained(pre, normalizer=None) -> TextTokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    if normalizer is not None:
        tok.normalizer = normalizer
    corpus = ["hello world the quick brown fox 123 4567 don't stop", "中文 日本語 😀 !!! ...",
              "lorem ipsum dolor sit amet, consectetur adipiscing elit\n\n"] * 20
    tok.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|im_start|>", "<s>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return TextTokenizer(name="trained", backend=tok)


GPT2 = _trained(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True))
LLAMA3 = _trained(pre_tokenizers.Sequence([
    pre_tokenizers.Split(pattern=__import__("tokenizers").Regex(_LLAMA3), behavior="isolated"),
    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]))
NFC = _trained(pre_tokenizers.ByteLevel(add_prefix_space=False), normalizers.NFKC())
WHITESPACE = _trained(pre_tokenizers.Whitespace())


def test_safety_is_derived_from_the_pipeline():
    assert cut_points_are_safe(GPT2.backend)
    assert cut_points_are_safe(LLAMA3.backend)
    assert not cut_points_are_safe(NFC.backend)  # normalizer
    assert not cut_points_are_safe(WHITESPACE.backend)  # pre-tokenizer not proven
    prefixed = _trained(pre_tokenizers.ByteLevel(add_prefix_space=True))
    assert not cut_points_are_safe(prefixed.backend)


@pytest.mark.parametrize("tok", [GPT2, LLAMA3, NFC, WHITESPACE],
                         ids=["gpt2", "llama3", "nfkc-fallback", "whitespace-fallback"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(wordy, min_size=1, max_size=4))
def test_chunked_equals_plain_other_tokenizers(tok, items):
    enc = check_equal(tok, items + [items[0] + items[-1]], cut_bits=0)
    assert enc.safe == cut_points_are_safe(tok.backend)


def test_memo_is_bounded(deepseek):
    enc = ChunkedEncoder(deepseek, memo_bytes=10_000, cut_bits=0)
    items = [" ".join(f"word{i}x{j}" for j in range(400)) for i in range(5)]
    got = enc.encode(items)
    assert [g.tolist() for g in got] == plain(deepseek, items)
    assert enc._memo_size <= 10_000


def test_text_that_never_repeats_is_tokenized_whole(deepseek):
    rng = np.random.default_rng(3)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))

    def fresh() -> list[str]:
        return [" ".join("".join(rng.choice(letters, 6)) for _ in range(300)) + " 12 中文"
                for _ in range(3)]

    enc = ChunkedEncoder(deepseek, cut_bits=2)

    def run(items: list[str]) -> bool:
        handle = enc.submit(items)
        assert [g.tolist() for g in enc.result(handle)] == plain(deepseek, items)
        return handle.whole

    assert [run(fresh()) for _ in range(12)] == [
        False, True, False, True, True, False, True, True, True, True, False, True]
    # Text that repeats is noticed on the next look, and cutting resumes.
    shared = fresh()
    while enc._whole_left:
        run(shared)
    assert [run(shared + shared) for _ in range(3)] == [False] * 3
