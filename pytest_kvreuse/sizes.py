"""Cache sizes as users write them: tokens (``345792``, ``345,792`` as vLLM prints it) or
bytes with a unit (``64GiB``, ``1.5TB``, ``512MiB``). A byte size needs the model: its KV
bytes per token make it a number of blocks, ``floor(bytes / (bytes_per_token * B))``, and
every figure reads the cache in tokens, ``blocks * B``. No numpy (manifests are read at
collection)."""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass

from .errors import KvReuseError

UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "pb": 10**15,
         "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "pib": 2**50}
_BYTES = re.compile(r"^\s*([0-9][0-9_,]*(?:\.[0-9]*)?|\.[0-9]+)\s*([kmgtp]i?b|b)\s*$", re.I)


class SizeError(KvReuseError):
    """A cache size that is neither tokens nor bytes with a unit, or bytes without a model."""


@dataclass(frozen=True)
class ByteSize:
    """A cache size in bytes, as written (``64GiB``), waiting for the model's bytes per
    token to become tokens."""

    bytes: int
    text: str

    def __str__(self) -> str:
        return self.text

    def tokens(self, bytes_per_token: int, block_size: int) -> int:
        """Tokens of the whole blocks the budget holds: ``floor(bytes / (bpt * B)) * B``."""
        return self.bytes // (bytes_per_token * block_size) * block_size


def parse_size(name: str, value: object) -> int | ByteSize:
    """A positive number of tokens, or a :class:`ByteSize`; anything else is refused."""
    if isinstance(value, ByteSize):
        return value
    if isinstance(value, str):
        text = value.strip().replace("_", "").replace(",", "")
        if text.isdigit():
            value = int(text)
        else:
            m = _BYTES.match(value)
            if m is not None:
                amount = float(m.group(1).replace("_", "").replace(",", ""))
                total = math.floor(amount * UNITS[m.group(2).lower()])
                if total > 0:
                    return ByteSize(total, value.strip())
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise SizeError(f"{name!r} must be a positive integer, got {value!r} (tokens, as "
                        "345792 or 345,792, or bytes with a unit, as 64GiB, 1.5TB, 512MiB)")
    return int(value)


def needs_model(name: str, size: ByteSize) -> SizeError:
    return SizeError(f"{name!r} = {size.text!r} is a size in bytes: name the model (--model, "
                     "or model = ... in a manifest or marker) so its KV bytes per token turn "
                     "it into tokens, or give the size in tokens")


def resolve_size(name: str, value: object, bytes_per_token: int | None,
                 block_size: int) -> int:
    """``value`` (tokens or bytes) in tokens; bytes need ``bytes_per_token``."""
    size = parse_size(name, value)
    if isinstance(size, int):
        return size
    if bytes_per_token is None:
        raise needs_model(name, size)
    tokens = size.tokens(bytes_per_token, block_size)
    if tokens <= 0:
        raise SizeError(f"{name!r} = {size.text!r} holds no block of {block_size} tokens at "
                        f"{bytes_per_token:,} bytes per token")
    return tokens
