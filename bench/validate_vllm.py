"""Replay a trace through vLLM's own KVCacheManager and print its counts beside ours.

    /work/vllmvenv/bin/python bench/validate_vllm.py TRACE [--sizes 345792,1000000,...]

Needs ``vllm`` importable (its own virtualenv: docs/vllm.md says how it was installed);
never a test dependency, never run in CI. Nothing here needs a GPU: the manager's
``get_computed_blocks``, ``allocate_slots`` and ``free`` are plain Python over block ids.

For every cache size ``C`` (tokens, as vLLM prints "GPU KV cache size"), a fresh manager
of ``C // B`` blocks (one of them the null block) replays the requests one at a time: look
the prefix up, allocate the prompt's slots, free the request. Block ``j`` of a request
becomes ``B`` token ids whose first is its kvreuse key, so vLLM's chained block hashes are
equal exactly where the keys are (a key names the whole prefix); a partial tail is padding
that vLLM never hashes. vLLM's counts (hit tokens, prompt tokens from its
``PrefixCacheStats``) are printed beside kvreuse's ``engine="vllm"`` figures.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_kvreuse import analyze  # noqa: E402

SIZES = (345_792, 1_000_000, 4_000_000, 16_000_000)


def vllm_counts(stream, cache_tokens: int) -> tuple[int, int, int]:
    """``(hit tokens, prompt tokens, requests)`` as vLLM's PrefixCacheStats counts them."""
    import torch
    from vllm.sampling_params import SamplingParams
    from vllm.utils.hashing import sha256
    from vllm.v1.core.kv_cache_manager import KVCacheManager
    from vllm.v1.core.kv_cache_utils import get_request_block_hasher, init_none_hash
    from vllm.v1.kv_cache_interface import FullAttentionSpec, KVCacheConfig, KVCacheGroupSpec
    from vllm.v1.request import Request

    b = stream.block_size
    starts = stream.request_starts
    prompts = [int(x) for x in stream.prompt_tokens]
    longest = -(-max(prompts) // b) * b
    spec = FullAttentionSpec(block_size=b, num_kv_heads=1, head_size=1, dtype=torch.float16)
    config = KVCacheConfig(num_blocks=cache_tokens // b, kv_cache_tensors=[],
                           kv_cache_groups=[KVCacheGroupSpec(["layer"], spec)])
    manager = KVCacheManager(config, max_model_len=longest, scheduler_block_size=b,
                             hash_block_size=b, enable_caching=True, log_stats=True)
    init_none_hash(sha256)
    hasher = get_request_block_hasher(b, sha256)
    keys = stream.keys.tolist()
    for r, length in enumerate(prompts):
        tokens = []
        for key in keys[starts[r]:starts[r + 1]]:
            tokens += [int(key)] + [0] * (b - 1)
        tokens += [0] * (length - len(tokens))
        request = Request(f"r{r}", tokens, SamplingParams(max_tokens=1), None,
                          block_hasher=hasher)
        blocks, hit, _ = manager.get_computed_blocks(request)
        manager.record_prefix_cache_stats(request, hit)
        if manager.allocate_slots(request, length - hit, hit, blocks) is None:
            raise SystemExit(f"request {r} ({length} tokens) does not fit {cache_tokens} "
                             f"tokens: vLLM would not run it")
        manager.free(request)
    stats = manager.make_prefix_cache_stats()
    return stats.hits, stats.queries, stats.requests


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trace")
    parser.add_argument("--block-size", type=int, default=64)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)),
                        help="cache sizes in tokens, comma-separated")
    args = parser.parse_args(argv)
    import vllm
    import vllm.v1.core.kv_cache_manager  # noqa: F401  (its import is not the replay's time)

    a = analyze(args.trace, block_size=args.block_size, engine="vllm")
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"trace {Path(args.trace).name}: {a.num_requests:,} requests, {a.num_blocks:,} "
          f"blocks, {a.prompt_tokens:,} prompt tokens, B = {a.block_size}; "
          f"vllm {vllm.__version__}")
    print(f"{'cache size':>12} | {'vLLM hit tokens':>16} {'kvreuse':>12} | "
          f"{'vLLM prompt tokens':>18} {'kvreuse':>12} | {'vLLM hit rate':>13} "
          f"{'kvreuse':>9} | {'ideal LRU':>9} | same | vLLM s")
    ideal = analyze(args.trace, block_size=args.block_size)
    ok = True
    longest = int(a.stream.prompt_tokens.max()) if a.num_requests else 0
    for size in sizes:
        if size // a.block_size < -(-longest // a.block_size) + 1:
            print(f"{size:>12,} | vLLM does not start: its {longest:,}-token request needs "
                  f"more blocks (and the null block)")
            continue
        start = time.perf_counter()
        hits, queries, _ = vllm_counts(a.stream, size)
        took = time.perf_counter() - start
        ours = a.lru_hit_tokens(size)
        same = hits == ours and queries == a.prompt_tokens
        ok &= same
        print(f"{size:>12,} | {hits:>16,} {ours:>12,} | {queries:>18,} {a.prompt_tokens:>12,}"
              f" | {hits / queries:>12.4%} {ours / a.prompt_tokens:>9.4%} | "
              f"{ideal.lru_hit_tokens(size) / a.prompt_tokens:>9.4%} | "
              f"{'yes' if same else 'NO':>4} | {took:6.1f}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
