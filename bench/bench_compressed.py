"""Reading a compressed trace against the plain file, in the same run.

    python bench/bench_compressed.py                 # a synthetic Mooncake trace
    python bench/bench_compressed.py --trace PATH    # any plain JSONL trace

Writes the trace gzip-, xz-, bz2- and (with ``zstandard``) zstd-compressed, then prints,
for each and for the plain file (the baseline): the stream load and the content hash (best
of --repeat), their ratio to the plain file's, and checks that every copy gives the plain
file's content hash and block keys. No goal beyond the baseline: decompression is
streamed, so a compressed trace costs its codec's decoding on top of the plain read.
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import lzma
import tempfile
import time
from pathlib import Path

import numpy as np

from pytest_kvreuse.loaders.fingerprint import content_sha256
from pytest_kvreuse.loaders.stream import load_block_stream
from pytest_kvreuse.synthetic import Workload, generate, write_mooncake


def best(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trace", type=Path)
    parser.add_argument("--sessions", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "trace.jsonl"
        if args.trace:
            plain.write_bytes(args.trace.read_bytes())
        else:
            write_mooncake(generate(Workload(sessions=args.sessions, seed=1)), plain)
        data = plain.read_bytes()
        copies = {"plain": plain}
        codecs = {"gz": lambda b: gzip.compress(b, 6), "xz": lambda b: lzma.compress(b),
                  "bz2": bz2.compress}
        try:
            import zstandard

            codecs["zst"] = lambda b: zstandard.ZstdCompressor(level=3).compress(b)
        except ImportError:
            print("zstandard not installed: zstd left out")
        for ext, compress in codecs.items():
            copies[ext] = Path(tmp) / f"trace.jsonl.{ext}"
            copies[ext].write_bytes(compress(data))
        print(f"trace: {len(data):,} bytes")
        base_load = base_hash = None
        ref_keys = ref_sha = None
        for name, path in copies.items():
            load_s, stream = best(lambda p=path: load_block_stream(p), args.repeat)
            hash_s, sha = best(lambda p=path: content_sha256(p), args.repeat)
            if base_load is None:
                base_load, base_hash, ref_keys, ref_sha = load_s, hash_s, stream.keys, sha
            assert sha == ref_sha, name
            assert np.array_equal(stream.keys, ref_keys), name
            print(f"{name:>5}: {path.stat().st_size:>12,} bytes  load {load_s:6.2f} s "
                  f"(x{load_s / base_load:.2f})  hash {hash_s:6.2f} s "
                  f"(x{hash_s / base_hash:.2f})")


if __name__ == "__main__":
    main()
