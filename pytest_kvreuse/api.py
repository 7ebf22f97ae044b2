"""``analyze()``: from a trace file to its ReuseAnalysis (loaders, then the core)."""

from __future__ import annotations

import os
import time

from . import cluster
from .core.analysis import ReuseAnalysis, warmup_requests
from .core.lru import counted_from_block
from .loaders.partitions import check_jobs
from .loaders.registry import HASH_ID_FORMATS
from .loaders.source import open_source
from .loaders.stream import load_block_stream
from .params import PARAMS, AnalysisParams, ParamError


def analyze(path: str | os.PathLike[str], params: AnalysisParams | None = None, *,
            cache_dir: str | os.PathLike[str] | None = None, use_cache: bool = True,
            progress: bool | None = None, known_sha256: str | None = None,
            jobs: int = 1, dask: object = None, **values: object) -> ReuseAnalysis:
    """Load the trace at ``path`` and compute its reuse figures.

    The analysis parameters are an :class:`~pytest_kvreuse.AnalysisParams`, or its fields
    as keywords (``block_size=64, tokenizer="deepseek-v3", prompt="raw", warmup=0.1``, ...;
    keywords given with ``params`` override it). Text traces are tokenized offline; the
    tokenized stream is cached under ``cache_dir`` (default: the user cache directory)
    unless ``use_cache`` is false. ``progress``: True/False, or None for a bar only on a
    terminal outside CI. ``known_sha256``: the file's sha256 when the caller has it already
    (saves the cache key a read of the file).

    ``path`` may be a pipe (``/dev/stdin``, ``<(zcat t.jsonl.gz)``): it is read once; the
    result's ``content_sha256`` is then the sha256 of the bytes read (None when a regular
    file's hash was not needed).

    ``warmup``: fraction of the requests (the first ``floor(warmup * n)``) that fill the
    cache but are not counted; fractions are then shares of the counted requests' tokens
    (see :class:`ReuseAnalysis`). Default 0: the whole trace.

    ``jobs``: tokenize a text trace in that many processes (the same figures).
    ``dask``: a Dask scheduler address (``"tcp://scheduler:8786"``) or a
    ``distributed.Client``; None reads ``$KVREUSE_DASK`` (unset: no cluster). The trace
    is then tokenized and its reuse intervals sorted on the cluster, with the same figures
    (docs/dask.md; the extra ``[dask]``).
    """
    # Every parameter is checked before a pipe is drained into a spool.
    try:
        if params is None:
            params = AnalysisParams.from_mapping(values, where="analyze()")
        elif values:
            params = AnalysisParams.from_mapping({**params.to_dict(), **values},
                                                 where="analyze()")
    except ParamError as exc:
        raise ParamError(exc.message, path=path) from None
    check_jobs(jobs)
    dask = cluster.resolve(dask)
    if dask is not None:
        with cluster.session(dask) as client:
            return _analyze(path, params, client, cache_dir=cache_dir, use_cache=use_cache,
                            progress=progress, known_sha256=known_sha256, jobs=jobs)
    return _analyze(path, params, None, cache_dir=cache_dir, use_cache=use_cache,
                    progress=progress, known_sha256=known_sha256, jobs=jobs)


def _analyze(path: str | os.PathLike[str], params: AnalysisParams, client: object, *,
             jobs: int, known_sha256: str | None, **options: object) -> ReuseAnalysis:
    start = time.perf_counter()
    mapper = None
    if client is not None:
        # A few partitions for every worker thread, tokenized there.
        mapper, jobs = cluster.ClusterMapper(client), cluster.worker_count(client)
    # One source for detection, parse and hash: a pipe is read once, into a temporary file.
    with open_source(path, known_sha256=known_sha256) as source:
        stream = load_block_stream(source, block_size=params.block_size,
                                   format=params.format,
                                   hash_block_size=params.hash_block_size,
                                   tokenizer=params.tokenizer, prompt=params.prompt,
                                   jobs=jobs, mapper=mapper, **options)
    timings = {"load_s": time.perf_counter() - start}
    reuse = None
    if client is not None:
        start = time.perf_counter()
        counted_from = counted_from_block(
            stream, warmup_requests(params.warmup, stream.num_requests))
        keys, sizes = cluster.keys_on_cluster(client, stream, mapper)
        reuse = cluster.distributed_reuse(client, stream, keys, sizes, counted_from)
        timings["cluster_intervals_s"] = time.perf_counter() - start
    analysis = ReuseAnalysis(stream, params=resolved_params(params, stream.meta, path),
                             timings=timings, warmup=params.warmup, reuse=reuse)
    if client is not None:
        analysis.cluster = cluster.cluster_info(client)
    # The hash of the bytes analysed when it was computed (always for a pipe, whose
    # bytes cannot be read again); None for a regular file nobody hashed.
    analysis.content_sha256 = source.known_sha256
    return analysis


def resolved_params(params: AnalysisParams, meta: dict, path: str | os.PathLike[str]) -> dict:
    """What an analysis ran with, as results show it: the detected format and native hash
    block in place of 'auto' and None; no tokenizer or prompt for hash-id traces."""
    out = {"path": os.fspath(path), **params.effective(meta.get("format")).to_dict(), **meta}
    if out.get("format") in HASH_ID_FORMATS:
        out.update({p.name: None for p in PARAMS if p.text_only})
    return out
