"""The scanner of :mod:`.hashid_scan`, compiled by numba (the ``[fast]`` extra): imported
only when a trace is read with numba installed.

``buf`` always ends with a newline, and every loop inside a line stops at one (it is no
digit, no blank, no quote, and a control character inside a string): so no loop tests
``p < end``, and the scanner can never read past the buffer.
"""

from __future__ import annotations

import numba
import numpy as np

# Exact doubles: a decimal below 2**53 over one of these is correctly rounded.
_POW10 = np.array([10.0 ** k for k in range(16)])


@numba.njit(cache=True, inline="always")
def _blank(buf: np.ndarray, p: int) -> int:
    while buf[p] == 32 or buf[p] == 9 or buf[p] == 13:
        p += 1
    return p


@numba.njit(cache=True, inline="always")
def _plain_string(buf: np.ndarray, p: int) -> int:
    """From just inside a quote: the closing quote's position, or -1 when the string is not
    plain ASCII without escapes (or the line ends first)."""
    while True:
        c = buf[p]
        if c == 34:
            return p
        if c == 92 or c < 32 or c >= 128:
            return -1
        p += 1


@numba.njit(cache=True, inline="always")
def _digits(buf: np.ndarray, p: int) -> tuple[int, int, bool]:
    """The run of digits from ``p``: where it ends, its value, and whether it is a JSON
    integer the scanner takes (1 to 18 digits, no leading zero: int64, no overflow)."""
    d0 = p
    v = 0
    while 48 <= buf[p] <= 57:
        v = v * 10 + (buf[p] - 48)
        p += 1
    nd = p - d0
    return p, v, 0 < nd <= 18 and (nd == 1 or buf[d0] != 48)


@numba.njit(cache=True, nogil=True)
def scan(buf, pos, end, lineno, keys, key_lengths, ids, counts, lengths, stamps, lines,
         chats, parents, type_lo, type_hi):
    """Read records from ``buf[pos:end]`` (whole lines) until one is not of the plain
    shape: returns ``(pos, lineno, records, ids)``, ``pos`` the start of the line not read
    (``end`` when all were) and ``lineno`` its number. One pass over the bytes.

    Key ``k + 1`` is ``keys[k, :key_lengths[k]]``, in the order of ``hashid_scan._KEYS``:
    1 timestamp, 2 input_length, 3 hash_ids, then Qwen-Bailian's 4 chat_id,
    5 parent_chat_id, 6 turn, 7 type; 0 any other key, whose value is skipped."""
    n_rec = 0
    n_ids = 0
    nkeys = keys.shape[0]
    while pos < end:
        p = _blank(buf, pos)
        if buf[p] == 10:  # a blank line
            pos = p + 1
            lineno += 1
            continue
        if buf[p] != 123:
            break
        first_id = n_ids
        seen = 0
        length = -1
        stamp = np.nan
        chat = 0
        parent = -1
        t_lo = 0
        t_hi = 0
        ok = False
        p = _blank(buf, p + 1)
        while buf[p] == 34:
            k0 = p + 1
            p = _plain_string(buf, k0)
            if p < 0:
                break
            klen = p - k0
            key = 0
            for k in range(nkeys):
                if key_lengths[k] == klen:
                    same = True
                    for j in range(klen):
                        if keys[k, j] != buf[k0 + j]:
                            same = False
                            break
                    if same:
                        key = k + 1
                        break
            if key and seen & (1 << key):
                break  # a duplicate: JSON readers keep the last one; left to them
            seen |= 1 << key
            p = _blank(buf, p + 1)
            if buf[p] != 58:
                break
            p = _blank(buf, p + 1)
            c = buf[p]
            if key == 3:  # hash_ids: non-negative integers
                if c != 91:
                    break
                p = _blank(buf, p + 1)
                good = True
                if buf[p] == 93:
                    p += 1
                else:
                    while True:
                        p, v, good = _digits(buf, p)
                        if not good:
                            break
                        ids[n_ids] = v
                        n_ids += 1
                        c = buf[p]
                        if c == 44:
                            p += 1
                            if buf[p] == 32:
                                p = _blank(buf, p)
                            continue
                        if c == 32 or c == 9 or c == 13:
                            p = _blank(buf, p)
                            c = buf[p]
                            if c == 44:
                                p = _blank(buf, p + 1)
                                continue
                        if c == 93:
                            p += 1
                            break
                        good = False
                        break
                if not good:
                    break
            elif c == 34:  # a string: plain ASCII, no escapes
                if key != 0 and key != 7:
                    break
                s0 = p + 1
                p = _plain_string(buf, s0)
                if p < 0:
                    break
                if key == 7:
                    t_lo = s0
                    t_hi = p
                p += 1
            elif c == 45 or 48 <= c <= 57:  # a number: integer or decimal, no exponent
                negative = c == 45
                if negative:
                    p += 1
                d0 = p
                p, v, taken = _digits(buf, p)
                if not taken:
                    break
                nd = p - d0
                frac = 0
                if buf[p] == 46:
                    p += 1
                    f0 = p
                    while 48 <= buf[p] <= 57:
                        v = v * 10 + (buf[p] - 48)
                        p += 1
                    frac = p - f0
                    # Below 2**53 over an exact power of ten: the one correctly rounded
                    # double, as every JSON reader gives.
                    if frac == 0 or nd + frac > 15:
                        break
                if buf[p] == 101 or buf[p] == 69:
                    break
                if negative:
                    v = -v
                if key == 1:
                    stamp = v / _POW10[frac] if frac else float(v)
                elif key == 0:
                    pass
                elif frac:
                    break  # an integer field given a decimal: the reader names it
                elif key == 2:
                    if v < 0:
                        break
                    length = v
                elif key == 4:
                    chat = v
                elif key == 5:
                    parent = v
                elif key == 6:
                    if v < 1:  # turn: only checked (sessions come from the chat ids)
                        break
                else:
                    break  # type must be a string
            else:
                break  # a literal, an object, a list outside hash_ids: the reader's
            p = _blank(buf, p)
            if buf[p] == 44:
                p = _blank(buf, p + 1)
                continue  # the loop goes on only at a key's quote
            if buf[p] == 125:
                p = _blank(buf, p + 1)
                ok = buf[p] == 10
            break
        if not (ok and seen & (1 << 3)):
            n_ids = first_id
            break
        if nkeys > 3 and not (seen & (1 << 4) and parent >= -1 and parent != chat):
            n_ids = first_id
            break
        counts[n_rec] = n_ids - first_id
        lengths[n_rec] = length
        stamps[n_rec] = stamp
        lines[n_rec] = lineno
        chats[n_rec] = chat
        parents[n_rec] = parent
        type_lo[n_rec] = t_lo
        type_hi[n_rec] = t_hi
        n_rec += 1
        pos = p + 1
        lineno += 1
    return pos, lineno, n_rec, n_ids
