"""From text (or token-id) requests to a BlockStream: prompt modes, batch tokenization,
prefix-chained block keys."""

from __future__ import annotations

import hashlib
import os
import sys
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ..core.blocks import BlockStream, request_index, smallest_index_dtype
from ..errors import KvReuseError, TraceFormatError
from ..loaders.compression import MAGIC_BYTES, compression_of
from ..loaders.shards import trace_files
from ..loaders.text import TextRequest, iter_text_requests, iter_token_requests
from ..params import PROMPT_MODES
from .sharedtext import ChunkedEncoder
from .tokenizer import load_tokenizer

# Joins a payload's message contents in raw mode: a one-message payload is its content.
RAW_JOIN = "\n"
_SEED = hashlib.blake2b(b"pytest-kvreuse prefix chain v1", digest_size=16).digest()
_DIGEST = 16
# Requests are tokenized in batches this large (characters): enough for every core to
# stay busy, small enough that one batch's text and ids are all that is held.
_BATCH_CHARS = 8 << 20
_BATCH_REQUESTS = 4096
# Sessions whose latest request is kept for prefix sharing (least recently active go).
_LATEST_SESSIONS = 256


def check_prompt_mode(prompt: object) -> str:
    if prompt not in PROMPT_MODES:
        raise KvReuseError(f"unknown prompt mode {prompt!r} (known: {', '.join(PROMPT_MODES)})")
    return prompt  # type: ignore[return-value]


def chained_block_digests(ids: np.ndarray, block_size: int, *, first_block: int = 0,
                          parent: bytes = _SEED) -> bytes:
    """16-byte key of every full block: ``key_j = blake2b(key_{j-1} || tokens of block j)``,
    from block ``first_block`` on (``parent``: the key of the block before it).

    One C call per block (the tokens are hashed as raw bytes, never as Python ints), and
    :class:`_StreamBuilder` calls it only for blocks not shared with the session's previous
    request, so in multi-turn traces only about the unique blocks are hashed.
    """
    nblocks = ids.shape[0] // block_size
    if nblocks <= first_block:
        return b""
    # Only equality of keys within one run matters, so the native byte order is fine.
    data = memoryview(np.ascontiguousarray(ids[:nblocks * block_size])).cast("B")
    step = len(data) // nblocks
    out = bytearray((nblocks - first_block) * _DIGEST)
    blake2b = hashlib.blake2b
    for k, j in enumerate(range(first_block, nblocks)):
        parent = blake2b(parent + data[j * step:(j + 1) * step], digest_size=_DIGEST).digest()
        out[k * _DIGEST:(k + 1) * _DIGEST] = parent
    return bytes(out)


def shared_full_blocks(a: np.ndarray, b: np.ndarray, block_size: int) -> int:
    """How many leading full blocks ``a`` and ``b`` have in common (vectorized)."""
    n = min(a.shape[0], b.shape[0]) // block_size * block_size
    if n == 0:
        return 0
    differ = np.flatnonzero(a[:n] != b[:n])
    return (int(differ[0]) if differ.size else n) // block_size


def dense_digest_keys(digests: bytes) -> tuple[np.ndarray, int]:
    """Dense ids 0..n-1 of 16-byte digests (equal digests, equal ids)."""
    words = np.frombuffer(digests, dtype="<u8").reshape(-1, 2)
    n = words.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int32), 0
    order = np.lexsort((words[:, 1], words[:, 0]))
    hi, lo = words[order, 0], words[order, 1]
    new = np.empty(n, dtype=bool)
    new[0] = True
    new[1:] = (hi[1:] != hi[:-1]) | (lo[1:] != lo[:-1])
    rank = np.cumsum(new) - 1
    keys = np.empty(n, dtype=np.int64)
    keys[order] = rank
    unique = int(rank[-1]) + 1
    return smallest_index_dtype(keys, unique), unique


def request_prompts(req: TextRequest, prompt: str, tokenizer) -> list[str]:
    """The prompt text(s) a request becomes in ``prompt`` mode."""
    if prompt == "raw":
        return [RAW_JOIN.join(c for _, c in req.messages)]
    if prompt == "per-message":
        return [c for _, c in req.messages]
    return [tokenizer.render_chat([{"role": r, "content": c} for r, c in req.messages])]


class _StreamBuilder:
    """Accumulates per-request figures and block digests, request after request."""

    def __init__(self, block_size: int) -> None:
        self.block_size = block_size
        self.digests = bytearray()
        self.tokens: list[int] = []
        self.timestamps: list[float] = []
        self.sessions: list[int] = []
        self._session_ids: dict[object, int] = {}
        # Each session's latest request (ids, block digests): the next turn re-sends it,
        # so the digests of the shared leading blocks are copied, not recomputed.
        self._latest: OrderedDict[object, tuple[np.ndarray, bytes]] = OrderedDict()

    def add(self, ids: np.ndarray, session: object, timestamp: float) -> None:
        block = self.block_size
        latest = self._latest.pop(session, None)
        if latest is not None and (shared := shared_full_blocks(latest[0], ids, block)):
            known = latest[1][:shared * _DIGEST]
            digests = known + chained_block_digests(ids, block, first_block=shared,
                                                    parent=known[-_DIGEST:])
        else:
            digests = chained_block_digests(ids, block)
        self.digests += digests
        self._latest[session] = (ids, digests)
        if len(self._latest) > _LATEST_SESSIONS:
            self._latest.popitem(last=False)
        self.tokens.append(int(ids.shape[0]))
        self.timestamps.append(timestamp)
        self.sessions.append(-1 if session is None else
                             self._session_ids.setdefault(session, len(self._session_ids)))

    def stream(self, meta: dict) -> BlockStream:
        return merge_parts([self.part()], self.block_size, meta)

    def part(self) -> StreamPart:
        return StreamPart(bytes(self.digests), np.asarray(self.tokens, dtype=np.int64),
                          np.asarray(self.timestamps, dtype=np.float64),
                          np.asarray(self.sessions, dtype=np.int64),
                          tuple(self._session_ids))


@dataclass(frozen=True, eq=False)
class StreamPart:
    """The requests of one partition of a trace, before keys are made dense: block
    ``digests`` (16 bytes each; a prefix chain never leaves its request, so they do not
    depend on the other partitions), per-request ``tokens``, ``timestamps`` and
    ``sessions`` (ids local to the partition, naming ``session_names[id]``)."""

    digests: bytes
    tokens: np.ndarray
    timestamps: np.ndarray
    sessions: np.ndarray
    session_names: tuple

    @property
    def num_blocks(self) -> int:
        return len(self.digests) // _DIGEST

    def digest_words(self) -> np.ndarray:
        """The digests as ``(num_blocks, 2)`` uint64: what a distributed sort compares."""
        return np.frombuffer(self.digests, dtype="<u8").reshape(-1, 2)


def merge_parts(parts: Sequence[StreamPart], block_size: int, meta: dict) -> BlockStream:
    """The stream of consecutive partitions, equal to the one a single pass makes: dense
    keys over all digests, sessions numbered in first-seen order across partitions."""
    keys, _ = dense_digest_keys(b"".join(p.digests for p in parts))
    tokens = np.concatenate([p.tokens for p in parts]) if parts else np.zeros(0, np.int64)
    names: dict[object, int] = {}
    sessions = []
    for p in parts:  # a loop per partition; numbering per distinct session
        table = np.array([names.setdefault(n, len(names)) for n in p.session_names] + [-1],
                         dtype=np.int64)
        sessions.append(table[p.sessions])  # local -1 picks the table's last entry, -1
    return BlockStream(
        keys=keys, request=request_index(tokens // block_size), block_size=block_size,
        prompt_tokens=tokens,
        timestamps=np.concatenate([p.timestamps for p in parts]) if parts
        else np.zeros(0, np.float64),
        sessions=np.concatenate(sessions) if sessions else np.zeros(0, np.int64), meta=meta)


def _batches(requests: Iterable[TextRequest], prompt: str, tokenizer, path: str
             ) -> Iterator[list[tuple[str, object, float, int]]]:
    batch: list[tuple[str, object, float, int]] = []
    chars = 0
    for req in requests:
        try:
            texts = request_prompts(req, prompt, tokenizer)
        except KvReuseError as exc:  # a chat template refusing this request: name it
            if exc.path is not None:
                raise
            raise type(exc)(exc.message, path=path, line=req.line) from None
        for text in texts:
            batch.append((text, req.session, req.timestamp, req.line))
            chars += len(text)
        if chars >= _BATCH_CHARS or len(batch) >= _BATCH_REQUESTS:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


def progress_enabled(progress: bool | None) -> bool:
    """Explicit choice, else on only for a terminal outside CI."""
    if progress is not None:
        return bool(progress)
    return sys.stderr.isatty() and not os.environ.get("CI")


def _compressed(path: str) -> bool:
    with open(path, "rb") as fh:
        return compression_of(fh.read(MAGIC_BYTES)) is not None


def _progress_bar(path: str, enabled: bool, desc: str):
    from tqdm import tqdm

    # Bytes read are the decompressed ones: a compressed file's size is no total.
    try:
        files = trace_files(path)
        total = sum(os.path.getsize(f) for f in files)
        if any(_compressed(f) for f in files):
            total = None
    except (OSError, KvReuseError):
        total = None
    return tqdm(total=total, unit="B", unit_scale=True, desc=desc, file=sys.stderr,
                disable=not enabled, leave=False, dynamic_ncols=True)


def text_block_stream(path: str | os.PathLike[str], fmt: str, *, block_size: int,
                      tokenizer: str, prompt: str, progress: bool | None = None
                      ) -> BlockStream:
    """Tokenize a text trace and cut it into prefix-keyed full blocks."""
    spath = os.fspath(path)
    tok = load_tokenizer(tokenizer)
    with _progress_bar(spath, progress_enabled(progress), "tokenizing") as bar:
        part = text_stream_part(iter_text_requests(spath, fmt, bar.update), spath,
                                block_size=block_size, tokenizer=tok, prompt=prompt)
    return merge_parts([part], block_size, {"tokenizer": tokenizer, "prompt": prompt})


def text_stream_part(requests: Iterable[TextRequest], path: str, *, block_size: int,
                     tokenizer: object, prompt: str) -> StreamPart:
    """The blocks of consecutive ``requests`` of the trace at ``path`` (which errors
    name), before their keys are made dense: the whole trace, or one partition for
    :func:`merge_parts`. ``tokenizer``: a name or a loaded tokenizer."""
    tok = load_tokenizer(tokenizer) if isinstance(tokenizer, str) else tokenizer
    builder = _StreamBuilder(block_size)

    def add(batch: list[tuple[str, object, float, int]], ids: list[np.ndarray]) -> None:
        for arr, (_, session, ts, _) in zip(ids, batch, strict=True):
            builder.add(arr, session, ts)

    # Two batches in flight: one tokenized in the background while the next is read and
    # cut, and the previous one's keys are hashed.
    with ChunkedEncoder(tok) as encoder:
        waiting = None
        try:
            for batch in _batches(requests, prompt, tok, path):
                handle = encoder.submit([text for text, _, _, _ in batch],
                                        previous=waiting[1] if waiting else None)
                if waiting:
                    add(waiting[0], encoder.result(waiting[1]))
                waiting = (batch, handle)
            if waiting:
                add(waiting[0], encoder.result(waiting[1]))
        except UnicodeEncodeError:
            # The readers refuse lone surrogates; a prompt built from other text (a chat
            # template) could still hold one: name its request rather than a traceback.
            raise _unencodable(path, batch if waiting is None else waiting[0] + batch
                               ) from None
    return builder.part()


def _unencodable(path: str, batch: list[tuple[str, object, float, int]]) -> KvReuseError:
    """The error for the first prompt of ``batch`` that is not encodable text."""
    for text, _, _, line in batch:  # only on this error path
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return TraceFormatError("not valid Unicode text: a lone surrogate (half of a "
                                    "UTF-16 pair)", path=path, line=line)
    return TraceFormatError("not valid Unicode text: a lone surrogate", path=path)


def token_block_stream(path: str | os.PathLike[str], *, block_size: int,
                       progress: bool | None = None) -> BlockStream:
    """Cut a token-id trace into prefix-keyed full blocks."""
    spath = os.fspath(path)
    with _progress_bar(spath, progress_enabled(progress), "reading") as bar:
        part = token_stream_part(iter_token_requests(spath, bar.update),
                                 block_size=block_size)
    return merge_parts([part], block_size, {})


def token_stream_part(requests: Iterable[tuple[np.ndarray, object, float]], *,
                      block_size: int) -> StreamPart:
    """The blocks of consecutive token-id requests, as :func:`text_stream_part`."""
    builder = _StreamBuilder(block_size)
    for ids, session, ts in requests:
        builder.add(ids, session, ts)
    return builder.part()
