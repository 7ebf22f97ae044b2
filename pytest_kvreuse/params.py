"""AnalysisParams: every analysis parameter, declared once.

One :class:`Param` per parameter gives its default, its validation, its help text and its
command-line flag; ``analyze()``, the CLI, manifest keys and marker keywords all map onto
:class:`AnalysisParams`, and :meth:`AnalysisParams.key` is the one memo key of an analysis.
No numpy here: manifests are validated at collection, in every pytest run.
"""

from __future__ import annotations

import functools
import json
import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace

from .errors import KvReuseError
from .loaders.registry import FORMAT_NAMES, HASH_ID_FORMATS
from .models import KV_DTYPES, KvGeometry, catalog_id, model_tokenizer, resolve_geometry
from .sizes import SizeError, needs_model, parse_size, resolve_size

DEFAULT_TOKENIZER = "deepseek-v3"
PROMPT_MODES = ("raw", "chat", "per-message")
#: Whose LRU figures: the clean model (docs/definitions.md) or vLLM v1's prefix cache.
ENGINES = ("ideal", "vllm")
#: What the LRU fractions divide: full-block tokens, all prompt tokens (partial tails
#: included, as vLLM counts), or each request's own prompt (the mean of per-request ratios).
DENOMINATORS = ("blocks", "prompt", "per-request")


class ParamError(KvReuseError):
    """An analysis parameter with a value it cannot take (or an unknown parameter)."""


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ParamError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _optional_positive_int(name: str, value: object) -> int | None:
    return None if value is None else _positive_int(name, value)


def _choice(choices: tuple[str, ...]) -> Callable[[str, object], str]:
    def check(name: str, value: object) -> str:
        if value not in choices:
            raise ParamError(f"unknown {name} {value!r} (known: {', '.join(choices)})")
        return value  # type: ignore[return-value]
    return check


def _name(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ParamError(f"{name} must be a non-empty name, got {value!r}")
    return value


def _optional_name(name: str, value: object) -> str | None:
    return None if value is None else _name(name, value)


def _optional_rate(name: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or math.isnan(value) or not 0.0 < float(value) <= 1.0:
        raise ParamError(f"{name} must be a sampling rate in (0, 1], got {value!r}")
    return float(value)


def _fraction(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not 0.0 <= float(value) < 1.0 or math.isnan(value):
        raise ParamError(f"{name} must be a fraction in [0, 1) of the requests, got "
                         f"{value!r}")
    return float(value)


@dataclass(frozen=True)
class Param:
    """One analysis parameter: its default, how it is checked, shown and given on the
    command line. Declared once, as the metadata of an :class:`AnalysisParams` field."""

    name: str
    default: object
    check: Callable[[str, object], object]
    help: str
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    aliases: tuple[str, ...] = ()
    # Only text traces are tokenized: for hash-id traces the parameter changes nothing.
    text_only: bool = False
    # The type a flag's text is read as, where the default (None) does not tell.
    kind: type | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def validate(self, value: object, label: str | None = None) -> object:
        """The value, checked; ``label`` names the parameter in the message as the user
        wrote it (default: in words, ``block size``)."""
        return self.check(label or self.name.replace("_", " "), value)


def _param(default: object, check: Callable[[str, object], object], help: str,
           **info: object) -> object:
    return field(default=default, metadata={"param": (check, help, info)})


@dataclass(frozen=True)
class AnalysisParams:
    """The parameters of one analysis; every field is validated on construction.

    Definitions: ``docs/definitions.md``.
    """

    block_size: int = _param(64, _positive_int, "KV block size in tokens (default: 64)",
                             metavar="N")
    format: str = _param("auto", _choice(("auto", *FORMAT_NAMES)),
                         "trace format (default: detected from the content)",
                         choices=("auto", *FORMAT_NAMES))
    hash_block_size: int | None = _param(
        None, _optional_positive_int,
        "native block of hash-id traces (default: Mooncake and aiperf mooncake_trace 512, "
        "Bailian 16, Weka the file's block_size)", metavar="N")
    model: str | None = _param(
        None, _optional_name,
        "the served model: a catalog id (deepseek-v3, llama-3.1-70b, qwen3-32b, ...; "
        "docs/models.md), a Hugging Face id, or a model directory; gives the tokenizer of "
        "text traces and the KV bytes per token that sizes in bytes (64GiB) need",
        metavar="NAME", aliases=("--model-name",), kind=str)
    kv_dtype: str = _param("bf16", _choice(KV_DTYPES),
                           "KV cache dtype for sizes in bytes (default: bf16)",
                           choices=KV_DTYPES)
    tp: int = _param(1, _positive_int,
                     "tensor-parallel degree: sizes in bytes are per GPU (default: 1)",
                     metavar="N")
    model_config: str | None = _param(
        None, _optional_name,
        "the model's config.json (or its directory) for a model the catalog does not hold",
        metavar="PATH", kind=str)
    tokenizer: str | None = _param(
        None, _optional_name,
        "tokenizer for text traces (default: the --model's, else 'deepseek-v3', built in): "
        "'deepseek-v3', a local directory, or a Hugging Face name already in the local "
        "cache", metavar="NAME", text_only=True, kind=str)
    prompt: str = _param(
        "raw", _choice(PROMPT_MODES),
        "how a text request becomes a prompt: 'raw' message contents (default), 'chat' (the "
        "tokenizer's chat template), 'per-message' (every message its own request, as the "
        "original script)", choices=PROMPT_MODES, text_only=True)
    warmup: float = _param(
        0.0, _fraction,
        "steady state: the first F of the requests (a fraction in [0, 1)) fill the cache "
        "but are not counted (default: 0)", metavar="F")
    engine: str = _param(
        "ideal", _choice(ENGINES),
        "whose LRU figures (hit, offloadable, tiers, curve): 'ideal', the clean prefix-aware "
        "LRU (default), or 'vllm', vLLM v1's prefix cache block for block (docs/vllm.md)",
        choices=ENGINES)
    denominator: str = _param(
        "blocks", _choice(DENOMINATORS),
        "what the LRU fractions (and the checks on them) divide: 'blocks', the full-block "
        "tokens (default); 'prompt', all prompt tokens, partial tails included (as vLLM "
        "counts); 'per-request', the mean of per-request ratios (as aiperf)",
        choices=DENOMINATORS)
    sample: float | None = _param(
        None, _optional_rate,
        "sampled analysis (SHARDS): keep the blocks of the keys whose fixed hash falls "
        "below rate R in (0, 1]; figures are estimates with their error (default: exact)",
        metavar="R", kind=float)
    sample_keys: int | None = _param(
        None, _optional_positive_int,
        "sampled analysis in bounded memory: at most N keys kept, the rate lowered as "
        "keys arrive (with --sample: starting from that rate)", metavar="N")

    def __post_init__(self) -> None:
        for p in PARAMS:
            object.__setattr__(self, p.name, p.validate(getattr(self, p.name)))

    @classmethod
    def from_mapping(cls, values: Mapping[str, object], *, where: str = "") -> AnalysisParams:
        """From ``{name: value}`` (a manifest table, marker keywords, ``analyze()``'s
        keywords); an unknown name is refused, naming the known ones. ``None`` values
        mean the default."""
        for key in values:
            if key not in PARAM_BY_NAME:
                at = f" of {where}" if where else ""
                raise ParamError(f"unknown argument {key!r}{at} (analysis parameters: "
                                 f"{', '.join(PARAM_NAMES)})")
        return cls(**{k: v for k, v in values.items() if v is not None})

    @property
    def sampled(self) -> bool:
        """A sampled analysis (docs/sampling.md): ``sample`` or ``sample_keys`` set."""
        return self.sample is not None or self.sample_keys is not None

    def with_values(self, **values: object) -> AnalysisParams:
        return replace(self, **values)

    def to_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def effective(self, detected_format: str | None = None) -> AnalysisParams:
        """The parameters that can change the result, given the trace's format: a hash-id
        trace is never tokenized, so its tokenizer and prompt are the defaults whatever
        was written (one analysis, not two identical ones)."""
        fmt = self.format if self.format != "auto" else detected_format
        # One model under two names (its catalog id, its Hugging Face id) is one analysis.
        model = catalog_id(self.model) or self.model if self.model is not None else None
        if fmt in HASH_ID_FORMATS:
            return replace(self, model=model,
                           **{p.name: p.default for p in PARAMS if p.text_only})
        return replace(self, tokenizer=self.tokenizer_name, model=model)

    @property
    def tokenizer_name(self) -> str:
        """The tokenizer text traces are read with: ``tokenizer``, else the model's."""
        return self.tokenizer or model_tokenizer(self.model) or DEFAULT_TOKENIZER

    @property
    def has_model(self) -> bool:
        return self.model is not None or self.model_config is not None

    def kv_geometry(self) -> KvGeometry | None:
        """The model's KV bytes at ``kv_dtype`` and ``tp``; None when no model is named, or
        the name is not one whose config is known (it may name a tokenizer only)."""
        if not self.has_model:
            return None
        return _geometry(self.model, self.kv_dtype, self.tp, self.model_config)

    def size_tokens(self, name: str, value: object) -> int:
        """A cache size as the user wrote it (``345,792``, ``64GiB``) in tokens: bytes hold
        ``floor(bytes / (bytes_per_token * block_size))`` blocks of this model."""
        size = parse_size(name, value)
        if isinstance(size, int):
            return size
        if not self.has_model:
            raise needs_model(name, size)
        geometry = self.kv_geometry()
        if geometry is None:
            raise SizeError(f"{name!r} = {size.text!r} is a size in bytes, but the KV geometry "
                            f"of model {self.model!r} is unknown (not in the catalog, no "
                            "config.json in the Hugging Face cache): give model_config "
                            "(--model-config PATH) or the size in tokens")
        return resolve_size(name, size, geometry.bytes_per_token, self.block_size)

    def key(self, detected_format: str | None = None) -> str:
        """Canonical memo key: equal for parameter sets that give the same analysis."""
        return json.dumps(self.effective(detected_format).to_dict(), sort_keys=True)

    def stream_key(self, detected_format: str | None = None) -> str:
        """What decides the block stream and its figures: :meth:`key` less the served
        model's parameters, which change only what a size is in bytes."""
        values = self.effective(detected_format).to_dict()
        return json.dumps({k: v for k, v in values.items() if k not in MODEL_PARAMS},
                          sort_keys=True)

    def describe(self, detected_format: str | None = None) -> str:
        """``block size 64, tokenizer deepseek-v3`` for messages (hash ids: no tokenizer)."""
        fmt = self.format if self.format != "auto" else detected_format
        tok = "none (hash ids)" if fmt in HASH_ID_FORMATS else self.tokenizer_name
        parts = [f"block size {self.block_size}", f"tokenizer {tok}"]
        if self.has_model:
            parts.append(f"model {self.model or self.model_config}")
        if self.warmup:
            parts.append(f"warm-up {self.warmup:g}")
        for p in PARAMS:
            if p.name in ("engine", "denominator") and getattr(self, p.name) != p.default:
                parts.append(f"{p.name} {getattr(self, p.name)}")
        if self.sampled:
            parts.append("sampled" + (f" at rate {self.sample:g}" if self.sample else "")
                         + (f", at most {self.sample_keys:,} keys"
                            if self.sample_keys else ""))
        return ", ".join(parts)


@functools.lru_cache(maxsize=64)
def _geometry(model: str | None, dtype: str, tp: int,
              config: str | None) -> KvGeometry | None:
    # Memoized: every byte size of a manifest asks again, and a config may be a file read.
    try:
        return resolve_geometry(model, dtype, tp, config)
    except KvReuseError as exc:
        raise ParamError(exc.one_line()) from None


# The served model's parameters: they change the bytes a size in tokens is, never the
# figures themselves.
MODEL_PARAMS = ("model", "kv_dtype", "tp", "model_config")

PARAMS: tuple[Param, ...] = tuple(
    Param(f.name, f.default, f.metadata["param"][0], f.metadata["param"][1],
          **f.metadata["param"][2])
    for f in fields(AnalysisParams))
PARAM_BY_NAME: dict[str, Param] = {p.name: p for p in PARAMS}
PARAM_NAMES: tuple[str, ...] = tuple(PARAM_BY_NAME)


def with_defaults(saved: Mapping[str, object]) -> dict[str, object]:
    """Parameters as a saved result recorded them, with the defaults of those it predates:
    a result written before a parameter existed ran with its default (``engine`` ideal)."""
    return {**{p.name: p.default for p in PARAMS}, **saved}
