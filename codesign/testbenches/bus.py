"""Bus words of a generated design: element i of a vector at bits [i*W +: W] of one wide word.

The one packing rule of the flow (design.json ``input``/``output``, the layer probes, the IP core's
tdata): a vector of n integer codes of width W becomes one (n*W)-bit word, element i in bits
[i*W +: W], each code in two's complement when negative. The cocotb testbench (``tb_network.py``),
the compiled stream testbench's hex files (``codesign.fastsim``) and the IP core's Verilog
testbench hex files (``codesign.ipcore``) all use this module.

Standalone on purpose (numpy only, no codesign import): ``codesign.ipcore.package`` copies it with
``tb_network.py`` into every IP core folder, where ``tb_network`` imports it as the sibling module
``bus`` without the codesign package installed. Inside the package it is ``codesign.testbenches.bus``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: int64 codes: a two's complement bit j >= 63 is the sign bit, which an arithmetic shift by 63 gives.
_SIGN_SHIFT = 63


def _check_width(width: int) -> None:
    if width < 1:
        raise ValueError(f"element width {width} is not positive")


def check_range(codes: np.ndarray, width: int) -> None:
    """Raise ValueError unless every code fits a ``width``-bit field, signed or unsigned.

    The accepted range is -2^(W-1) .. 2^W - 1: a signed or an unsigned code of that width (the
    field itself does not say which, so both are accepted).
    """
    _check_width(width)
    codes = np.asarray(codes, dtype=np.int64)
    lo, hi = -(1 << (width - 1)), (1 << width) - 1
    if codes.size and (int(codes.min()) < lo or int(codes.max()) > hi):
        raise ValueError(f"codes outside a {width}-bit field: min {codes.min()}, max {codes.max()}")


def pack_rows(codes: np.ndarray, width: int) -> list[int]:
    """Pack each row of an N x n array of integer codes into one Python int.

    Element i goes to bits [i*W +: W] as its low W bits in two's complement (a negative code -c is
    written as 2^W - c). Codes are not range-checked (see :func:`check_range`): a code that does
    not fit keeps only its low W bits, as a W-bit port would.
    """
    _check_width(width)
    codes = np.asarray(codes, dtype=np.int64)
    if codes.ndim != 2:
        raise ValueError(f"expected a 2-D array of codes, got shape {codes.shape}")
    n_rows, n = codes.shape
    # bit j of each code; j is capped at 63 so that bits above the int64 sign repeat the sign
    shifts = np.minimum(np.arange(width, dtype=np.int64), _SIGN_SHIFT)
    bits = ((codes[:, :, None] >> shifts) & 1).astype(np.uint8)
    packed = np.packbits(bits.reshape(n_rows, n * width), axis=1, bitorder="little")
    return [int.from_bytes(row.tobytes(), "little") for row in packed]


def unpack_words(words: Sequence[int], n: int, width: int, signed: bool) -> np.ndarray:
    """Inverse of :func:`pack_rows`: an N x n int64 array of codes, signed (two's complement) or not.

    Bits of a word above n*W are ignored (the bus is n*W bits wide). Raises ValueError for a width
    whose codes do not fit int64 (unsigned above 63 bits, signed above 64).
    """
    _check_width(width)
    if width > (64 if signed else 63):
        raise ValueError(f"{'signed' if signed else 'unsigned'} {width}-bit codes do not fit int64")
    total = n * width
    nbytes = (total + 7) // 8
    mask = (1 << total) - 1
    raw = b"".join((int(w) & mask).to_bytes(nbytes, "little") for w in words)
    byte_rows = np.frombuffer(raw, dtype=np.uint8).reshape(len(words), nbytes)
    bits = np.unpackbits(byte_rows, axis=1, bitorder="little")[:, :total].reshape(len(words), n, width)
    codes = np.zeros((len(words), n), dtype=np.int64)
    for j in range(width):
        # the top bit of a signed field weighs -2^(W-1) (two's complement); int64 holds it for W = 64
        weight = -(1 << j) if signed and j == width - 1 else 1 << j
        codes += bits[:, :, j].astype(np.int64) * np.int64(weight)
    return codes


def unpack_word(word: int, n: int, width: int, signed: bool) -> np.ndarray:
    """:func:`unpack_words` of one word: its n int64 codes."""
    return unpack_words([word], n, width, signed)[0]


def hex_words(words: Sequence[int], bits: int) -> list[str]:
    """Each word as lower-case hex, zero-padded to the ceil(bits / 4) digits of a ``bits``-wide
    bus (the form ``$readmemh`` reads)."""
    digits = (bits + 3) // 4
    return [f"{int(w):0{digits}x}" for w in words]
