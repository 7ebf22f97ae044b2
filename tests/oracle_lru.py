"""Obviously-right references for the LRU analysis: a literal OrderedDict replay of an
exclusive two-tier LRU cache, a naive stack distance and naive reuse intervals."""

from __future__ import annotations

from collections import Counter, OrderedDict

import numpy as np

from pytest_kvreuse.core.blocks import BlockStream


def make_stream(requests: list[list[int]], sessions: list[int] | None = None,
                block_size: int = 4) -> BlockStream:
    """A BlockStream whose request ``r`` holds the blocks keyed ``requests[r]``."""
    keys = [k for req in requests for k in req]
    owner = [r for r, req in enumerate(requests) for _ in req]
    if sessions is None:
        sessions = [-1] * len(requests)
    return BlockStream(
        keys=np.asarray(keys, dtype=np.int64),
        request=np.asarray(owner, dtype=np.int64),
        block_size=block_size,
        prompt_tokens=np.asarray([len(r) * block_size for r in requests], dtype=np.int64),
        timestamps=np.full(len(requests), np.nan),
        sessions=np.asarray(sessions, dtype=np.int64),
    )


def touches(requests: list[list[int]]) -> list[tuple[int, int]]:
    """(request, key) in touch order: request after request, each one tail first."""
    return [(r, k) for r, req in enumerate(requests) for k in reversed(req)]


def replay(requests: list[list[int]], sessions: list[int], gpu_blocks: int,
           lower_blocks: int | None = None, warmup_requests: int = 0) -> Counter:
    """Count the counted touches by outcome: ``hit`` (GPU), ``lower`` (served by the lower
    tier), ``beyond`` (seen before, in neither tier), ``compulsory`` (first touch); and
    ``(outcome, "same"|"cross")`` by the session of the key's previous toucher."""
    gpu: OrderedDict = OrderedDict()
    lower: OrderedDict = OrderedDict()
    last_session: dict[int, int] = {}
    out: Counter = Counter()

    def admit(key: int) -> None:
        gpu[key] = None
        if len(gpu) > gpu_blocks:
            old, _ = gpu.popitem(last=False)
            if lower_blocks:
                lower[old] = None
                if len(lower) > lower_blocks:
                    lower.popitem(last=False)

    for r, key in touches(requests):
        session = sessions[r]
        if key in gpu:
            kind = "hit"
            gpu.move_to_end(key)
        elif key in lower:
            kind = "lower"
            del lower[key]
            admit(key)
        elif key in last_session:
            kind = "beyond"
            admit(key)
        else:
            kind = "compulsory"
            admit(key)
        if r >= warmup_requests:
            out[kind] += 1
            if kind != "compulsory":
                same = last_session[key] == session and session >= 0
                out[(kind, "same" if same else "cross")] += 1
        last_session[key] = session
    return out


def naive_stack_distances(keys: list[int]) -> list[int | None]:
    """Distinct keys touched since the previous touch of the same key (None: first touch)."""
    out: list[int | None] = []
    for t, key in enumerate(keys):
        before = [j for j in range(t) if keys[j] == key]
        out.append(None if not before else len(set(keys[before[-1] + 1:t])))
    return out


def naive_intervals(requests: list[list[int]], block_size: int,
                    warmup_requests: int = 0) -> list[int]:
    """Reuse intervals (analysis.md section 2) whose second occurrence is counted."""
    stream = [(r, k) for r, req in enumerate(requests) for k in req]
    last: dict[int, int] = {}
    out = []
    for i, (r, key) in enumerate(stream):
        if key in last:
            j = last[key]
            if stream[j][0] != r and r >= warmup_requests:
                out.append((i - j - 1) * block_size)
        last[key] = i
    return sorted(out)
