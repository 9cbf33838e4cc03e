"""Bit-exact model of ap_fixed / ap_ufixed conversions on integer codes.

A value of type ``FixedType(width=W, integer=I, signed=s)`` is stored as an integer *code* c with
value ``c * 2**-(W - I)``. :func:`cast` converts codes between types exactly as ``ap_fixed``
assignment does: quantization (Q mode) when fractional bits are dropped, then overflow (O mode) when
the value does not fit. Codes are numpy int64 arrays (every width the flow accepts keeps
intermediate values below 2**62) or plain Python ints.

This module is the single definition of "bit-exact" used by the RTL golden model, the Verilog
cast primitive's tests and the verifier.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

#: ap_fixed quantization modes (without the AP_ prefix).
QUANT_MODES = ("TRN", "TRN_ZERO", "RND", "RND_ZERO", "RND_MIN_INF", "RND_INF", "RND_CONV")
#: ap_fixed overflow modes (without the AP_ prefix).
OVERFLOW_MODES = ("WRAP", "SAT", "SAT_ZERO", "SAT_SYM")

#: Verilog encodings of the modes used by rtl/fxp_cast.v (parameters ROUND and OVERFLOW).
QUANT_CODE = {m: i for i, m in enumerate(QUANT_MODES)}
OVERFLOW_CODE = {m: i for i, m in enumerate(OVERFLOW_MODES)}

_PREC_RE = re.compile(
    r"^(?P<kind>u?fixed)<\s*(?P<w>\d+)\s*,\s*(?P<i>-?\d+)\s*(?:,\s*(?P<q>\w+)\s*)?(?:,\s*(?P<o>\w+)\s*)?"
    r"(?:,\s*(?P<n>\d+)\s*)?>$|^(?P<ikind>u?int)<\s*(?P<iw>\d+)\s*>$"
)


@dataclass(frozen=True, order=True)
class FixedType:
    """An ap_fixed<W,I,Q,O> (signed) or ap_ufixed<W,I,Q,O> (unsigned) type."""

    width: int
    integer: int
    signed: bool = True
    rounding: str = "TRN"
    overflow: str = "WRAP"

    def __post_init__(self) -> None:
        if self.width < 1:
            raise ValueError(f"fixed-point width must be >= 1, got {self.width}")
        if self.rounding not in QUANT_MODES:
            raise ValueError(f"rounding mode {self.rounding!r}; valid: {', '.join(QUANT_MODES)}")
        if self.overflow not in OVERFLOW_MODES:
            raise ValueError(f"overflow mode {self.overflow!r}; valid: {', '.join(OVERFLOW_MODES)}")

    @property
    def frac(self) -> int:
        """Fractional bits (may be negative when integer > width)."""
        return self.width - self.integer

    @property
    def min_code(self) -> int:
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def max_code(self) -> int:
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1

    def with_modes(self, rounding: str = "TRN", overflow: str = "WRAP") -> FixedType:
        return FixedType(self.width, self.integer, self.signed, rounding, overflow)

    def __str__(self) -> str:
        kind = "fixed" if self.signed else "ufixed"
        return f"{kind}<{self.width},{self.integer},{self.rounding},{self.overflow}>"

    def to_json(self) -> dict[str, Any]:
        return {
            "width": self.width, "integer": self.integer, "frac": self.frac, "signed": self.signed,
            "rounding": self.rounding, "overflow": self.overflow, "text": str(self),
        }

    def to_codes(self, values: np.ndarray) -> np.ndarray:
        """Real values that lie on this type's grid -> integer codes. Raises if one is off-grid."""
        scaled = np.asarray(values, dtype=np.float64) * (2.0 ** self.frac)
        codes = np.rint(scaled)
        if not np.array_equal(codes, scaled):
            bad = np.flatnonzero(codes.ravel() != scaled.ravel())[0]
            raise ValueError(f"value {np.asarray(values).ravel()[bad]!r} is not on the grid of {self}")
        return codes.astype(np.int64)

    def to_real(self, codes: np.ndarray) -> np.ndarray:
        return np.asarray(codes, dtype=np.float64) * (2.0 ** -self.frac)


def parse_precision(text: str) -> FixedType:
    """Parse hls4ml's precision text: fixed<16,6>, ufixed<6,0,RND_CONV,SAT>, int<8>, uint<1>."""
    m = _PREC_RE.match(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a fixed-point precision (fixed<W,I,Q,O>, ufixed<..>, int<W>)")
    if m.group("ikind"):
        w = int(m.group("iw"))
        return FixedType(w, w, m.group("ikind") == "int")
    q = (m.group("q") or "TRN").upper().removeprefix("AP_")
    o = (m.group("o") or "WRAP").upper().removeprefix("AP_")
    if m.group("n") not in (None, "0"):
        raise ValueError(f"{text!r}: saturation bits N other than 0 are not supported")
    return FixedType(int(m.group("w")), int(m.group("i")), m.group("kind") == "fixed", q, o)


def from_hls4ml(precision: Any) -> FixedType:
    """Convert an hls4ml FixedPrecisionType / IntegerPrecisionType (or its text) to FixedType."""
    if isinstance(precision, str):
        return parse_precision(precision)
    from hls4ml.model.types import ExponentPrecisionType, FixedPrecisionType, IntegerPrecisionType

    if isinstance(precision, ExponentPrecisionType):  # an exponent field, not a fixed-point value
        raise ValueError(f"{type(precision).__name__} is not an ap_fixed type")
    if isinstance(precision, IntegerPrecisionType):
        return FixedType(int(precision.width), int(precision.width), bool(precision.signed))
    if isinstance(precision, FixedPrecisionType):
        sat_bits = getattr(precision, "saturation_bits", 0) or 0
        if sat_bits:
            raise ValueError(f"{precision}: saturation bits {sat_bits} are not supported")
        rnd, sat = precision.rounding_mode, precision.saturation_mode
        r = rnd.name if rnd is not None else "TRN"
        o = sat.name if sat is not None else "WRAP"
        return FixedType(int(precision.width), int(precision.integer), bool(precision.signed), r, o)
    if type(precision).__name__ in ("XnorPrecisionType", "ExponentPrecisionType"):
        raise ValueError(f"{type(precision).__name__} is not an ap_fixed type")
    return parse_precision(str(precision))


def _shift_round(codes: np.ndarray, shift: int, mode: str) -> np.ndarray:
    """Divide integer codes by 2**shift (shift > 0) with an ap_fixed quantization mode."""
    floor = codes >> shift
    rem = codes - (floor << shift)  # 0 <= rem < 2**shift
    half = 1 << (shift - 1)
    neg = codes < 0
    exact = rem == 0
    if mode == "TRN":
        up = np.zeros_like(exact)
    elif mode == "TRN_ZERO":
        up = neg & ~exact
    elif mode == "RND":
        up = rem >= half
    elif mode == "RND_ZERO":
        up = (rem > half) | ((rem == half) & neg)
    elif mode == "RND_MIN_INF":
        up = rem > half
    elif mode == "RND_INF":
        up = (rem > half) | ((rem == half) & ~neg)
    elif mode == "RND_CONV":
        up = (rem > half) | ((rem == half) & ((floor & 1) == 1))
    else:  # pragma: no cover - FixedType validates modes
        raise ValueError(mode)
    return floor + up.astype(floor.dtype)


def _overflow(codes: np.ndarray, to: FixedType) -> np.ndarray:
    lo, hi = to.min_code, to.max_code
    if to.overflow == "WRAP":
        mask = (1 << to.width) - 1
        wrapped = codes & mask
        if to.signed:
            wrapped = np.where(wrapped > hi, wrapped - (1 << to.width), wrapped)
        return wrapped
    if to.overflow == "SAT":
        return np.clip(codes, lo, hi)
    if to.overflow == "SAT_ZERO":
        return np.where((codes < lo) | (codes > hi), 0, codes)
    if to.overflow == "SAT_SYM":
        # ap_fixed sets an underflow to min | 1: -max, except for 1 bit where that is min (= -1).
        sym_lo = -hi if to.signed and to.width > 1 else lo
        return np.clip(codes, sym_lo, hi)
    raise ValueError(to.overflow)  # pragma: no cover


def cast(codes: Any, src_frac: int, to: FixedType, src_signed: bool = True) -> np.ndarray:
    """Convert codes with ``src_frac`` fractional bits to type ``to``, as ap_fixed assignment does.

    Args:
        codes: integer codes (any int array or int); the value is ``codes * 2**-src_frac``.
        src_frac: fractional bits of the source.
        to: the destination type, with its rounding and overflow modes.
        src_signed: whether the source type is signed (only matters for documentation; the
            sign of each code is what rounding looks at).

    Returns:
        int64 codes of type ``to``.
    """
    del src_signed
    c = np.asarray(codes, dtype=np.int64)
    shift = src_frac - to.frac
    if shift > 0:
        c = _shift_round(c, shift, to.rounding)
    elif shift < 0:
        c = c << (-shift)
    return _overflow(c, to)


def code_range_bits(lo: int, hi: int) -> tuple[int, bool]:
    """Smallest two's complement (or unsigned, when lo >= 0) width holding every code in [lo, hi]."""
    if lo >= 0:
        return max(1, int(hi).bit_length()), False
    bits = max((-lo - 1).bit_length(), max(hi, 0).bit_length()) + 1
    return bits, True


# -- hls4ml operators on ap_fixed codes, shared by the golden models and the RTL builders ----------

def po2_zero_exponent(in_type: FixedType, product_type: FixedType) -> int:
    """The exponent hls4ml's C-sim ends up with for a zero power-of-two weight: hls4ml writes it as
    ``int(log2(0)) = INT64_MIN``, which the E-bit exponent field wraps to 0 (with the sign bit of a
    non-negative value, so the C-sim multiplies by +1). E = product integer bits - input width."""
    e_bits = product_type.integer - in_type.width
    code = (-(1 << 63)) & ((1 << e_bits) - 1)
    return code - (1 << e_bits) if code >> (e_bits - 1) else code


def po2_products(x_col: np.ndarray, in_type: FixedType, w_row: np.ndarray, weight_frac: int,
                 product_type: FixedType) -> np.ndarray:
    """hls4ml's ``weight_exponential``: ``y = (r_T)x << e`` (a right shift for e < 0 drops bits:
    floor), then ``sign ? y : (r_T)(-y)``; codes of ``product_type`` (r_T). x_col: N x 1 input
    codes, w_row: the weights' codes (weight_frac fractional bits) of one input's outputs."""
    xr = cast(x_col, in_type.frac, product_type)
    w_real = w_row.astype(np.float64) * 2.0 ** -weight_frac
    with np.errstate(divide="ignore"):
        e = np.rint(np.log2(np.abs(np.where(w_row == 0, 1.0, w_real)))).astype(np.int64)
    e = np.where(w_row == 0, po2_zero_exponent(in_type, product_type), e)
    left = np.where(e > 0, e, 0)[None, :]
    right = np.where(e < 0, -e, 0)[None, :]
    y = cast((xr << left) >> right, product_type.frac, product_type)  # same type: only the wrap of a left shift
    return np.where(w_row[None, :] >= 0, y, cast(-y, product_type.frac, product_type))


def max_pool_pad_code(t: FixedType) -> int:
    """hls4ml's ``pad_val`` for a padded tap of max pooling: a code with only the top bit set
    (the most negative value of a signed type, but half the range of an unsigned one)."""
    return t.min_code if t.signed else 1 << (t.width - 1)
