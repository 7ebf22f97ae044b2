"""Tokenize shared text once: cut prompts at content-defined safe points, tokenize each
distinct chunk once, join the ids.

A cut between positions ``i-1`` and ``i`` is *safe* when tokenizing ``text[:i]`` and
``text[i:]`` separately and joining the ids equals tokenizing ``text``. We cut only where an
ASCII letter is followed by a space and an ASCII letter (``"word| next"``), and only for
tokenizers whose pipeline is proven local there (:func:`cut_points_are_safe`):

* no normalizer (normalizers such as NFC can join characters across the cut);
* a BPE model, which works on each pre-token on its own;
* no added token contains a space, or strips/claims whitespace around it
  (``lstrip``/``rstrip``/``single_word``), so no added-token match spans the cut, and the
  leftmost-longest added-token split on each side is the whole text's split;
* every pre-tokenizer step is one of the regex splits in :data:`SAFE_SPLIT_REGEXES`
  (``Isolated``) or byte-level mapping. For each of them the match holding the letter at
  ``i-1`` is a letter run that ends exactly at ``i`` (no alternative can take a letter
  followed by a space), no earlier match looks past ``i`` (every alternative stops at a
  letter/space boundary, and lookaheads only follow whitespace, which ``i-1`` is not),
  and there is no lookbehind, so matching restarts at ``i`` exactly as on ``text[i:]``.
  Digit groups (``\\p{N}{1,3}``) and CJK runs cannot cross a letter-space boundary.

For any other tokenizer every prompt is tokenized whole. Which candidate cuts are taken
depends only on the 8 bytes before the space, so identical text in two prompts is cut
identically (away from its first few bytes) and its chunks are found in the memo.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the tokenizer asks this module whether its cuts are safe
    from .tokenizer import TextTokenizer

_DIGITS = r"\p{N}{1,3}"
_CJK = "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+"
_DEEPSEEK_V3 = (r"""[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?"""
                r"[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
           r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
          r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
#: Split regexes (behaviour Isolated) proven to keep "letter| space letter" a boundary,
#: written with CR and LF escaped (tokenizer.json files spell them either way).
SAFE_SPLIT_REGEXES = frozenset({_DIGITS, _CJK, _DEEPSEEK_V3, _LLAMA3, _QWEN2})


def _canonical_regex(pattern: object) -> object:
    if not isinstance(pattern, str):
        return pattern
    return pattern.replace("\r", "\\r").replace("\n", "\\n")

# One candidate cut in 2**_CUT_BITS is taken: chunks of ~64 words (~90 tokens), large
# enough that per-chunk overhead stays small next to tokenizing, small enough that a
# prompt's unshared tail costs little.
_CUT_BITS = 6
_WINDOW = 8
# A batch whose text is this new (by bytes) sends the next batches whole.
_NO_REPEAT_SHARE = 0.95
_MAX_WHOLE_BATCHES = 16
_MIX = np.uint64(0x9E3779B97F4A7C15)
_ASCII_LETTER = np.zeros(256, dtype=bool)
_ASCII_LETTER[ord("A"):ord("Z") + 1] = True
_ASCII_LETTER[ord("a"):ord("z") + 1] = True


def _pre_tokenizer_is_safe(pre: dict | None) -> bool:
    if pre is None:
        return False
    kind = pre.get("type")
    if kind == "Sequence":
        steps = pre.get("pretokenizers") or []
        return bool(steps) and all(_pre_tokenizer_is_safe(s) for s in steps)
    if kind == "ByteLevel":
        # With use_regex it splits with GPT-2's pattern, which keeps the boundary too
        # (' ?\p{L}+' takes " next", letter runs stop at the space).
        return not pre.get("add_prefix_space", False)
    if kind == "Split":
        pattern = pre.get("pattern") or {}
        return (pre.get("behavior") == "Isolated" and not pre.get("invert", False)
                and _canonical_regex(pattern.get("Regex")) in SAFE_SPLIT_REGEXES)
    return False


def cut_points_are_safe(backend: object) -> bool:
    """Whether cutting at "letter| space letter" is proven not to change ``backend``'s ids.

    Reads the pipeline's parts (not the whole serialized tokenizer, which is megabytes)."""
    try:
        normalizer = backend.normalizer
        # An empty Sequence does nothing; its state does not serialize on its own.
        if normalizer is not None and repr(normalizer) != "Sequence(normalizers=[])":
            return False
        if type(backend.model).__name__ != "BPE" or backend.truncation is not None:
            return False
        for tok in backend.get_added_tokens_decoder().values():
            if " " in tok.content or tok.lstrip or tok.rstrip or tok.single_word:
                return False
        pre = backend.pre_tokenizer
        return pre is not None and _pre_tokenizer_is_safe(json.loads(pre.__getstate__()))
    except Exception:  # an unfamiliar tokenizer object: not proven
        return False


def cut_offsets(data: bytes, cut_bits: int = _CUT_BITS) -> np.ndarray:
    """Byte offsets at which to cut UTF-8 ``data``: content-defined safe points, about one
    candidate in ``2**cut_bits`` (0: every candidate, for tests)."""
    b = np.frombuffer(data, dtype=np.uint8)
    if b.size < _WINDOW + 2:
        return np.zeros(0, dtype=np.int64)
    # Spaces first (one pass over the bytes), then the letter test on those alone.
    cand = np.flatnonzero(b[_WINDOW:-1] == 32) + _WINDOW
    cand = cand[_ASCII_LETTER[b[cand - 1]] & _ASCII_LETTER[b[cand + 1]]]
    if cand.size == 0:
        return cand
    windows = np.lib.stride_tricks.sliding_window_view(b, _WINDOW)[cand - _WINDOW]
    h = np.ascontiguousarray(windows).view("<u8").ravel() * _MIX
    if cut_bits == 0:
        return cand
    return cand[(h >> np.uint64(64 - cut_bits)) == 0]


@dataclass(eq=False)
class PendingBatch:
    """A batch handed to :meth:`ChunkedEncoder.submit`, being tokenized in the background."""

    pieces: list[list[bytes]]
    hits: dict[bytes, np.ndarray]
    new: list[bytes]
    future: Future
    previous: PendingBatch | None
    new_arrays: dict[bytes, np.ndarray] = field(default_factory=dict)
    done: bool = False
    whole: bool = False  # tokenized as whole texts, no chunks


class ChunkedEncoder:
    """Batch tokenization that tokenizes each distinct chunk of text once.

    Chunks live in a memo bounded by ``memo_bytes`` (least recently used go first), so a
    trace with no repeated text costs memory for one batch only. :meth:`submit` tokenizes
    in a background thread (the tokenizer releases the GIL and uses every core) while the
    caller reads and cuts the next batch; :meth:`result` collects in submission order.
    """

    def __init__(self, tokenizer: TextTokenizer, *, memo_bytes: int = 128 << 20,
                 safe: bool | None = None, cut_bits: int = _CUT_BITS) -> None:
        self.tokenizer = tokenizer
        self.cut_bits = cut_bits
        self.safe = tokenizer.safe_cuts if safe is None else safe
        self.memo_bytes = memo_bytes
        self._memo: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._memo_size = 0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kvreuse-tokenize")
        self.chunks_seen = 0
        self.chunks_tokenized = 0
        self._whole_left = 0
        self._backoff = 0

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def __enter__(self) -> ChunkedEncoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def encode(self, texts: list[str]) -> list[np.ndarray]:
        """Token ids of every text, equal to ``tokenizer.encode_batch(texts)``."""
        return self.result(self.submit(texts))

    def submit(self, texts: list[str], previous: PendingBatch | None = None) -> PendingBatch:
        """Start tokenizing ``texts``; ``previous`` is the batch submitted just before,
        if it is not collected yet (its chunks are then not tokenized twice)."""
        encodings = self.tokenizer.encodings
        if not self.safe or self._whole_left > 0:
            self._whole_left -= 1
            return PendingBatch([], {}, [], self._pool.submit(encodings, texts), None,
                                whole=True)
        memo = self._memo
        pending = set(previous.new) if previous is not None and not previous.done else set()
        pieces: list[list[bytes]] = []
        hits: dict[bytes, np.ndarray] = {}
        missing: dict[bytes, None] = {}
        total_bytes = 0
        for text in texts:  # per request: the per-chunk work is dict lookups only
            data = text.encode("utf-8")
            total_bytes += len(data)
            cuts = cut_offsets(data, self.cut_bits).tolist()
            chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
            pieces.append(chunks)
            for c in chunks:
                if c in hits or c in missing:
                    continue
                arr = memo.get(c)
                if arr is not None:
                    hits[c] = arr  # held here: eviction cannot take it before assembly
                    memo.move_to_end(c)
                elif c not in pending:
                    missing[c] = None
        self.chunks_seen += sum(len(p) for p in pieces)
        new = list(missing)
        self.chunks_tokenized += len(new)
        # Text that does not repeat gains nothing from cutting: tokenize the next batches
        # whole (same ids, less work), then look again; 1, 2, 4, ... batches while the
        # text stays new, so a trace that starts sharing later is noticed soon.
        if sum(map(len, new)) > _NO_REPEAT_SHARE * total_bytes:
            self._backoff = min(max(1, 2 * self._backoff), _MAX_WHOLE_BATCHES)
            self._whole_left = self._backoff
        else:
            self._backoff = 0
        future = self._pool.submit(encodings, [c.decode("utf-8") for c in new])
        return PendingBatch(pieces, hits, new, future, previous if pending else None)

    def result(self, batch: PendingBatch) -> list[np.ndarray]:
        """The ids of a submitted batch (batches are collected in submission order)."""
        ids = self.tokenizer.ids_of(batch.future.result())
        batch.done = True
        if batch.whole:
            return ids
        batch.new_arrays = dict(zip(batch.new, ids, strict=True))
        table = batch.hits  # the same chunk has the same ids wherever it was found
        if batch.previous is not None:
            table.update(batch.previous.new_arrays)
            batch.previous = None
        table.update(batch.new_arrays)
        out = []
        for chunks in batch.pieces:
            arrays = [table[c] for c in chunks]
            out.append(arrays[0] if len(arrays) == 1 else np.concatenate(arrays))
        memo = self._memo
        for c, arr in batch.new_arrays.items():
            memo[c] = arr
            self._memo_size += len(c) + arr.nbytes
        while self._memo_size > self.memo_bytes and memo:
            c, arr = memo.popitem(last=False)
            self._memo_size -= len(c) + arr.nbytes
        batch.pieces, batch.hits = [], {}
        return out
