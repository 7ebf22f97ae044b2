"""The prompts of a few requests of a text trace, recovered after the analysis: a stream
keeps block keys, not tokens, so the shared prefixes' text and the departures of broken
turns (docs/causes.md) re-read the trace and tokenize only the requests they name."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable

import numpy as np

from ..loaders.text import iter_text_requests
from .blocks import request_prompts
from .tokenizer import TextTokenizer, load_tokenizer


class TracePrompts:
    """Token ids and decoded text of requests of the text trace at ``path``, numbered as
    the stream numbers them (file order; one per message in per-message mode).

    ``prompt_tokens``: the stream's length of every prompt. A recovered prompt of another
    length is not the stream's (the file changed, or its loader put the requests in
    another order) and is left out: no text rather than a wrong one."""

    def __init__(self, path: str | os.PathLike[str], fmt: str, tokenizer: str,
                 prompt: str, prompt_tokens: np.ndarray | None = None) -> None:
        self.path = os.fspath(path)
        self.fmt = fmt
        self.prompt = prompt
        self.tokenizer = tokenizer
        self.prompt_tokens = prompt_tokens
        self._ids: dict[int, np.ndarray] = {}

    @functools.cached_property
    def _tokenizer(self) -> TextTokenizer:
        # Loaded on first use only: a warm analysis reads its cached stream without it.
        return load_tokenizer(self.tokenizer)

    def token_ids(self, requests: Iterable[int]) -> dict[int, np.ndarray]:
        requests = list(requests)
        wanted = set(requests) - set(self._ids)
        if wanted:
            texts, numbers = [], []
            index = 0
            last = max(wanted)
            for req in iter_text_requests(self.path, self.fmt):
                for text in request_prompts(req, self.prompt, self._tokenizer):
                    if index in wanted:
                        texts.append(text)
                        numbers.append(index)
                    index += 1
                if index > last:
                    break
            for r, ids in zip(numbers, self._tokenizer.encode_batch(texts), strict=True):
                if self.prompt_tokens is None or (
                        r < self.prompt_tokens.shape[0]
                        and int(self.prompt_tokens[r]) == ids.shape[0]):
                    self._ids[r] = ids
        return {r: self._ids[r] for r in requests if r in self._ids}

    def decode(self, ids: np.ndarray) -> str:
        return self._tokenizer.backend.decode([int(i) for i in ids],
                                              skip_special_tokens=False)


def trace_prompts(path: str | os.PathLike[str], fmt: str | None, tokenizer: str | None,
                  prompt: str | None, prompt_tokens: np.ndarray | None = None
                  ) -> TracePrompts | None:
    """The prompts of a text trace that can be read again (a regular file; a pipe's bytes
    are gone), else None."""
    from ..loaders.registry import TEXT_FORMATS

    if fmt not in TEXT_FORMATS or tokenizer is None or prompt is None \
            or not os.path.isfile(path):
        return None
    return TracePrompts(path, fmt, tokenizer, prompt, prompt_tokens)
