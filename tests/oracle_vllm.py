"""An obviously-right reference for ``engine="vllm"``: vLLM v1's block pool, literally.

A doubly linked free-block queue as vLLM's BlockPool keeps it: block 0 is the null block
and never queued; a request looks its prefix up by chained key (at most ``L - 1`` tokens)
before it allocates anything, and a hit block that sits in the queue is taken out of it
(pinned); new blocks come off the front, and a cached one that is taken loses its key;
the full new blocks get their keys; on free the blocks go back in reverse order, those
with a key to the end of the queue, the one without (the partial tail) to its front.
"""

from __future__ import annotations


class _Block:
    __slots__ = ("id", "key", "ref", "prev", "next")

    def __init__(self, block_id: int) -> None:
        self.id = block_id
        self.key: int | None = None
        self.ref = 0
        self.prev: _Block | None = None
        self.next: _Block | None = None


class _FreeQueue:
    """Doubly linked list between two sentinels: front evicted first."""

    def __init__(self, blocks: list[_Block]) -> None:
        self.head, self.tail = _Block(-1), _Block(-2)
        self.head.next, self.tail.prev = self.tail, self.head
        self.size = 0
        for b in blocks:
            self.append(b)

    def _insert_after(self, where: _Block, b: _Block) -> None:
        b.prev, b.next = where, where.next
        where.next.prev = b
        where.next = b
        self.size += 1

    def append(self, b: _Block) -> None:
        self._insert_after(self.tail.prev, b)

    def prepend(self, b: _Block) -> None:
        self._insert_after(self.head, b)

    def remove(self, b: _Block) -> None:
        b.prev.next, b.next.prev = b.next, b.prev
        b.prev = b.next = None
        self.size -= 1

    def popleft(self) -> _Block:
        b = self.head.next
        assert b is not self.tail, "no free block"
        self.remove(b)
        return b


def vllm_replay(requests: list[tuple[int, list[int]]], block_size: int,
                num_blocks: int, *, newest_duplicate: bool = False,
                duplicate_hits: list[int] | None = None) -> list[int]:
    """Hit blocks of every request ``(prompt tokens, keys of its full blocks)`` replayed one
    at a time through a pool of ``num_blocks`` blocks (vLLM's ``C // B``).

    A key cached in two blocks (a recomputed last block) is looked up in the one cached
    first, as vLLM does; ``newest_duplicate`` takes the other (the engine's model).
    ``duplicate_hits`` collects the requests that hit a key cached in two blocks.
    """
    blocks = [_Block(i) for i in range(num_blocks)]
    queue = _FreeQueue(blocks[1:])  # block 0: the null block
    cached: dict[int, list[_Block]] = {}
    out = []
    for length, keys in requests:
        limit = min((length - 1) // block_size, len(keys)) if length else 0
        hits: list[_Block] = []
        for key in keys[:limit]:
            found = cached.get(key)
            if not found:
                break
            hits.append(found[-1] if newest_duplicate else found[0])
            if len(found) > 1 and duplicate_hits is not None:
                duplicate_hits.append(len(out))
        for b in hits:
            if b.ref == 0:
                queue.remove(b)
            b.ref += 1
        need = -(-length // block_size) - len(hits)
        assert need <= queue.size, "the request does not fit the cache"
        new = [queue.popleft() for _ in range(need)]
        for b in new:
            if b.key is not None:
                cached[b.key].remove(b)
                if not cached[b.key]:
                    del cached[b.key]
                b.key = None
            b.ref = 1
        mine = hits + new
        for j in range(len(hits), len(keys)):
            mine[j].key = keys[j]
            cached.setdefault(keys[j], []).append(mine[j])
        first, last = [], []
        for b in reversed(mine):
            b.ref -= 1
            if b.ref == 0:
                (last if b.key is not None else first).append(b)
        for b in reversed(first):
            queue.prepend(b)
        for b in last:
            queue.append(b)
        out.append(len(hits))
    return out
