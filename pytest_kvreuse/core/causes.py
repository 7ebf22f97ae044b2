"""Where reuse comes from (the shared prefixes carrying it, per request category) and where
it breaks (session turns that do not re-send the previous turn's prompt): docs/causes.md.

Block-level and numpy only: sorts and gathers over the stream, no loop per block. The
token-level details of a break (first differing token, the text either side) need the
prompts' token ids, which a text layer supplies through :class:`PromptSource`.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from .blocks import BlockStream, packed_positions


class PromptSource(Protocol):
    """Recovers prompts of a text trace: token ids of some requests, and text of ids."""

    def token_ids(self, requests: Iterable[int]) -> dict[int, np.ndarray]: ...

    def decode(self, ids: np.ndarray) -> str: ...


def previous_occurrence(keys: np.ndarray) -> np.ndarray:
    """For every block, the index of the previous block with the same key; -1 for a first
    touch. One sort by (key, position), as the interval pass makes."""
    n = keys.shape[0]
    prev = np.full(n, -1, dtype=np.int64)
    if n < 2:
        return prev
    shift = n.bit_length()
    if int(keys.max()).bit_length() + shift <= 62:
        # (key, position) packed in one int64: a value sort, several times faster than a
        # stable argsort, and equal keys stay in stream order.
        packed = packed_positions(keys, shift)
        packed.sort()
        order = packed & ((1 << shift) - 1)
        same = (packed[1:] >> shift) == (packed[:-1] >> shift)
    else:
        order = np.argsort(keys, kind="stable")
        same = keys[order[1:]] == keys[order[:-1]]
    prev[order[1:][same]] = order[:-1][same]
    return prev


def reuse_flags(stream: BlockStream, prev: np.ndarray, counted_from: int) -> np.ndarray:
    """The blocks that count as reuses: seen before in another request, and counted (the
    same blocks ``ReuseAnalysis.reuse_count`` counts)."""
    hit = prev >= 0
    hit[hit] = stream.request[prev[hit]] != stream.request[hit]
    hit[:counted_from] = False
    return hit


# -- where reuse comes from ----------------------------------------------------------------


@dataclass(frozen=True)
class SharedPrefix:
    """A node of the block trie compressed along unary paths: blocks ``depth`` to
    ``depth + blocks - 1`` of every request in one set of ``requests`` requests (its
    first request's, at block ``depth``, stand for all). ``reused_tokens``: its counted
    reuses times the block size; ``share``: of all reused tokens."""

    depth: int
    blocks: int
    block_size: int
    requests: int
    reused_tokens: int
    share: float
    first_request: int
    last_request: int
    first_time: float | None = None
    last_time: float | None = None
    text: str | None = None

    @property
    def tokens(self) -> int:
        return self.blocks * self.block_size

    @property
    def prefix_tokens(self) -> int:
        """Tokens from the prompt's start to the end of this prefix."""
        return (self.depth + self.blocks) * self.block_size

    def to_dict(self) -> dict:
        return {"depth_blocks": self.depth, "blocks": self.blocks, "tokens": self.tokens,
                "prefix_tokens": self.prefix_tokens, "requests": self.requests,
                "reused_tokens": self.reused_tokens, "share": self.share,
                "first_request": self.first_request, "last_request": self.last_request,
                "first_time": self.first_time, "last_time": self.last_time,
                "text": self.text}


def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def top_prefixes(stream: BlockStream, n: int, *, counted_from: int = 0,
                 prev: np.ndarray | None = None) -> list[SharedPrefix]:
    """The ``n`` shared prefixes carrying the most reused tokens (ties: the earlier first).

    A key names a whole prefix, so it is a trie node, occurring once in each request that
    holds it; its parent is the key before it in any of them. A block starts a new shared
    prefix unless the block before it in its request has a key with as many occurrences:
    then both keys are in exactly the same requests (a child's requests are a subset of
    its parent's), the trie path between them is unary, and they belong together.
    """
    keys, request = stream.keys, stream.request
    size = keys.shape[0]
    if size == 0 or n <= 0:
        return []
    if prev is None:
        prev = previous_occurrence(keys)
    reused = reuse_flags(stream, prev, counted_from)
    total_reused = int(np.count_nonzero(reused))
    if total_reused == 0:
        return []
    occurrences = np.bincount(keys)
    count = occurrences[keys]
    head = np.ones(size, dtype=bool)
    head[1:] = (request[1:] != request[:-1]) | (count[1:] != count[:-1])
    head_at = np.maximum.accumulate(np.where(head, np.arange(size), 0))
    chain = keys[head_at]
    reused_per = np.bincount(chain, weights=reused, minlength=occurrences.shape[0])
    blocks_per = np.bincount(chain, minlength=occurrences.shape[0])
    # A head's first occurrence in stream order stands for the prefix (its first request).
    heads = np.flatnonzero(head & (prev < 0))
    head_keys = keys[heads]
    carrying = reused_per[head_keys] > 0
    heads, head_keys = heads[carrying], head_keys[carrying]
    order = np.lexsort((heads, -reused_per[head_keys]))[:n]
    heads, head_keys = heads[order], head_keys[order]
    # The last request holding a head: its last occurrence in stream order.
    last_of = np.zeros(occurrences.shape[0], dtype=np.int64)
    np.maximum.at(last_of, keys, np.arange(size))
    last = last_of[head_keys]
    starts = stream.request_starts
    stamps = np.asarray(stream.timestamps, dtype=np.float64)
    out = []
    for h, k, lst in zip(heads.tolist(), head_keys.tolist(), last.tolist(), strict=True):
        r_first, r_last = int(request[h]), int(request[lst])
        times = (_finite_or_none(stamps[r_first]), _finite_or_none(stamps[r_last])) \
            if stamps.shape == (stream.num_requests,) else (None, None)
        tokens = int(reused_per[k]) * stream.block_size
        out.append(SharedPrefix(
            depth=int(h - starts[r_first]), blocks=int(blocks_per[k] // occurrences[k]),
            block_size=stream.block_size, requests=int(occurrences[k]),
            reused_tokens=tokens, share=tokens / (total_reused * stream.block_size),
            first_request=r_first, last_request=r_last,
            first_time=times[0], last_time=times[1]))
    return out


def prefix_texts(prefixes: Sequence[SharedPrefix], source: PromptSource,
                 chars: int = 80) -> list[SharedPrefix]:
    """The prefixes with the first ``chars`` characters of their text, decoded from their
    first request's prompt (re-tokenized: only these few requests)."""
    ids = source.token_ids(p.first_request for p in prefixes)
    out = []
    for p in prefixes:
        prompt = ids.get(p.first_request)
        text = None
        if prompt is not None:
            lo = p.depth * p.block_size
            # Tokens are at least a byte: 4 * chars tokens decode to at least chars.
            piece = prompt[lo:min(lo + p.tokens, lo + 4 * chars)]
            text = source.decode(piece)[:chars]
        out.append(replace(p, text=text))
    return out


@dataclass(frozen=True)
class CategoryRow:
    """The reuse of one request category: its counted requests and full-block tokens, the
    share of them reused, and offloadable at each size (``{size: share}``)."""

    label: str
    requests: int
    tokens: int
    reused_fraction: float
    offloadable: dict

    def to_dict(self) -> dict:
        return {"label": self.label, "requests": self.requests, "tokens": self.tokens,
                "reused_fraction": _finite_or_none(self.reused_fraction),
                "offloadable_fraction": {str(k): _finite_or_none(v)
                                         for k, v in self.offloadable.items()}}


def category_breakdown(stream: BlockStream, codes: np.ndarray, labels: Sequence[str], *,
                       sizes: Sequence[int] = (), counted_from: int = 0,
                       warmup_requests: int = 0, limit: int = 10,
                       prev: np.ndarray | None = None, noun: str = "categories"
                       ) -> list[CategoryRow]:
    """Reused and offloadable (interval > size) shares of each category's own counted
    tokens; request ``r`` is in category ``labels[codes[r]]``. The ``limit`` categories
    with the most tokens, the rest summed as ``other (N categories)``."""
    if prev is None:
        prev = previous_occurrence(stream.keys)
    ncat = len(labels)
    req_code = np.asarray(codes, dtype=np.int64)
    code = req_code[stream.request]
    reused = reuse_flags(stream, prev, counted_from)
    tokens = np.bincount(code[counted_from:], minlength=ncat) * stream.block_size
    hits = np.bincount(code[reused], minlength=ncat) * stream.block_size
    idx = np.flatnonzero(reused)
    interval = (idx - prev[idx] - 1) * stream.block_size
    beyond = {s: np.bincount(code[idx[interval > s]], minlength=ncat) * stream.block_size
              for s in sizes}
    nreq = np.bincount(req_code[warmup_requests:], minlength=ncat)
    present = np.flatnonzero(nreq)
    order = present[np.lexsort((np.asarray(labels, dtype=str)[present], -tokens[present]))]
    keep, rest = order[:limit], order[limit:]
    groups = [([c], str(labels[c])) for c in keep.tolist()]
    if rest.size:
        groups.append((rest.tolist(), f"other ({rest.size} {noun})"))
    out = []
    for members, label in groups:
        t = int(tokens[members].sum())
        out.append(CategoryRow(
            label=label, requests=int(nreq[members].sum()), tokens=t,
            reused_fraction=int(hits[members].sum()) / t if t else math.nan,
            offloadable={s: int(b[members].sum()) / t if t else math.nan
                         for s, b in beyond.items()}))
    return out


# -- where reuse breaks --------------------------------------------------------------------

# Block pairs compared at a time: bounds the temporaries of a big trace.
_CHUNK = 1 << 22


@dataclass(frozen=True, eq=False)
class TurnBreaks:
    """Every session turn against its session's previous turn: ``turn[i]`` and
    ``previous[i]`` are request numbers, ``shared[i]`` their leading full blocks in common
    and ``lost[i]`` the full blocks of the previous prompt the turn would have reused had
    it re-sent it (``min(blocks of both) - shared``; on a hash-id trace whose native block
    is larger, the previous prompt's blocks in whole native blocks only). Only counted
    turns."""

    turn: np.ndarray
    previous: np.ndarray
    shared: np.ndarray
    lost: np.ndarray
    block_size: int

    @property
    def broken(self) -> np.ndarray:
        """Indices of the turns that lost a full block."""
        return np.flatnonzero(self.lost > 0)

    @property
    def lost_tokens(self) -> int:
        return int(self.lost.sum()) * self.block_size


def turn_breaks(stream: BlockStream, *, warmup_requests: int = 0) -> TurnBreaks:
    """Compare every turn with the previous request of its session, block by block: the
    keys name whole prefixes, so the blocks in common are those with equal keys."""
    sessions = np.asarray(stream.sessions, dtype=np.int64)
    known = np.flatnonzero(sessions >= 0)
    order = known[np.argsort(sessions[known], kind="stable")]
    follows = sessions[order[1:]] == sessions[order[:-1]]
    turn, previous = order[1:][follows], order[:-1][follows]
    counted = turn >= warmup_requests
    turn, previous = turn[counted], previous[counted]
    starts = stream.request_starts
    nblocks = np.diff(starts)
    known = nblocks[previous]
    native = stream.meta.get("hash_block_size")
    if native and native > stream.block_size:
        # A hash-id trace names a native block only whole: the blocks of the previous
        # prompt's last, partial native block cannot match the next turn's (its full
        # native block has an id of its own), whatever the tokens were.
        known = np.minimum(known, stream.prompt_tokens[previous] // native
                           * (native // stream.block_size))
    common = np.minimum(nblocks[turn], known)
    shared = common.copy()
    # The block pairs of a chunk of turns at a time: temporaries of a chunk's blocks, not
    # of the whole stream's (a loop per chunk, never per block).
    ends = np.cumsum(common)
    lo = 0
    while lo < turn.shape[0]:
        hi = max(int(np.searchsorted(ends, ends[lo] - common[lo] + _CHUNK, side="right")),
                 lo + 1)
        c = common[lo:hi]
        pair = np.repeat(np.arange(lo, hi), c)
        within = np.arange(pair.shape[0]) - np.repeat(np.cumsum(c) - c, c)
        differ = np.flatnonzero(stream.keys[starts[turn[pair]] + within]
                                != stream.keys[starts[previous[pair]] + within])
        first_pairs, first = np.unique(pair[differ], return_index=True)
        shared[first_pairs] = within[differ[first]]
        lo = hi
    return TurnBreaks(turn=turn, previous=previous, shared=shared, lost=common - shared,
                      block_size=stream.block_size)


# Digit runs with the separators of dates and clocks after them: "12:01", "2026-12-01",
# "09:00:" and "59." all read "#", so a clock in a prompt is one cause wherever it ticks.
_NUMBER = re.compile(r"\d[\d:.\-/,]*")
_SPACE = re.compile(r"\s+")
# Tokens decoded either side of a departure: enough for a clock or a template marker.
_WINDOW = 24
_SHOWN = 48


def normalise(text: str) -> str:
    """Text as causes group it: numbers as ``#``, whitespace as one space."""
    return _SPACE.sub(" ", _NUMBER.sub("#", text))


@dataclass(frozen=True)
class Departure:
    """Where one turn departs from its session's previous prompt: the first differing
    token, the text before it (the line it is on), what the previous prompt had there and
    what this turn has (up to where they agree again)."""

    turn: int
    previous: int
    token: int
    lost_tokens: int
    before: str
    was: str
    now: str

    @property
    def cause(self) -> str:
        """The group key: the line up to the departure and both sides, normalised."""
        return f"{normalise(self.before)}[{normalise(self.was)} -> {normalise(self.now)}]"

    def to_dict(self) -> dict:
        return {"turn": self.turn, "previous": self.previous, "token": self.token,
                "lost_tokens": self.lost_tokens, "before": self.before, "was": self.was,
                "now": self.now}


def first_difference(a: np.ndarray, b: np.ndarray) -> int:
    n = min(a.shape[0], b.shape[0])
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if differ.size else n


def departure(turn: int, previous: int, lost_tokens: int, now_ids: np.ndarray,
              was_ids: np.ndarray, decode: Callable[[np.ndarray], str]) -> Departure:
    """The departure of ``now_ids`` from ``was_ids`` at their first differing token: the
    text either side is the first change of a token diff of the windows after it, tokens
    compared as :func:`normalise` reads them (a marker a template inserted, a tool list
    reordered); where they differ only in numbers there (a clock that ticked), the
    number on each side."""
    d = first_difference(now_ids, was_ids)
    was_win, now_win = was_ids[d:d + _WINDOW], now_ids[d:d + _WINDOW]
    was_norm = [normalise(decode(was_win[k:k + 1])) for k in range(was_win.shape[0])]
    now_norm = [normalise(decode(now_win[k:k + 1])) for k in range(now_win.shape[0])]
    ops = [op for op in difflib.SequenceMatcher(None, was_norm, now_norm, autojunk=False)
           .get_opcodes() if op[0] != "equal"]
    if ops and ops[0][1] == 0 and ops[0][3] == 0:
        # Until the two agree again; an insertion leaves one side empty.
        was_end, now_end = ops[0][2], ops[0][4]
    else:
        was_end, now_end = _number_run(was_norm), _number_run(now_norm)
    was = decode(was_win[:was_end])
    now = decode(now_win[:now_end])
    before = decode(now_ids[max(0, d - _WINDOW):d]).rsplit("\n", 1)[-1][-_SHOWN:]
    return Departure(turn=turn, previous=previous, token=d, lost_tokens=lost_tokens,
                     before=before, was=was[:_SHOWN], now=now[:_SHOWN])


def _number_run(tokens: list[str]) -> int:
    """Leading tokens that hold a number (at least one)."""
    n = 0
    while n < len(tokens) and "#" in tokens[n]:
        n += 1
    return max(n, 1)


@dataclass(frozen=True)
class BreakCause:
    """The departures of one cause: how many turns, of how many sessions, and the tokens
    they lost (and their share of all lost tokens); ``example`` the one losing most."""

    cause: str
    turns: int
    sessions: int
    lost_tokens: int
    share: float
    example: Departure

    def to_dict(self) -> dict:
        return {"cause": self.cause, "turns": self.turns, "sessions": self.sessions,
                "lost_tokens": self.lost_tokens, "share": self.share,
                "example": self.example.to_dict()}


def explain_breaks(breaks: TurnBreaks, sessions: np.ndarray, source: PromptSource, *,
                   limit: int = 1000) -> tuple[list[BreakCause], int]:
    """The broken turns' departures grouped by cause, most lost tokens first; at most
    ``limit`` turns (those losing most) are re-tokenized. Also: how many were explained."""
    broken = breaks.broken
    pick = broken[np.lexsort((breaks.turn[broken], -breaks.lost[broken]))][:limit]
    wanted = np.concatenate([breaks.turn[pick], breaks.previous[pick]]).tolist()
    ids = source.token_ids(wanted)
    groups: dict[str, list[Departure]] = {}
    for i in pick.tolist():  # a loop per broken turn, each a few small numpy calls
        t, p = int(breaks.turn[i]), int(breaks.previous[i])
        if t not in ids or p not in ids:
            continue
        dep = departure(t, p, int(breaks.lost[i]) * breaks.block_size, ids[t], ids[p],
                        source.decode)
        groups.setdefault(dep.cause, []).append(dep)
    explained = sum(d.lost_tokens for g in groups.values() for d in g)
    out = []
    for cause, deps in groups.items():
        lost = sum(d.lost_tokens for d in deps)
        out.append(BreakCause(
            cause=cause, turns=len(deps),
            sessions=len({int(sessions[d.turn]) for d in deps}), lost_tokens=lost,
            share=lost / explained if explained else math.nan,
            example=max(deps, key=lambda d: (d.lost_tokens, -d.turn))))
    out.sort(key=lambda c: (-c.lost_tokens, c.cause))
    return out, int(pick.shape[0])
