"""Reading an hls4ml layer: its final types, its weights as the C-sim holds them, its window.

Shared by the layer kinds' ``extract``; only these functions touch hls4ml's objects.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from codesign.errors import RtlGenError
from codesign.fixedpoint import FixedType, cast
from codesign.fixedpoint import from_hls4ml as precision_to_type
from codesign.graph import Geometry


def layer_type(hl: Any, precision: Any, what: str) -> FixedType:
    """An hls4ml precision of layer ``hl`` as a FixedType, or an error naming the layer."""
    try:
        return precision_to_type(precision)
    except ValueError as e:
        raise RtlGenError(f"layer {hl.name}: {what} type {precision}: {e}") from e


def accum_type(hl: Any) -> FixedType:
    return layer_type(hl, hl.types["accum_t"].precision, "accum")


def grid_codes(values: np.ndarray, what: str, max_frac: int = 48) -> tuple[np.ndarray, int]:
    """Smallest fractional bit count that puts every value on an integer grid, and the codes."""
    values = np.asarray(values, dtype=np.float64)
    for frac in range(0, max_frac + 1):
        scaled = values * (2.0 ** frac)
        if np.all(scaled == np.rint(scaled)):
            return np.rint(scaled).astype(np.int64), frac
    raise RtlGenError(f"{what}: values are not on a binary fixed-point grid with <= {max_frac} fractional bits")


def csim_values(var: Any, what: str) -> np.ndarray:
    """The values hls4ml's C-sim holds for a weight variable.

    hls4ml writes each value with the variable's ``precision_fmt`` (as many decimals as the type
    has fractional bits), the C-sim reads it back as a double and converts it to the weight type
    with that type's rounding and overflow modes. Values already on the type's grid (QKeras
    quantizers) come back unchanged; float weights (plain Keras) are quantized here as in C++.
    Non-ap_fixed types (power-of-two exponents, binary) keep their data as is.
    """
    data = np.asarray(var.data, dtype=np.float64)
    try:
        t = precision_to_type(var.type.precision)
    except ValueError:
        return data
    fmt = getattr(var, "precision_fmt", "") or "{!r}"
    flat = [float(fmt.format(v)) for v in data.ravel().tolist()]
    codes = np.array([_double_to_code(d, t, what) for d in flat], dtype=np.int64)
    return t.to_real(cast(codes, t.frac + 2, t)).reshape(data.shape)


def _double_to_code(d: float, t: FixedType, what: str) -> int:
    """``d`` as a code with ``t.frac + 2`` fractional bits: floor, then 2 guard bits (0: exact,
    1: below half, 2: half, 3: above half of the dropped part), enough for every rounding mode."""
    if not np.isfinite(d):
        raise RtlGenError(f"{what}: value {d!r} is not finite")
    num, den = d.as_integer_ratio()
    k = den.bit_length() - 1
    if k <= t.frac:
        return (num << (t.frac - k)) << 2
    shift = k - t.frac
    floor = num >> shift
    rem = num - (floor << shift)
    half = 1 << (shift - 1)
    guard = 0 if rem == 0 else 1 if rem < half else 2 if rem == half else 3
    return (floor << 2) | guard


def is_binary(hl: Any) -> bool:
    """Whether the layer's weights are hls4ml's ``weight_binary`` (XnorPrecisionType)."""
    from hls4ml.model.types import XnorPrecisionType

    return isinstance(hl.weights["weight"].type.precision, XnorPrecisionType)


def product(hl: Any, in_type: FixedType) -> tuple[str, FixedType | None]:
    """How hls4ml multiplies this layer's weights (``nnet_mult.h``): exactly, or by exponent."""
    from hls4ml.model.types import ExponentPrecisionType, FixedPrecisionType, IntegerPrecisionType

    prec = hl.weights["weight"].type.precision
    if isinstance(prec, ExponentPrecisionType):
        # weight_exponential<x_T, w_T>::r_T = ap_fixed<2*(E + W_x), E + W_x>, E = exponent width
        e_w = int(prec.width)
        return "po2", FixedType(2 * (e_w + in_type.width), e_w + in_type.width)
    if is_binary(hl):  # -a or a: exact, like a multiplication by -1 or +1
        return "exact", None
    if not isinstance(prec, (FixedPrecisionType, IntegerPrecisionType)):
        raise RtlGenError(f"layer {hl.name}: weight type {type(prec).__name__} ({prec}) is not supported; "
                          f"supported: ap_fixed / ap_int (incl. ternary), binary and power-of-two (quantized_po2) weights")
    return "exact", None


def kernel_and_bias(hl: Any) -> tuple[np.ndarray, np.ndarray]:
    """The layer's weight and bias values as the C-sim holds them."""
    return (csim_values(hl.weights["weight"], f"layer {hl.name} weights"),
            csim_values(hl.weights["bias"], f"layer {hl.name} biases"))


def geometry(hl: Any, two_d: bool, k_h: int, k_w: int, n_chan: int, count_pad: bool = False) -> Geometry:
    """A conv / pooling layer's sliding window from hls4ml's attributes."""
    a = hl.get_attr
    if two_d:
        return Geometry(int(a("in_height")), int(a("in_width")), n_chan, k_h, k_w, int(a("stride_height")),
                        int(a("stride_width")), int(a("pad_top")), int(a("pad_left")), int(a("out_height")),
                        int(a("out_width")), count_pad)
    in_w = int(a("in_width") if a("in_width") is not None else a("n_in"))
    out_w = int(a("out_width") if a("out_width") is not None else a("n_out"))
    return Geometry(1, in_w, n_chan, 1, k_w, 1, int(a("stride_width")), 0, int(a("pad_left")), 1, out_w, count_pad)


def check_geometry(hl: Any, geom: Geometry, n_in: int, n_out: int, n_out_chan: int) -> None:
    if geom.in_h * geom.in_w * geom.n_chan != n_in or geom.pixels * n_out_chan != n_out:
        raise RtlGenError(f"layer {hl.name}: geometry {geom} does not match {n_in} inputs / {n_out} outputs")
