"""A deterministic synthetic multi-turn chat workload, for examples, tests and benchmarks.

Sessions share a few system prompts (Zipf-popular), and every turn re-sends the whole
history: the reuse pattern of real chat traffic. A prompt is a list of segments
``(segment_id, tokens)``; writers render segments as hash ids (Mooncake) or as text.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import orjson

from .atomic import atomic_open, atomic_write_bytes
from .text.tokenizer import resolve_tokenizer_dir


@dataclass(frozen=True)
class Request:
    timestamp_ms: int
    session: int
    turn: int
    segments: tuple[tuple[int, int], ...]
    output_tokens: int

    @property
    def input_length(self) -> int:
        return sum(n for _, n in self.segments)


@dataclass(frozen=True)
class Workload:
    """Knobs of the generator; the same knobs and seed give the same requests."""

    sessions: int = 200
    system_prompts: int = 4
    system_tokens: tuple[int, int] = (600, 2500)
    turns: tuple[int, int] = (1, 8)
    user_tokens: tuple[int, int] = (40, 700)
    reply_tokens: tuple[int, int] = (50, 500)
    document_share: float = 0.3
    document_tokens: tuple[int, int] = (2000, 12000)
    documents: int = 12
    session_rate_per_s: float = 2.0
    think_time_s: float = 20.0
    seed: int = 0


def generate(w: Workload) -> list[Request]:
    rng = np.random.default_rng(w.seed)
    next_seg = iter(range(1, 1 << 62))
    system = [(next(next_seg), int(rng.integers(*w.system_tokens)))
              for _ in range(w.system_prompts)]
    docs = [(next(next_seg), int(rng.integers(*w.document_tokens))) for _ in range(w.documents)]
    popularity = 1.0 / np.arange(1, w.system_prompts + 1)
    popularity /= popularity.sum()
    requests: list[Request] = []
    start = 0.0
    for s in range(w.sessions):
        start += rng.exponential(1.0 / w.session_rate_per_s)
        history = [system[int(rng.choice(w.system_prompts, p=popularity))]]
        if rng.random() < w.document_share:
            history.append(docs[int(rng.integers(w.documents))])
        t = start
        for turn in range(int(rng.integers(w.turns[0], w.turns[1] + 1))):
            history.append((next(next_seg), int(rng.integers(*w.user_tokens))))
            reply = int(rng.integers(*w.reply_tokens))
            requests.append(Request(int(t * 1000), s, turn + 1, tuple(history), reply))
            history.append((next(next_seg), reply))
            t += rng.exponential(w.think_time_s)
    requests.sort(key=lambda r: (r.timestamp_ms, r.session, r.turn))
    return requests


def prefix_hash_ids(requests: list[Request], block: int) -> Iterator[list[int]]:
    """Hash ids as Mooncake assigns them: one id per native block, naming the whole prefix
    (the last id covers the partial tail)."""
    ids: dict[tuple, int] = {}
    for r in requests:
        out = []
        parent = -1
        pieces: list[tuple[int, int, int]] = []
        filled = 0
        for seg, n in r.segments:
            pos = 0
            while pos < n:
                take = min(n - pos, block - filled)
                pieces.append((seg, pos, pos + take))
                pos += take
                filled += take
                if filled == block:
                    parent = ids.setdefault((parent, tuple(pieces)), len(ids))
                    out.append(parent)
                    pieces, filled = [], 0
        if pieces:
            out.append(ids.setdefault((parent, tuple(pieces)), len(ids)))
        yield out


def write_mooncake(requests: list[Request], path: str | os.PathLike[str],
                   block: int = 512) -> None:
    lines = []
    for r, ids in zip(requests, prefix_hash_ids(requests, block), strict=True):
        lines.append(orjson.dumps({"timestamp": r.timestamp_ms, "input_length": r.input_length,
                                   "output_length": r.output_tokens, "hash_ids": ids}))
    atomic_write_bytes(path, b"\n".join(lines) + b"\n")


def write_mooncake_trace(requests: list[Request], path: str | os.PathLike[str],
                         block: int = 512) -> None:
    """aiperf's mooncake_trace form: each session's turns together, the first at its
    timestamp, the next ones a ``delay`` (ms) after the previous turn."""
    by_session: dict[int, list[tuple[Request, list[int]]]] = {}
    for r, ids in zip(requests, prefix_hash_ids(requests, block), strict=True):
        by_session.setdefault(r.session, []).append((r, ids))
    lines = []
    for session, turns in by_session.items():
        for k, (r, ids) in enumerate(turns):
            when = ({"timestamp": r.timestamp_ms} if k == 0 else
                    {"delay": r.timestamp_ms - turns[k - 1][0].timestamp_ms})
            lines.append(orjson.dumps({"session_id": f"session-{session}", **when,
                                       "input_length": r.input_length,
                                       "output_length": r.output_tokens, "hash_ids": ids}))
    atomic_write_bytes(path, b"\n".join(lines) + b"\n")


def weka_conversations(requests: list[Request], block: int = 64, *,
                       subagent_every: int = 0) -> list[dict]:
    """One Weka / kv-cache-tester conversation per session (``hash_id_scope`` global: the
    sessions' shared system prompts keep their shared ids); ``t`` counts from the
    session's first request. With ``subagent_every`` = k, every k-th turn is sent by a
    subagent instead (a marker spawned at that turn's time)."""
    by_session: dict[int, list[tuple[Request, list[int]]]] = {}
    for r, ids in zip(requests, prefix_hash_ids(requests, block), strict=True):
        by_session.setdefault(r.session, []).append((r, ids))
    docs = []
    for session, turns in by_session.items():
        start = turns[0][0].timestamp_ms
        entries: list[dict] = []
        for k, (r, ids) in enumerate(turns):
            t = (r.timestamp_ms - start) / 1000
            call = {"t": t, "type": "s" if k % 2 else "n",
                    "model": "model-small" if k % 3 == 2 else "model-large",
                    "in": r.input_length, "out": r.output_tokens, "hash_ids": ids}
            if subagent_every and k % subagent_every == subagent_every - 1:
                entries.append({"t": t, "type": "subagent", "agent_id": f"agent_{k:03d}",
                                "subagent_type": "Explore", "status": "completed",
                                "requests": [call], "models": [call["model"]]})
            else:
                entries.append(call)
        docs.append({"id": f"session-{session:04d}", "models": ["model-large", "model-small"],
                     "block_size": block, "hash_id_scope": "global", "tool_tokens": 0,
                     "system_tokens": 0, "requests": entries})
    return docs


def vocabulary_words(count: int = 4096) -> list[str]:
    """Lower-case words that DeepSeek-V3 encodes as one token each when preceded by a space
    (its earliest-merged, i.e. most common, ones): text of n such words is ~n tokens."""
    vocab = json.loads((resolve_tokenizer_dir("deepseek-v3") / "tokenizer.json")
                       .read_text(encoding="utf-8"))["model"]["vocab"]
    # "\u0120" is the byte-level alphabet's space.
    words = sorted((i, w[1:]) for w, i in vocab.items() if re.fullmatch("\u0120[a-z]{3,9}", w))
    return [w for _, w in words[:count]]


class SegmentText:
    """Deterministic text of about ``tokens`` tokens for every segment id."""

    def __init__(self, seed: int = 0, words: list[str] | None = None) -> None:
        self.seed = seed
        self.words = np.asarray(words if words is not None else vocabulary_words())
        self._cache: dict[int, str] = {}

    def __call__(self, segment: int, tokens: int) -> str:
        text = self._cache.get(segment)
        if text is None:
            rng = np.random.default_rng((self.seed, segment))
            # Starting with a space makes the first word the same one-token word as the rest.
            text = " " + " ".join(self.words[rng.integers(0, len(self.words), tokens)])
            self._cache[segment] = text
        return text


def chat_messages(r: Request, text: SegmentText, *, system_suffix: str = "",
                  assistant_prefix: str = "") -> list[dict]:
    """A request's messages: system prompt (plus document), then user and assistant turns
    alternating, ending on the new user turn. ``system_suffix`` ends the system prompt
    (a clock); ``assistant_prefix`` starts every earlier assistant turn (a template)."""
    # segments: system, [document], then user/assistant alternating, ending on user.
    n_prefix = len(r.segments) - (2 * r.turn - 1)
    messages = []
    if n_prefix > 0:
        system = "\n\n".join(text(s, n) for s, n in r.segments[:n_prefix])
        messages.append({"role": "system", "content": system + system_suffix})
    for k, (s, n) in enumerate(r.segments[n_prefix:]):
        role = "user" if k % 2 == 0 else "assistant"
        prefix = assistant_prefix if role == "assistant" else ""
        messages.append({"role": role, "content": prefix + text(s, n)})
    return messages


def aiperf_sessions(requests: list[Request], text: SegmentText) -> Iterator[dict]:
    """One aiperf ``data`` entry per session (sessions in order of their first request),
    one payload per turn: system prompt (plus document), the history, the new user turn."""
    by_session: dict[int, list[Request]] = {}
    for r in requests:
        by_session.setdefault(r.session, []).append(r)
    for session, turns in by_session.items():
        payloads = [{"messages": chat_messages(r, text), "max_tokens": r.output_tokens}
                    for r in sorted(turns, key=lambda r: r.turn)]
        yield {"session_id": f"session-{session}", "payloads": payloads}


# The wall-clock time the clock of write_chat() starts from (2026-12-01 09:00:00 UTC).
_CLOCK_EPOCH_S = 1796115600
CLOCK_TEXT = "\n\nThe current time is "
TEMPLATE_MARKER = "Assistant: "


def write_chat(requests: list[Request], path: str | os.PathLike[str], *, seed: int = 0,
               clock: bool = False, template_change_s: float | None = None,
               words: list[str] | None = None) -> None:
    """Write ``requests`` as OpenAI-style chat JSONL (``session_id``, ``timestamp`` in
    seconds, ``messages``), in arrival order, with reuse breakers planted on demand:
    ``clock`` ends every system prompt with the request's own time (``The current time
    is 2026-12-01 09:00:07 UTC.``), so no turn re-sends the previous turn's prompt past
    it; from ``template_change_s`` seconds on, a changed chat template renders every
    earlier assistant turn as ``Assistant: ...``, so each session spanning the change
    breaks once, at its first assistant turn."""
    import datetime

    text = SegmentText(seed, words)
    lines = []
    for r in requests:
        suffix = ""
        if clock:
            at = datetime.datetime.fromtimestamp(_CLOCK_EPOCH_S + r.timestamp_ms // 1000,
                                                 datetime.timezone.utc)
            suffix = f"{CLOCK_TEXT}{at:%Y-%m-%d %H:%M:%S} UTC."
        changed = template_change_s is not None and r.timestamp_ms >= template_change_s * 1000
        messages = chat_messages(r, text, system_suffix=suffix,
                                 assistant_prefix=TEMPLATE_MARKER if changed else "")
        lines.append(orjson.dumps({"session_id": f"session-{r.session}",
                                   "timestamp": r.timestamp_ms / 1000.0,
                                   "messages": messages}))
    atomic_write_bytes(path, b"\n".join(lines) + b"\n")


def write_aiperf(requests: list[Request], path: str | os.PathLike[str], *, seed: int = 0,
                 words: list[str] | None = None) -> None:
    """Write ``requests`` as an aiperf ``inputs.json`` of real text (same bytes each run).

    Written entry by entry to a temporary file renamed into place, so a trace of hundreds
    of megabytes is never held in memory whole."""
    text = SegmentText(seed, words)
    with atomic_open(path) as fh:
        fh.write(b'{"data": [')
        for i, entry in enumerate(aiperf_sessions(requests, text)):
            fh.write((b",\n" if i else b"\n") + orjson.dumps(entry))
        fh.write(b"\n]}\n")
