"""``@pytest.mark.kvreuse(path, **params)``: the trace, its analysis parameters and the
bounds it sets. Reads a marker's args and kwargs only (no pytest import)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..checks import Check, CheckError
from ..errors import KvReuseError
from ..metrics import METRICS
from ..params import AnalysisParams

# keyword -> (metric, bound): figures read at the marker's gpu_cache_tokens.
MARKER_BOUNDS = {
    "min_offloadable": ("offloadable_fraction", "min"),
    "max_offloadable": ("offloadable_fraction", "max"),
    "min_lru_hit": ("lru_hit_fraction", "min"),
    "max_lru_hit": ("lru_hit_fraction", "max"),
    "min_lru_offloadable": ("lru_offloadable_fraction", "min"),
    "max_lru_offloadable": ("lru_offloadable_fraction", "max"),
}


def _bound(key: str) -> tuple[str, str] | None:
    """``(metric, "min" | "max")`` of a bound keyword: the short names above, or
    ``min_<metric>`` / ``max_<metric>`` for any metric of the registry read without
    arguments or at ``gpu_cache_tokens`` alone (``max_reuse_time_p90``,
    ``min_opt_hit_fraction``)."""
    if key in MARKER_BOUNDS:
        return MARKER_BOUNDS[key]
    side, _, name = key.partition("_")
    m = METRICS.get(name)
    if side in ("min", "max") and m is not None and (not m.args or m.sized):
        return name, side
    return None


@dataclass(frozen=True)
class MarkerSpec:
    path: Path
    params: AnalysisParams
    gpu_cache_tokens: int | None
    checks: tuple[Check, ...]


def check_params(params: dict, where: str) -> AnalysisParams:
    """The analysis parameters of ``where``: unknown names and bad values are refused there,
    naming the known parameters."""
    try:
        return AnalysisParams.from_mapping(params, where=where)
    except KvReuseError as exc:
        raise CheckError(f"{where}: {exc.message}" if where not in exc.message
                         else exc.message) from None


def marker_spec(args: tuple, kwargs: dict, base_dir: Path) -> MarkerSpec:
    """What ``@pytest.mark.kvreuse(*args, **kwargs)`` asks for; paths relative to base_dir."""
    where = "@pytest.mark.kvreuse"
    kwargs = dict(kwargs)
    if len(args) > 1:
        raise CheckError(f"{where} takes one trace path, got {len(args)} arguments")
    path = args[0] if args else kwargs.pop("path", None)
    if not isinstance(path, (str, os.PathLike)):
        raise CheckError(f"{where} needs the trace path: "
                         "@pytest.mark.kvreuse('traces/chat.jsonl', ...)")
    path = Path(path)
    if not path.is_absolute():
        path = base_dir / path
    gpu = kwargs.pop("gpu_cache_tokens", None)
    if gpu is not None and not isinstance(gpu, str) and (
            isinstance(gpu, bool) or not isinstance(gpu, int) or gpu <= 0):
        raise CheckError(f"gpu_cache_tokens of {where} must be a positive integer, got "
                         f"{gpu!r}")
    bounds: dict[str, dict[str, float]] = {}
    for key in list(kwargs):
        bound = _bound(key)
        if bound is not None:
            metric, side = bound
            value = kwargs.pop(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise CheckError(f"{key} of {where} must be a number, got {value!r}")
            bounds.setdefault(metric, {})[side] = value
    sized = sorted(m for m in bounds if METRICS[m].args)
    if sized and gpu is None:
        raise CheckError(f"{', '.join(sized)} bounds of {where} need "
                         "gpu_cache_tokens (the cache size they are read at)")
    params = check_params(kwargs, where)
    if gpu is not None:
        # "64GiB" needs the model named beside it: bytes become tokens here, once.
        try:
            gpu = params.size_tokens("gpu_cache_tokens", gpu)
        except KvReuseError as exc:
            raise CheckError(f"{where}: {exc.message}") from None
    try:
        checks = tuple(Check(metric, gpu if METRICS[metric].args else None, b.get("min"),
                             b.get("max")).validate()
                       for metric, b in bounds.items())
    except KvReuseError as exc:
        raise CheckError(f"{where}: {exc.message}") from None
    return MarkerSpec(path=path, params=params, gpu_cache_tokens=gpu, checks=checks)
