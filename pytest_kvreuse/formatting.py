"""How every output writes a figure: percents, counts, tokens. The terminal summary, the
CLI, failure messages, the report and the baseline views all format through here, so a
figure reads the same everywhere. No numpy, no pytest."""

from __future__ import annotations

import math
import numbers

# The report's mark for a figure that has no value (no full block, no timestamps, ...).
UNDEFINED = "—"
# The same in plain text (terminal, CLI, failure messages).
UNDEFINED_TEXT = "undefined"

FRACTION, TOKENS, COUNT, SECONDS = "fraction", "tokens", "count", "seconds"
# A dimensionless ratio such as a load imbalance (max / mean): 1.0068.
RATIO = "ratio"


def _real(x: object) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def defined(x: object) -> float | int | None:
    """A figure as JSON carries it: None where it is undefined (None or NaN)."""
    if x is None or (_real(x) and math.isnan(x)):
        return None
    if isinstance(x, numbers.Integral) and not isinstance(x, bool):
        return int(x)
    return float(x) if _real(x) else x  # type: ignore[return-value]


def percent(x: object, digits: int = 2, undefined: str = UNDEFINED) -> str:
    """``0.26689`` -> ``26.69 %``."""
    if x is None or (_real(x) and math.isnan(x)):
        return undefined
    if not _real(x):
        return str(x)
    return f"{float(x) * 100:.{digits}f} %"


def count(x: object, undefined: str = UNDEFINED) -> str:
    """Thousands separators: ``10001984`` -> ``10,001,984``; a non-integer to 4 digits."""
    # numbers.*, not int/float: numpy scalars in hand-made results read the same.
    if x is None:
        return undefined
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, numbers.Integral):
        return f"{int(x):,}"
    if isinstance(x, numbers.Real):
        x = float(x)
        if math.isnan(x):
            return undefined
        return f"{x:,.0f}" if x.is_integer() else f"{x:,.4g}"
    return str(x)


def tokens(x: object, undefined: str = UNDEFINED) -> str:
    """A size or a distance in tokens: ``345,792 tokens``."""
    text = count(x, undefined)
    return text if text == undefined else f"{text} tokens"


_BINARY = (("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10))


def byte_size(x: object, undefined: str = UNDEFINED) -> str:
    """Bytes in binary units, as users provision memory: ``64 GiB``, ``1.5 TiB``,
    ``41.79 GiB`` (three significant digits at least, trailing zeros dropped)."""
    if x is None or isinstance(x, bool) or not _real(x) or math.isnan(x):
        return undefined if x is None or not _real(x) or math.isnan(x) else str(x)
    v = float(x)
    for unit, scale in _BINARY:
        # 1,099,508,... bytes read as 1 TiB, not 1,024 GiB.
        if abs(v) >= scale * 0.9995:
            q = v / scale
            digits = 2 if q < 100 else (1 if q < 1000 else 0)
            text = f"{q:,.{digits}f}".rstrip("0").rstrip(".")
            return f"{text} {unit}"
    return f"{v:,.0f} B"


def size(x: object, bytes_per_token: int | None = None, undefined: str = UNDEFINED) -> str:
    """A cache size in tokens, and in bytes when the model is known:
    ``345,792 tokens (22.63 GiB)``."""
    text = tokens(x, undefined)
    if text == undefined or bytes_per_token is None or not _real(x):
        return text
    return f"{text} ({byte_size(int(x) * bytes_per_token)})"


def seconds(x: object, undefined: str = UNDEFINED) -> str:
    """A duration: ``59.355 s``, ``3,600 s``; to the millisecond, trailing zeros dropped
    (reuse times sit on a microsecond grid, but a reader compares milliseconds)."""
    if x is None or isinstance(x, bool):
        return undefined if x is None else str(x)
    if not _real(x):
        return str(x)
    v = float(x)
    if math.isnan(v):
        return undefined
    if math.isinf(v):
        return "inf s" if v > 0 else "-inf s"
    text = f"{v:,.3f}".rstrip("0").rstrip(".")
    return f"{'0' if text in ('-0', '') else text} s"


def ratio(x: object, undefined: str = UNDEFINED) -> str:
    """A ratio to four decimals: ``1.0068``."""
    if x is None or (_real(x) and math.isnan(x)):
        return undefined
    return f"{float(x):.4f}" if _real(x) else str(x)


def value_text(unit: str, x: object, digits: int = 2, undefined: str = UNDEFINED) -> str:
    """A figure in its unit: fractions as percents, durations in seconds, ratios to four
    decimals, the rest as counts."""
    if unit == FRACTION:
        return percent(x, digits, undefined)
    if unit == SECONDS:
        return seconds(x, undefined)
    if unit == RATIO:
        return ratio(x, undefined)
    return count(x, undefined)


def exact_text(unit: str, x: object) -> str:
    """A figure for a failure message: the exact value and, for a fraction, its percent."""
    if x is None or (_real(x) and math.isnan(x)):
        return UNDEFINED_TEXT
    if unit == FRACTION:
        return f"{float(x):.6g} ({float(x) * 100:.2f} %)"
    if unit == SECONDS:
        return f"{float(x):,.6g} s"
    return f"{float(x):,.0f}" if float(x).is_integer() else f"{float(x):,}"


def signed_delta(unit: str, delta: object, baseline: object = None) -> str:
    """A change between two runs: ``+1.23 pp (+4.5 %)`` for fractions."""
    if not _real(delta) or math.isnan(delta):
        return UNDEFINED
    if unit == FRACTION:
        text = f"{delta * 100:+.2f} pp"
    elif unit == SECONDS:
        text = f"{delta:+,.6g} s"
    else:
        text = f"{delta:+,.0f}" if float(delta).is_integer() else f"{delta:+,.4g}"
    if _real(baseline) and baseline:
        text += f" ({delta / abs(baseline) * 100:+.1f} %)"
    return text


def digits_apart(value: object, bounds: list[object]) -> int:
    """Fewest decimals (2 to 6) at which a percentage reads differently from its bounds, so
    a failed check never shows a value equal to its bound."""
    others = [b for b in bounds if b is not None and value is not None and b != value]
    for digits in range(2, 7):
        if all(percent(value, digits) != percent(b, digits) for b in others):
            return digits
    return 6



def error_text(unit: str, error: object, digits: int = 2, undefined: str = UNDEFINED) -> str:
    """The standard error of a sampled figure: a fraction's in percentage points
    (``0.32 points``), a count's whole (``4,100``)."""
    if not _real(error):
        return undefined
    if unit == FRACTION:
        return f"{float(error) * 100:.{digits}f} points"  # type: ignore[arg-type]
    if unit in (COUNT, TOKENS):
        error = round(float(error))  # type: ignore[arg-type]
    return value_text(unit, error, digits, undefined)


def estimate_text(unit: str, value: object, error: object, digits: int = 2,
                  undefined: str = UNDEFINED) -> str:
    """A sampled figure and its standard error: ``58.49 % ± 0.32 points``, ``326,000 ±
    4,100`` (docs/sampling.md)."""
    text = value_text(unit, value, digits, undefined)
    if not _real(error):
        return f"{text} (sampled, error unknown)"
    return f"{text} ± {error_text(unit, error, digits, undefined)}"
