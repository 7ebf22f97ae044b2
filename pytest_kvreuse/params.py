"""AnalysisParams: every analysis parameter, declared once.

One :class:`Param` per parameter gives its default, its validation, its help text and its
command-line flag; ``analyze()``, the CLI, manifest keys and marker keywords all map onto
:class:`AnalysisParams`, and :meth:`AnalysisParams.key` is the one memo key of an analysis.
No numpy here: manifests are validated at collection, in every pytest run.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace

from .errors import KvReuseError
from .loaders.registry import FORMAT_NAMES, HASH_ID_FORMATS

DEFAULT_TOKENIZER = "deepseek-v3"
PROMPT_MODES = ("raw", "chat", "per-message")


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
    # How a flag's text is read when the default (None) does not say.
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
        "native block of hash-id traces (default: Mooncake 512, Bailian 16)", metavar="N")
    tokenizer: str = _param(
        DEFAULT_TOKENIZER, _name,
        "tokenizer for text traces: 'deepseek-v3' (built in, the default), a local "
        "directory, or a Hugging Face name already in the local cache", metavar="NAME",
        aliases=("--model-name",), text_only=True)
    prompt: str = _param(
        "raw", _choice(PROMPT_MODES),
        "how a text request becomes a prompt: 'raw' message contents (default), 'chat' (the "
        "tokenizer's chat template), 'per-message' (every message its own request, as the "
        "original script)", choices=PROMPT_MODES, text_only=True)
    warmup: float = _param(
        0.0, _fraction,
        "steady state: the first F of the requests (a fraction in [0, 1)) fill the cache "
        "but are not counted (default: 0)", metavar="F")
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
        if fmt in HASH_ID_FORMATS:
            return replace(self, **{p.name: p.default for p in PARAMS if p.text_only})
        return self

    def key(self, detected_format: str | None = None) -> str:
        """Canonical memo key: equal for parameter sets that give the same analysis."""
        return json.dumps(self.effective(detected_format).to_dict(), sort_keys=True)

    def describe(self, detected_format: str | None = None) -> str:
        """``block size 64, tokenizer deepseek-v3`` for messages (hash ids: no tokenizer)."""
        fmt = self.format if self.format != "auto" else detected_format
        tok = "none (hash ids)" if fmt in HASH_ID_FORMATS else self.tokenizer
        parts = [f"block size {self.block_size}", f"tokenizer {tok}"]
        if self.warmup:
            parts.append(f"warm-up {self.warmup:g}")
        if self.sampled:
            parts.append("sampled" + (f" at rate {self.sample:g}" if self.sample else "")
                         + (f", at most {self.sample_keys:,} keys"
                            if self.sample_keys else ""))
        return ", ".join(parts)


PARAMS: tuple[Param, ...] = tuple(
    Param(f.name, f.default, f.metadata["param"][0], f.metadata["param"][1],
          **f.metadata["param"][2])
    for f in fields(AnalysisParams))
PARAM_BY_NAME: dict[str, Param] = {p.name: p for p in PARAMS}
PARAM_NAMES: tuple[str, ...] = tuple(PARAM_BY_NAME)
