"""The MLP family of the fuzz campaign: seeded random QKeras MLPs (:mod:`codesign.tools.fuzz`).

The model space: 1-4 QDense layers of width 1-24, weight/bias quantized_bits of 2-10 bits with
0-3 integer bits, 0-95 % of the weights zero, each followed by quantized_relu(bits, integer), a
quantized_bits QActivation (a linear cast) or nothing; the input either quantized by a
QActivation (signed or unsigned) or typed by ``hls.input_precision``; random per-layer reuse
factors 1..n_in*n_out; random accum / result precision overrides with every rounding and
overflow mode (some accum types are chosen so the RTL must refuse them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from codesign.config import Config, from_dict
from codesign.fixedpoint import OVERFLOW_MODES, QUANT_MODES, FixedType, parse_precision

# ----------------------------------------------------------------------------- the case spec

@dataclass(frozen=True)
class DenseSpec:
    name: str
    n_out: int
    w_bits: int
    w_int: int
    b_bits: int
    b_int: int
    sparsity: float
    act: tuple[Any, ...] | None  #: ("relu", bits, int) | ("bits", bits, int) | None
    reuse_factor: int
    accum: str | None  #: hls4ml precision override or None (auto)
    result: str | None
    act_result: str | None  #: override of the activation layer's result


@dataclass(frozen=True)
class CaseSpec:
    seed: int
    index: int
    n_in: int
    input_q: tuple[int, int, bool] | None  #: (bits, integer, keep_negative) of an input QActivation
    input_precision: str  #: cfg.hls.input_precision ("auto" or a type) when input_q is None
    layers: tuple[DenseSpec, ...]

    def build(self) -> Any:
        return build_model(self)

    def config(self, vectors: int = 300) -> Config:
        return case_config(self, vectors)

    def describe(self) -> str:
        if self.input_q:
            b, i, kn = self.input_q
            inp = f"q{'s' if kn else 'u'}<{b},{i}>"
        else:
            inp = self.input_precision
        parts = [f"{self.n_in}x{inp}"]
        for d in self.layers:
            a = "lin" if d.act is None else f"{d.act[0]}<{d.act[1]},{d.act[2]}>"
            extra = "".join(
                f" {k}={v}" for k, v in (("acc", d.accum), ("res", d.result), ("ares", d.act_result)) if v
            )
            parts.append(f"{d.n_out}[w{d.w_bits}.{d.w_int} b{d.b_bits}.{d.b_int} sp{d.sparsity:.2f} "
                         f"rf{d.reuse_factor} {a}{extra}]")
        return " -> ".join(parts)


def _prec(rng: np.random.Generator, width: int, integer: int, signed: bool = True) -> str:
    q = QUANT_MODES[int(rng.integers(len(QUANT_MODES)))]
    o = OVERFLOW_MODES[int(rng.integers(len(OVERFLOW_MODES)))]
    return f"{'fixed' if signed else 'ufixed'}<{width},{integer},AP_{q},AP_{o}>"


def _pick(rng: np.random.Generator, items: list[Any], p: list[float] | None = None) -> Any:
    return items[int(rng.choice(len(items), p=p))]


def make_case(seed: int, index: int, max_width: int = 24, max_layers: int = 4,
              max_reuse: int | None = None) -> CaseSpec:
    """Draw case ``index`` of campaign ``seed`` (deterministic)."""
    rng = np.random.default_rng([seed, index])
    n_layers = int(rng.integers(1, max_layers + 1))
    n_in = int(rng.integers(1, max_width + 1))
    kind = _pick(rng, ["signed", "unsigned", "none"])
    input_q = None
    input_precision = "auto"
    if kind != "none":
        bits = int(rng.integers(2, 11))
        input_q = (bits, int(rng.integers(0, min(bits - 1, 4) + 1)), kind == "signed")
        in_t = _qbits_type(*input_q)
    else:
        if rng.random() < 0.3:
            in_t = FixedType(16, 6)  # hls4ml's default, used when input_precision is "auto"
        else:
            w = int(rng.integers(2, 13))
            signed = bool(rng.random() < 0.6)
            in_t = FixedType(w, int(rng.integers(-1, w + 2)), signed)
            input_precision = f"{'fixed' if signed else 'ufixed'}<{in_t.width},{in_t.integer}>"
    layers = []
    prev_t, prev_n = in_t, n_in
    for k in range(n_layers):
        n_out = int(rng.integers(1, max_width + 1))
        w_bits = int(rng.integers(2, 11))
        w_int = int(rng.integers(0, min(w_bits - 1, 3) + 1))
        b_bits = int(rng.integers(2, 11))
        b_int = int(rng.integers(0, min(b_bits - 1, 3) + 1))
        sparsity = float(_pick(rng, [0.0, float(rng.uniform(0, 0.95)), 0.95], [0.25, 0.6, 0.15]))
        act_kind = _pick(rng, ["relu", "none", "bits"], [0.55, 0.3, 0.15])
        act: tuple[Any, ...] | None = None
        if act_kind == "relu":
            ab = int(rng.integers(2, 11))
            act = ("relu", ab, int(rng.integers(0, min(ab, 4) + 1)))
        elif act_kind == "bits":
            ab = int(rng.integers(2, 11))
            act = ("bits", ab, int(rng.integers(0, min(ab - 1, 4) + 1)))
        full = prev_n * n_out
        cap = full if max_reuse is None else min(full, max_reuse)
        reuse = int(_pick(rng, [1, int(rng.integers(1, cap + 1)), cap, min(2, cap)], [0.35, 0.4, 0.1, 0.15]))
        # accum override: fractional bits around the product's, integer bits around what is needed
        w_frac = w_bits - 1 - w_int
        prod_frac = prev_t.frac + w_frac
        max_x = max(abs(prev_t.min_code), prev_t.max_code) * 2.0 ** -prev_t.frac
        need = max_x * 2.0 ** w_int * prev_n + 2.0 ** b_int
        need_int = max(1, math.ceil(math.log2(need + 1e-12)) + 1)
        accum = None
        if rng.random() < 0.5:
            a_frac = prod_frac + int(_pick(rng, [-2, -1, 0, 0, 0, 1, 2, 3], [0.05, 0.1, 0.25, 0.2, 0.1, 0.1, 0.1, 0.1]))
            a_int = need_int + int(_pick(rng, [-3, -1, 0, 0, 1, 2]))
            a_w = max(2, min(a_frac + a_int, 48))
            a_int = a_w - a_frac
            ovf = _pick(rng, list(OVERFLOW_MODES), [0.6, 0.14, 0.13, 0.13])
            q = _pick(rng, list(QUANT_MODES))
            signed = bool(rng.random() < 0.9)
            accum = f"{'fixed' if signed else 'ufixed'}<{a_w},{a_int},AP_{q},AP_{ovf}>"
        # result override: always when nothing narrows the result (keeps codes far below 2**53)
        result = None
        if act is None or rng.random() < 0.3:
            r_w = int(rng.integers(2, 19))
            result = _prec(rng, r_w, int(rng.integers(-2, r_w + 3)), bool(rng.random() < 0.85))
        act_result = None
        if act is not None and rng.random() < 0.2:
            a_w = int(rng.integers(2, 13))
            act_result = _prec(rng, a_w, int(rng.integers(-1, a_w + 2)), bool(rng.random() < 0.5))
        d = DenseSpec(f"fc{k}", n_out, w_bits, w_int, b_bits, b_int, sparsity, act, reuse, accum, result,
                      act_result)
        layers.append(d)
        prev_t = _layer_out_type(d, prev_t, prod_frac, need_int)
        prev_n = n_out
    return CaseSpec(seed, index, n_in, input_q, input_precision, tuple(layers))


def _qbits_type(bits: int, integer: int, keep_negative: bool) -> FixedType:
    """The grid of quantized_bits(bits, integer, keep_negative) (hls4ml may widen it by a bit)."""
    if keep_negative:
        return FixedType(bits, integer + 1, True)
    return FixedType(bits, integer, False)


def _layer_out_type(d: DenseSpec, in_t: FixedType, prod_frac: int, need_int: int) -> FixedType:
    """An estimate of the type the next layer sees (only used to pick its accum override)."""
    if d.act_result:
        return parse_precision(d.act_result)
    if d.act is not None and d.act[0] == "relu":
        return FixedType(d.act[1], d.act[2], False)
    if d.act is not None:
        return FixedType(d.act[1], d.act[2] + 1, True)
    if d.result:
        return parse_precision(d.result)
    return FixedType(need_int + prod_frac, need_int)  # pragma: no cover - linear layers get a result


# ----------------------------------------------------------------------------- model + config

def weight_codes(rng: np.random.Generator, shape: tuple[int, ...], bits: int, sparsity: float) -> np.ndarray:
    codes = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=shape, dtype=np.int64)
    if sparsity > 0:
        codes[rng.random(shape) < sparsity] = 0
    return codes


def build_model(spec: CaseSpec) -> Any:
    """The QKeras model of ``spec``, with weights set directly on the quantizers' grids."""
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu

    rng = np.random.default_rng([spec.seed, spec.index, 1])
    x_in = tf.keras.Input(shape=(spec.n_in,), name="x_in")
    x = x_in
    if spec.input_q:
        b, i, kn = spec.input_q
        x = QActivation(quantized_bits(b, i, keep_negative=kn, alpha=1), name="inq")(x)
    dense_layers = []
    for k, d in enumerate(spec.layers):
        layer = QDense(d.n_out, kernel_quantizer=quantized_bits(d.w_bits, d.w_int, alpha=1),
                       bias_quantizer=quantized_bits(d.b_bits, d.b_int, alpha=1), name=d.name)
        x = layer(x)
        dense_layers.append(layer)
        if d.act is not None:
            kind, ab, ai = d.act
            q = quantized_relu(ab, ai) if kind == "relu" else quantized_bits(ab, ai, alpha=1)
            x = QActivation(q, name=f"act{k}")(x)
    model = tf.keras.Model(x_in, x, name=f"fuzz_{spec.seed}_{spec.index}")
    for d, layer in zip(spec.layers, dense_layers):
        kernel_shape = tuple(int(s) for s in layer.kernel.shape)
        kc = weight_codes(rng, kernel_shape, d.w_bits, d.sparsity)
        bc = weight_codes(rng, (d.n_out,), d.b_bits, 0.2)
        layer.set_weights([kc * 2.0 ** -(d.w_bits - 1 - d.w_int), bc * 2.0 ** -(d.b_bits - 1 - d.b_int)])
    return model


def case_config(spec: CaseSpec, vectors: int = 300) -> Config:
    precision: dict[str, dict[str, str]] = {}
    for k, d in enumerate(spec.layers):
        p = {kk: v for kk, v in (("accum", d.accum), ("result", d.result)) if v}
        if p:
            precision[d.name] = p
        if d.act_result:
            precision[f"act{k}"] = {"result": d.act_result}
    return from_dict({
        "output_dir": "unused",
        "hls": {"strategy": "Latency", "reuse_factor": 1,
                "layer_reuse_factor": {d.name: d.reuse_factor for d in spec.layers},
                "input_precision": spec.input_precision if spec.input_q is None else "auto",
                "layer_precision": precision, "strip_softmax": True},
        "verify": {"random_vectors": vectors, "seed": spec.index + 1},
    })
