"""KV-cache bytes per token of a served model (docs/models.md).

The geometry comes from the model's ``config.json`` fields: the built-in catalog
(``models.json``, shipped in the wheel, one published config per entry), a ``config.json``
or model directory the user names, or the ``config.json`` of a Hugging Face model already in
the local cache (never the network). Per token, over the layers that keep KV for the whole
context: ``2 * kv_heads_per_gpu * head_dim`` elements for standard and grouped-query
attention, ``kv_lora_rank + qk_rope_head_dim`` for multi-head latent attention. Sliding-window
and linear-attention layers hold a bounded amount per request: reported apart. No numpy: a
manifest's byte sizes are resolved at collection.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import KvReuseError

# Bits per element of the KV cache (fp4 and int4 pack two elements in a byte).
DTYPE_BITS = {"bf16": 16, "fp16": 16, "fp8": 8, "fp4": 4, "int4": 4}
KV_DTYPES = tuple(DTYPE_BITS)
# Linear-attention state stays in the model's dtype whatever the KV cache's (vLLM keeps its
# recurrent and conv states in the model dtype unless told otherwise).
STATE_BITS = 16
CATALOG_FILE = Path(__file__).with_name("models.json")


class ModelError(KvReuseError):
    """A model whose KV geometry cannot be known: not found, or a config.json lacking a
    field the bytes per token need."""


@dataclass(frozen=True)
class ModelInfo:
    """A model as the catalog (or a config.json) describes it."""

    id: str
    config: Mapping
    source: str
    hf_id: str | None = None
    tokenizer: str | None = None
    checked: str = "unverified"
    note: str = ""


@dataclass(frozen=True)
class KvGeometry:
    """Bytes of KV cache one model keeps, at one dtype and tensor-parallel degree, on one
    GPU. ``bytes_per_token``: the layers that keep every token of the context;
    ``sliding_bytes_per_request`` and ``linear_bytes_per_request``: what sliding-window
    layers (at most the window) and linear-attention layers (a fixed state) hold for each
    running request, apart from the per-token figure."""

    model: str
    dtype: str
    tp: int
    bytes_per_token: int
    sliding_bytes_per_request: int
    linear_bytes_per_request: int
    full_layers: int
    sliding_layers: int
    linear_layers: int
    attention: str
    source: str

    def bytes_per_block(self, block_size: int) -> int:
        return self.bytes_per_token * block_size

    @property
    def bytes_per_request(self) -> int:
        return self.sliding_bytes_per_request + self.linear_bytes_per_request

    def describe(self) -> str:
        """``deepseek-v3 (bf16, tp 1): 70,272 bytes per token (61 MLA layers)``."""
        layers = f"{self.full_layers} {self.attention} layers"
        if self.sliding_layers:
            layers += f", {self.sliding_layers} sliding-window"
        if self.linear_layers:
            layers += f", {self.linear_layers} linear-attention"
        text = (f"{self.model} ({self.dtype}, tp {self.tp}): {self.bytes_per_token:,} bytes "
                f"per token ({layers})")
        if self.bytes_per_request:
            text += f", plus {self.bytes_per_request:,} bytes per request"
        return text


@functools.lru_cache(maxsize=1)
def catalog() -> dict[str, ModelInfo]:
    """The built-in catalog, by lower-case id."""
    doc = json.loads(CATALOG_FILE.read_text(encoding="utf-8"))
    return {mid: ModelInfo(id=mid, config=e["config"], source=e["source"], hf_id=e["hf_id"],
                           tokenizer=e.get("tokenizer"), checked=e["checked"],
                           note=e.get("note", ""))
            for mid, e in doc["models"].items()}


@functools.lru_cache(maxsize=1)
def _names() -> dict[str, str]:
    """Every name a catalog model answers to, lower-cased: its id, its Hugging Face id and
    aliases, and their last path part (``Llama-3.1-70B-Instruct``)."""
    doc = json.loads(CATALOG_FILE.read_text(encoding="utf-8"))
    out: dict[str, str] = {}
    for mid, e in doc["models"].items():
        for name in (e["hf_id"], *e.get("aliases", ())):
            out.setdefault(name.lower(), mid)
            out.setdefault(name.rsplit("/", 1)[-1].lower(), mid)
    out.update({mid: mid for mid in doc["models"]})
    return out


def catalog_id(name: str) -> str | None:
    """The catalog id ``name`` stands for (``deepseek-ai/DeepSeek-V3.1`` ->
    ``deepseek-v3.1``), or None."""
    return _names().get(name.strip().lower())


def _read_config(path: Path) -> Mapping:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelError(f"cannot read the model config: {exc.strerror or exc}",
                         path=path) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"the model config is not JSON: {exc}", path=path) from None
    if not isinstance(doc, Mapping):
        raise ModelError("the model config is not a JSON object", path=path)
    return doc


def config_file(path: str | os.PathLike[str]) -> Path:
    """``path`` itself, or the ``config.json`` of the model directory ``path``."""
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "config.json"
    if not p.is_file():
        raise ModelError("no such model config (give a config.json or a model directory "
                         "holding one)", path=p)
    return p


def _hub_cache() -> Path:
    """The Hugging Face hub cache, read from the environment at each call (as the hub's own
    variables say: ``HF_HUB_CACHE``, ``HUGGINGFACE_HUB_CACHE``, ``HF_HOME``/hub)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def _cached_config(name: str) -> Path | None:
    """The ``config.json`` of Hugging Face model ``name`` in the local cache (the snapshot
    ``refs/main`` names, else any), or None; never the network."""
    if name.count("/") != 1 or name.startswith((".", "/", "~")):
        return None
    repo = _hub_cache() / ("models--" + name.replace("/", "--"))
    try:
        main = (repo / "refs" / "main").read_text(encoding="utf-8").strip()
    except OSError:
        main = ""
    candidates = [repo / "snapshots" / main / "config.json"] if main else []
    candidates += sorted((repo / "snapshots").glob("*/config.json"))
    return next((c for c in candidates if c.is_file()), None)


def find_model(name: str | None, config_path: str | os.PathLike[str] | None = None
               ) -> ModelInfo | None:
    """The model ``name`` stands for: a catalog entry, or the config.json at
    ``config_path`` (which wins), at the path ``name``, or of the cached Hugging Face model
    ``name``; None when nothing is known of it (it may still name a tokenizer)."""
    if config_path is not None:
        p = config_file(config_path)
        return ModelInfo(id=name or p.parent.name, config=_read_config(p), source=str(p))
    if name is None:
        return None
    mid = catalog_id(name)
    if mid is not None:
        return catalog()[mid]
    p = Path(name).expanduser()
    if p.is_dir() and (p / "config.json").is_file() or p.is_file():
        p = config_file(p)
        return ModelInfo(id=name, config=_read_config(p), source=str(p))
    cached = _cached_config(name)
    if cached is not None:
        return ModelInfo(id=name, config=_read_config(cached), source=str(cached))
    return None


def model_tokenizer(name: str | None) -> str | None:
    """The tokenizer a model name implies for text traces: a catalog id's own (its Hugging
    Face name, or the built-in one), otherwise the name as written."""
    if name is None:
        return None
    mid = catalog_id(name)
    if mid is None or "/" in name:
        return name
    info = catalog()[mid]
    return info.tokenizer or info.hf_id


class _Fields:
    """A config's fields, the language model's own (``text_config``) first; a missing one
    is one line naming it and the config."""

    def __init__(self, config: Mapping, where: str) -> None:
        text = config.get("text_config")
        self.layers = [text, config] if isinstance(text, Mapping) else [config]
        self.where = where

    def get(self, name: str, default: object = None) -> object:
        for layer in self.layers:
            if name in layer and layer[name] is not None:
                return layer[name]
        return default

    def int(self, name: str, *fallbacks: str) -> int:
        for n in (name, *fallbacks):
            v = self.get(n)
            if v is not None:
                if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                    raise ModelError(f"{self.where}: {n!r} must be a positive integer, got "
                                     f"{v!r}")
                return v
        raise ModelError(f"{self.where}: the model config has no {name!r}, needed for the "
                         "KV bytes per token")


def layer_kinds(config: Mapping, where: str = "model config") -> list[str]:
    """Each layer's attention: ``full_attention``, ``sliding_attention`` or
    ``linear_attention``, from ``layer_types``, or the published patterns that stand for it
    (``full_attention_interval``, Gemma's ``sliding_window_pattern``, one window for all
    layers)."""
    f = _Fields(config, where)
    n = f.int("num_hidden_layers")
    types = f.get("layer_types")
    if types is not None:
        if not isinstance(types, list) or len(types) != n:
            raise ModelError(f"{where}: 'layer_types' must list the kind of each of the {n} "
                             "layers")
        unknown = sorted({t for t in types if t not in
                          ("full_attention", "sliding_attention", "linear_attention")})
        if unknown:
            raise ModelError(f"{where}: unknown layer type {unknown[0]!r} in 'layer_types'")
        return list(types)
    interval = f.get("full_attention_interval")
    if interval is not None:
        return ["full_attention" if (i + 1) % int(interval) == 0 else "linear_attention"
                for i in range(n)]
    window = f.get("sliding_window")
    pattern = f.get("sliding_window_pattern")
    if window is not None and pattern is not None:
        return ["full_attention" if (i + 1) % int(pattern) == 0 else "sliding_attention"
                for i in range(n)]
    if window is not None and f.get("use_sliding_window", True) is not False:
        return ["sliding_attention"] * n
    return ["full_attention"] * n


def _bytes(elements: int, bits: int) -> int:
    return math.ceil(elements * bits / 8)


def kv_geometry(info: ModelInfo, dtype: str = "bf16", tp: int = 1) -> KvGeometry:
    """The KV bytes ``info``'s model keeps on one GPU at ``dtype`` and tensor parallelism
    ``tp`` (docs/models.md)."""
    if dtype not in DTYPE_BITS:
        raise ModelError(f"unknown KV dtype {dtype!r} (known: {', '.join(KV_DTYPES)})")
    if isinstance(tp, bool) or not isinstance(tp, int) or tp <= 0:
        raise ModelError(f"tp must be a positive integer, got {tp!r}")
    where = f"model {info.id!r} ({info.source})"
    f = _Fields(info.config, where)
    kinds = layer_kinds(info.config, where)
    bits = DTYPE_BITS[dtype]
    if f.get("kv_lora_rank") is not None:
        # MLA caches one latent per token, replicated on every GPU: tp does not divide it.
        attention = "MLA"
        per_layer = f.int("kv_lora_rank") + f.int("qk_rope_head_dim")
    else:
        attention = "attention"
        heads = f.int("num_attention_heads")
        kv_heads = f.int("num_key_value_heads", "num_attention_heads")
        head_dim = f.get("head_dim")
        if head_dim is None:
            head_dim = f.int("hidden_size") // heads
        per_layer = 2 * max(1, math.ceil(kv_heads / tp)) * int(head_dim)
    full = kinds.count("full_attention")
    sliding = kinds.count("sliding_attention")
    linear = kinds.count("linear_attention")
    sliding_bytes = 0
    if sliding:
        sliding_bytes = sliding * _bytes(f.int("sliding_window") * per_layer, bits)
    linear_bytes = 0
    if linear:
        kh = max(1, math.ceil(f.int("linear_num_key_heads") / tp))
        vh = max(1, math.ceil(f.int("linear_num_value_heads") / tp))
        kd, vd = f.int("linear_key_head_dim"), f.int("linear_value_head_dim")
        conv = (f.int("linear_conv_kernel_dim") - 1) * (2 * kh * kd + vh * vd)
        linear_bytes = linear * _bytes(vh * kd * vd + conv, STATE_BITS)
    return KvGeometry(model=info.id, dtype=dtype, tp=tp,
                      bytes_per_token=full * _bytes(per_layer, bits),
                      sliding_bytes_per_request=sliding_bytes,
                      linear_bytes_per_request=linear_bytes, full_layers=full,
                      sliding_layers=sliding, linear_layers=linear, attention=attention,
                      source=info.source)


def resolve_geometry(model: str | None, dtype: str = "bf16", tp: int = 1,
                     config_path: str | os.PathLike[str] | None = None) -> KvGeometry | None:
    """The geometry of ``model`` (or of the config at ``config_path``); None when neither
    names a model whose config is known."""
    info = find_model(model, config_path)
    return None if info is None else kv_geometry(info, dtype, tp)


def kv_bytes_per_token(model: str, dtype: str = "bf16", tp: int = 1) -> int:
    """Bytes of KV cache per token of ``model`` on one GPU, over its full-context layers:
    ``kv_bytes_per_token("deepseek-v3") == 70272``. ``model``: a catalog id, a Hugging Face
    id, a config.json or model directory, or a Hugging Face model in the local cache.
    Sliding-window and linear-attention layers hold bytes per request instead
    (:func:`resolve_geometry`)."""
    geometry = resolve_geometry(model, dtype, tp)
    if geometry is None:
        raise ModelError(f"unknown model {model!r}: not in the catalog (docs/models.md), not a "
                         "config.json or model directory, not in the Hugging Face cache")
    return geometry.bytes_per_token
