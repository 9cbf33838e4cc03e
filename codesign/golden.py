"""Integer golden model of the hardware IR: the same casts, in the same order, as hls4ml's C++.

Dense (``nnet_dense_latency.h``): every product ``x*w`` is exact, then converted to accum_t; the
accumulator starts at ``(accum_t)bias`` and adds the products in accum_t, input by input; the
result is ``(result_t)acc``. ReLU is ``x > 0 ? (result_t)x : 0``; linear is ``(result_t)x``.

Conv1D/2D (``nnet_conv*_latency.h``): the same product/accumulate per output pixel over its
im2col window, so it is computed as its Dense equivalent (:func:`codesign.graph.dense_equivalent`).
Pooling (``nnet_pooling.h``): max returns the window's largest input converted to accum_t;
average adds the inputs one by one in accum_t, then divides by the tap count (truncating toward
zero, as ap_fixed's ``/=`` by an integer); both then convert to result_t. Padded taps hold
hls4ml's ``pad_val``: 0 for average, the code with only the top bit set for max.
"""

from __future__ import annotations

import numpy as np

from codesign.fixedpoint import cast
from codesign.graph import Graph, Layer, dense_equivalent


def po2_products(layer: Layer, x_col: np.ndarray, w_row: np.ndarray) -> np.ndarray:
    """hls4ml's ``weight_exponential``: ``y = (r_T)x << e`` (a right shift for e < 0 drops bits:
    floor), then ``sign ? y : (r_T)(-y)``; codes of ``product_type``. x_col: N x 1, w_row: n_out."""
    r_t = layer.product_type
    assert r_t is not None
    xr = cast(x_col, layer.in_type.frac, r_t)
    w_real = w_row.astype(np.float64) * 2.0 ** -layer.weight_frac
    with np.errstate(divide="ignore"):
        e = np.rint(np.log2(np.abs(np.where(w_row == 0, 1.0, w_real)))).astype(np.int64)
    # hls4ml writes a zero weight as exponent int(log2(0)) = INT64_MIN, which the E-bit exponent
    # field wraps to 0, with the sign bit of a non-negative value: the C-sim multiplies by +1.
    e = np.where(w_row == 0, po2_zero_exponent(layer), e)
    left = np.where(e > 0, e, 0)[None, :]
    right = np.where(e < 0, -e, 0)[None, :]
    y = cast((xr << left) >> right, r_t.frac, r_t)  # same type: only the wrap of a left shift
    return np.where(w_row[None, :] >= 0, y, cast(-y, r_t.frac, r_t))


def po2_zero_exponent(layer: Layer) -> int:
    """The exponent hls4ml's C-sim ends up with for a zero power-of-two weight (see po2_products)."""
    assert layer.product_type is not None
    e_bits = layer.product_type.integer - layer.in_type.width
    code = (-(1 << 63)) & ((1 << e_bits) - 1)
    return code - (1 << e_bits) if code >> (e_bits - 1) else code


def dense(layer: Layer, x: np.ndarray) -> np.ndarray:
    assert layer.weights is not None and layer.bias is not None and layer.accum_type is not None
    acc_t = layer.accum_type
    po2 = layer.product == "po2"
    prod_frac = layer.product_type.frac if po2 and layer.product_type else layer.in_type.frac + layer.weight_frac
    acc = np.broadcast_to(cast(layer.bias, layer.bias_frac, acc_t), (len(x), layer.n_out)).copy()
    wrap = acc_t.overflow == "WRAP"
    for i in range(layer.n_in):  # hls4ml's order: input by input, all outputs
        raw = po2_products(layer, x[:, i : i + 1], layer.weights[i]) if po2 else x[:, i : i + 1] * layer.weights[i][None, :]
        prod = cast(raw, prod_frac, acc_t)
        acc = acc + prod
        if not wrap:  # saturating accumulators depend on the order: apply after every add
            acc = cast(acc, acc_t.frac, acc_t)
    if wrap:  # modular: one wrap at the end equals a wrap after every add
        acc = cast(acc, acc_t.frac, acc_t)
    return cast(acc, acc_t.frac, layer.out_type)


def pool_pad_code(layer: Layer) -> int:
    """hls4ml's ``pad_val`` for a padded tap of max pooling: a code with only the top bit set
    (the most negative value of a signed type, but half the range of an unsigned one)."""
    t = layer.in_type
    return t.min_code if t.signed else 1 << (t.width - 1)


def pool(layer: Layer, x: np.ndarray) -> np.ndarray:
    g, acc_t, in_t = layer.geometry, layer.accum_type, layer.in_type
    assert g is not None and acc_t is not None
    c = g.n_chan
    out = np.zeros((len(x), layer.n_out), dtype=np.int64)
    for p, taps in enumerate(g.windows()):
        length = len(taps) if g.count_pad else int(np.count_nonzero(taps >= 0))
        for ch in range(c):
            if layer.pool_op == "max":
                cols = [x[:, t * c + ch] if t >= 0 else np.full(len(x), pool_pad_code(layer)) for t in taps]
                y = cast(np.max(np.stack(cols), axis=0), in_t.frac, acc_t)
            else:
                frac = max(acc_t.frac, in_t.frac)
                y = np.zeros(len(x), dtype=np.int64)
                for t in taps:
                    xi = x[:, t * c + ch] if t >= 0 else np.zeros(len(x), dtype=np.int64)
                    y = cast((y << (frac - acc_t.frac)) + (xi << (frac - in_t.frac)), frac, acc_t)
                y = np.where(y >= 0, y // length, -((-y) // length))
            out[:, p * c + ch] = cast(y, acc_t.frac, layer.out_type)
    return out


def run_layer(layer: Layer, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.int64)
    if layer.kind == "dense":
        return dense(layer, x)
    if layer.kind == "conv":
        return dense(dense_equivalent(layer), x)
    if layer.kind == "pool":
        return pool(layer, x)
    if layer.kind == "relu":
        return np.where(x > 0, cast(x, layer.in_type.frac, layer.out_type), 0)
    if layer.kind == "cast":
        return cast(x, layer.in_type.frac, layer.out_type)
    raise ValueError(f"layer {layer.name}: golden model has no {layer.kind!r}")


def layer_outputs(graph: Graph, in_codes: np.ndarray, chunk: int = 2048) -> dict[str, np.ndarray]:
    """Every layer's output codes for N input vectors (N x n_in codes of the input type)."""
    in_codes = np.asarray(in_codes, dtype=np.int64)
    outs: dict[str, list[np.ndarray]] = {layer.name: [] for layer in graph.layers}
    layers = [dense_equivalent(layer) for layer in graph.layers]  # convs expanded once, not per chunk
    for start in range(0, len(in_codes), chunk):
        x = in_codes[start : start + chunk]
        for layer in layers:
            x = run_layer(layer, x)
            outs[layer.name].append(x)
    return {k: (np.concatenate(v) if v else np.zeros((0, 0), np.int64)) for k, v in outs.items()}


def predict(graph: Graph, in_codes: np.ndarray) -> np.ndarray:
    """Output codes of the whole network."""
    return layer_outputs(graph, in_codes)[graph.layers[-1].name]
