"""``analyze()``: from a trace file to its ReuseAnalysis (loaders, then the core)."""

from __future__ import annotations

import copy
import os
import time

from . import cluster
from .core.analysis import ReuseAnalysis, warmup_requests
from .core.lru import counted_from_block
from .loaders.partitions import check_jobs
from .loaders.registry import HASH_ID_FORMATS
from .loaders.source import open_source
from .loaders.stream import load_block_stream
from .models import KvGeometry
from .params import MODEL_PARAMS, PARAMS, AnalysisParams, ParamError


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

    ``engine``: ``"ideal"`` (default) or ``"vllm"``, the LRU figures as vLLM v1's prefix
    cache produces them (docs/vllm.md). ``denominator``: what the LRU fractions divide,
    ``"blocks"`` (default), ``"prompt"`` or ``"per-request"`` (docs/definitions.md).
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
    # The model's geometry before a pipe is drained too: a config lacking a field is said
    # before the trace is read.
    geometry = params.kv_geometry()
    check_jobs(jobs)
    if params.sampled:
        if dask not in (None, ""):
            raise ParamError("a sampled analysis runs in one process: it takes no Dask "
                             "cluster (the cluster's own analysis is exact)", path=path)
        return _analyze_sampled(path, params, geometry, cache_dir=cache_dir,
                                use_cache=use_cache, progress=progress,
                                known_sha256=known_sha256)
    dask = cluster.resolve(dask)
    if dask is not None:
        with cluster.session(dask) as client:
            return _analyze(path, params, geometry, client, cache_dir=cache_dir,
                            use_cache=use_cache, progress=progress,
                            known_sha256=known_sha256, jobs=jobs)
    return _analyze(path, params, geometry, None, cache_dir=cache_dir, use_cache=use_cache,
                    progress=progress, known_sha256=known_sha256, jobs=jobs)


def _analyze(path: str | os.PathLike[str], params: AnalysisParams,
             geometry: KvGeometry | None, client: object, *, jobs: int,
             known_sha256: str | None, **options: object) -> ReuseAnalysis:
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
                                   tokenizer=params.tokenizer_name, prompt=params.prompt,
                                   jobs=jobs, mapper=mapper, **options)
        # A compressed pipe's content hash is over its decompressed bytes: taken from the
        # spool now, while it exists.
        sha = source.sha256() if source.spooled else source.known_sha256
    timings = {"load_s": time.perf_counter() - start}
    reuse = None
    if client is not None:
        start = time.perf_counter()
        counted_from = counted_from_block(
            stream, warmup_requests(params.warmup, stream.num_requests))
        keys, sizes = cluster.keys_on_cluster(client, stream, mapper)
        reuse = cluster.distributed_reuse(client, stream, keys, sizes, counted_from)
        timings["cluster_intervals_s"] = time.perf_counter() - start
    analysis = ReuseAnalysis(stream, params=resolved_params(params, stream.meta, path, geometry),
                             timings=timings, warmup=params.warmup, engine=params.engine,
                             denominator=params.denominator, kv=geometry, reuse=reuse)
    if client is not None:
        analysis.cluster = cluster.cluster_info(client)
    # The hash of the bytes analysed when it was computed (always for a pipe, whose
    # bytes cannot be read again); None for a regular file nobody hashed.
    analysis.content_sha256 = sha
    from .text.prompts import trace_prompts

    # Lazily loads nothing: the tokenizer is loaded (cached per process) on first use.
    analysis.prompts = trace_prompts(path, stream.meta.get("format"), params.tokenizer_name,
                                     params.prompt, stream.prompt_tokens)
    return analysis


def for_model(analysis: ReuseAnalysis, params: AnalysisParams) -> ReuseAnalysis:
    """``analysis`` for another served model (``params``' model, kv_dtype, tp,
    model_config; the rest as ``analysis`` was made): the stream and every figure computed
    so far are shared, only the bytes per token and the parameters shown change."""
    geometry = params.kv_geometry()
    out = copy.copy(analysis)
    out.timings = dict(analysis.timings)
    out.kv = geometry
    out.params = resolved_params(params, analysis.stream.meta, analysis.params["path"],
                                 geometry)
    return out


def _analyze_sampled(path: str | os.PathLike[str], params: AnalysisParams,
                     geometry: KvGeometry | None, *, known_sha256: str | None,
                     **text_options: object) -> ReuseAnalysis:
    """``sample`` / ``sample_keys``: the trace read once, only kept keys' blocks stored
    (docs/sampling.md)."""
    from .core.sampled import SampledAnalysis
    from .loaders.sampled import load_sampled_stream

    if params.engine != "ideal" or params.denominator != "blocks":
        raise ParamError("a sampled analysis (sample, sample_keys) measures the ideal LRU "
                         "over full-block tokens: it takes neither engine nor denominator")
    start = time.perf_counter()
    with open_source(path, known_sha256=known_sha256) as source:
        stream, sample = load_sampled_stream(
            source, block_size=params.block_size, format=params.format,
            hash_block_size=params.hash_block_size, rate=params.sample or 1.0,
            max_keys=params.sample_keys, tokenizer=params.tokenizer_name,
            prompt=params.prompt, **text_options)
    analysis = SampledAnalysis(stream, sample,
                               params=resolved_params(params, stream.meta, path, geometry),
                               timings={"load_s": time.perf_counter() - start},
                               warmup=params.warmup, kv=geometry)
    analysis.content_sha256 = source.known_sha256
    return analysis


def resolved_params(params: AnalysisParams, meta: dict, path: str | os.PathLike[str],
                    geometry: KvGeometry | None = None) -> dict:
    """What an analysis ran with, as results show it: the detected format and native hash
    block in place of 'auto' and None; no tokenizer or prompt for hash-id traces. The model
    parameters only when a model is named (results of runs without one read as before),
    with its KV bytes per token (and per request) when its geometry is known."""
    out = {"path": os.fspath(path), **params.effective(meta.get("format")).to_dict(), **meta}
    if out.get("format") in HASH_ID_FORMATS:
        out.update({p.name: None for p in PARAMS if p.text_only})
    if not params.has_model:
        for name in MODEL_PARAMS:
            out.pop(name, None)
    else:
        if params.model_config is None:
            out.pop("model_config", None)
        if geometry is not None:
            out["kv_bytes_per_token"] = geometry.bytes_per_token
            if geometry.bytes_per_request:
                out["kv_bytes_per_request"] = geometry.bytes_per_request
    return out
