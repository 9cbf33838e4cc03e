"""Canonical signed digit (non-adjacent form) decomposition of integer constants.

``x * w`` for a constant ``w`` becomes ``sum(sign * (x << shift))`` over at most
``ceil((bits + 1) / 2)`` nonzero digits, none of them adjacent: the cheapest shift-add form of a
single constant (docs/TOOLCHAIN.md: Yosys maps ``x * CONST`` poorly).
"""

from __future__ import annotations


def csd(value: int) -> list[tuple[int, int]]:
    """Digits of ``value`` as (shift, sign) pairs, sign in {+1, -1}, least significant first.

    >>> csd(7)
    [(0, -1), (3, 1)]
    >>> sum(s << p for p, s in csd(-13)) == -13
    True
    """
    digits: list[tuple[int, int]] = []
    v, shift = int(value), 0
    while v != 0:
        if v & 1:
            d = 2 - (v & 3)  # +1 when v = 1 mod 4, -1 when v = 3 mod 4
            digits.append((shift, d))
            v -= d
        v >>= 1
        shift += 1
    return digits
