"""The hardware IR: what the RTL backend needs from hls4ml's converted graph, as plain data.

The convert stage extracts it from the ModelGraph (final types after hls4ml's passes, weights as
integer codes, reuse factors) into ``<run>/hls/graph.json``; the RTL generator, the golden model
and the report read only this file, so they never depend on hls4ml internals.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from codesign.errors import RtlGenError
from codesign.fixedpoint import FixedType, cast
from codesign.fixedpoint import from_hls4ml as precision_to_type
from codesign.rundir import read_json, write_json

GRAPH_FORMAT = 1
#: Layer kinds the RTL backend implements.
KINDS = ("dense", "conv", "pool", "relu", "cast")


@dataclass(frozen=True)
class Geometry:
    """A sliding window over a channel-last image (hls4ml io_parallel layout: index (h*W + w)*C + c).

    Conv1D / Pooling1D use ``in_h = k_h = out_h = 1``. ``pad_*`` are hls4ml's computed paddings.
    """

    in_h: int
    in_w: int
    n_chan: int
    k_h: int
    k_w: int
    stride_h: int
    stride_w: int
    pad_top: int
    pad_left: int
    out_h: int
    out_w: int
    count_pad: bool = False  #: average pooling: divide by the full window, padding included

    @property
    def pixels(self) -> int:
        return self.out_h * self.out_w

    def windows(self) -> np.ndarray:
        """pixels x (k_h*k_w): input pixel index of each window tap, -1 where it falls in padding.

        Taps are in hls4ml's im2col order (row of the window, then column)."""
        out = np.full((self.pixels, self.k_h * self.k_w), -1, dtype=np.int64)
        for oh in range(self.out_h):
            for ow in range(self.out_w):
                for kh in range(self.k_h):
                    for kw in range(self.k_w):
                        h = oh * self.stride_h + kh - self.pad_top
                        w = ow * self.stride_w + kw - self.pad_left
                        if 0 <= h < self.in_h and 0 <= w < self.in_w:
                            out[oh * self.out_w + ow, kh * self.k_w + kw] = h * self.in_w + w
        return out

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class Layer:
    """One layer of the hardware IR."""

    name: str
    kind: str
    n_in: int
    n_out: int
    in_type: FixedType
    out_type: FixedType
    source: str = ""  #: hls4ml class (and activation) it came from, for messages
    accum_type: FixedType | None = None
    weights: np.ndarray | None = None  #: n_in x n_out integer codes
    weight_frac: int = 0
    bias: np.ndarray | None = None  #: n_out integer codes
    bias_frac: int = 0
    reuse_factor: int = 1
    strategy: str = "latency"
    #: "exact" (x*w computed exactly) or "po2" (hls4ml's weight_exponential: x shifted by the
    #: weight's exponent inside ``product_type``, truncating, then negated for negative weights).
    product: str = "exact"
    product_type: FixedType | None = None
    #: conv / pool: the sliding window (conv weights are then the k_h*k_w*n_chan x n_filt kernel)
    geometry: Geometry | None = None
    #: pool: "max" or "avg"
    pool_op: str = ""

    @property
    def nonzero_weights(self) -> int:
        return int(np.count_nonzero(self.weights)) if self.weights is not None else 0

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name, "kind": self.kind, "n_in": self.n_in, "n_out": self.n_out,
            "in_type": self.in_type.to_json(), "out_type": self.out_type.to_json(), "source": self.source,
            "reuse_factor": self.reuse_factor, "strategy": self.strategy,
        }
        if self.geometry is not None:
            d["geometry"] = self.geometry.to_json()
        if self.kind == "pool":
            assert self.accum_type is not None
            d.update(pool_op=self.pool_op, accum_type=self.accum_type.to_json())
        if self.kind in ("dense", "conv"):
            assert self.weights is not None and self.bias is not None and self.accum_type is not None
            d.update(
                accum_type=self.accum_type.to_json(), weights=self.weights.tolist(),
                weight_frac=self.weight_frac, bias=self.bias.tolist(), bias_frac=self.bias_frac,
                nonzero_weights=self.nonzero_weights, product=self.product,
            )
            if self.product_type is not None:
                d["product_type"] = self.product_type.to_json()
        return d


def dense_equivalent(layer: Layer) -> Layer:
    """A conv layer as the Dense layer it computes: one weight-shared kernel per output pixel.

    Output (pixel p, filter f) sums kernel[(tap*C + c), f] * x[window[p, tap]*C + c] over the
    taps inside the image, in hls4ml's im2col order; padded taps multiply zero and drop out (a
    zero product leaves wrapping and saturating accumulators alike unchanged). Input index order
    follows tap order, so the golden model's input-by-input accumulation keeps hls4ml's order.
    """
    if layer.kind != "conv":
        return layer
    g, k = layer.geometry, layer.weights
    assert g is not None and k is not None and layer.bias is not None
    n_filt = k.shape[1]
    w = np.zeros((layer.n_in, g.pixels * n_filt), dtype=np.int64)
    for p, taps in enumerate(g.windows()):
        for t, pix in enumerate(taps):
            if pix >= 0:
                rows = slice(t * g.n_chan, (t + 1) * g.n_chan)
                w[pix * g.n_chan : (pix + 1) * g.n_chan, p * n_filt : (p + 1) * n_filt] = k[rows]
    return replace(layer, kind="dense", weights=w, bias=np.tile(layer.bias, g.pixels))


@dataclass(frozen=True)
class Graph:
    """A feed-forward chain of layers from the input type to the output type."""

    input_type: FixedType
    n_in: int
    layers: tuple[Layer, ...]
    softmax_stripped: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def output_type(self) -> FixedType:
        return self.layers[-1].out_type if self.layers else self.input_type

    @property
    def n_out(self) -> int:
        return self.layers[-1].n_out if self.layers else self.n_in

    def to_json(self) -> dict[str, Any]:
        return {
            "format": GRAPH_FORMAT, "input": {"n": self.n_in, "type": self.input_type.to_json()},
            "output": {"n": self.n_out, "type": self.output_type.to_json()},
            "softmax_stripped": self.softmax_stripped, "notes": list(self.notes),
            "layers": [layer.to_json() for layer in self.layers],
        }

    def save(self, path: Path) -> None:
        write_json(path, self.to_json())


def _type(d: dict[str, Any]) -> FixedType:
    return FixedType(d["width"], d["integer"], d["signed"], d["rounding"], d["overflow"])


def load(path: Path) -> Graph:
    data = read_json(path)
    if data.get("format") != GRAPH_FORMAT:
        raise RtlGenError(f"{path}: graph format {data.get('format')!r}, expected {GRAPH_FORMAT}")
    layers = []
    for d in data["layers"]:
        extra: dict[str, Any] = {}
        if "geometry" in d:
            extra["geometry"] = Geometry(**d["geometry"])
        if d["kind"] == "pool":
            extra.update(pool_op=d["pool_op"], accum_type=_type(d["accum_type"]))
        if d["kind"] in ("dense", "conv"):
            w = np.array(d["weights"], dtype=np.int64)
            extra.update(
                accum_type=_type(d["accum_type"]), weights=w.reshape(-1, len(d["bias"])), weight_frac=d["weight_frac"],
                bias=np.array(d["bias"], dtype=np.int64), bias_frac=d["bias_frac"],
                product=d.get("product", "exact"),
                product_type=_type(d["product_type"]) if d.get("product_type") else None,
            )
        layers.append(Layer(
            name=d["name"], kind=d["kind"], n_in=d["n_in"], n_out=d["n_out"], in_type=_type(d["in_type"]),
            out_type=_type(d["out_type"]), source=d.get("source", ""), reuse_factor=d["reuse_factor"],
            strategy=d["strategy"], **extra,
        ))
    return Graph(_type(data["input"]["type"]), data["input"]["n"], tuple(layers),
                 data.get("softmax_stripped", False), tuple(data.get("notes", ())))


def _grid_codes(values: np.ndarray, what: str, max_frac: int = 48) -> tuple[np.ndarray, int]:
    """Smallest fractional bit count that puts every value on an integer grid, and the codes."""
    values = np.asarray(values, dtype=np.float64)
    for frac in range(0, max_frac + 1):
        scaled = values * (2.0 ** frac)
        if np.all(scaled == np.rint(scaled)):
            return np.rint(scaled).astype(np.int64), frac
    raise RtlGenError(f"{what}: values are not on a binary fixed-point grid with <= {max_frac} fractional bits")


def from_hls4ml(hls_model: Any, softmax_stripped: bool = False) -> Graph:
    """Extract the hardware IR from a converted hls4ml ModelGraph (io_parallel, one input)."""
    layers_in = list(hls_model.get_layers())
    if not layers_in or layers_in[0].class_name not in ("Input", "InputLayer"):
        raise RtlGenError("hls4ml graph does not start with an Input layer")
    inp = layers_in[0]
    in_var = inp.get_output_variable()
    in_type = precision_to_type(in_var.type.precision)
    n_in = int(np.prod(in_var.shape))
    prev_type, prev_n = in_type, n_in
    layers: list[Layer] = []
    for hl in layers_in[1:]:
        out_var = hl.get_output_variable()
        out_t = _layer_type(hl, out_var.type.precision, "result")
        n_out = int(np.prod(out_var.shape))
        cls = hl.class_name
        act = (hl.get_attr("activation") or "").lower()
        source = f"{cls}({act})" if act else cls
        rf = int(hl.get_attr("reuse_factor") or 1)
        strategy = str(hl.get_attr("strategy") or "latency").lower()
        if cls == "Dense":
            w = _csim_values(hl.weights["weight"], f"layer {hl.name} weights")
            b = _csim_values(hl.weights["bias"], f"layer {hl.name} biases")
            if hl.get_attr("_weights_transposed", False):  # hls4ml's resource strategy stores W^T
                w = np.transpose(w)
            if _is_binary(hl):  # weight_binary: bit 0 means -1 (the product is w == 0 ? -a : a)
                w = np.where(w == 0, -1.0, 1.0)
            wc, wf = _grid_codes(w, f"layer {hl.name} weights")
            bc, bf = _grid_codes(b, f"layer {hl.name} biases")
            product, product_type = _product(hl, prev_type, wc)
            layers.append(Layer(
                name=hl.name, kind="dense", n_in=prev_n, n_out=n_out, in_type=prev_type, out_type=out_t,
                source=source, accum_type=_layer_type(hl, hl.types["accum_t"].precision, "accum"),
                weights=wc.reshape(prev_n, n_out), weight_frac=wf, bias=bc.reshape(n_out), bias_frac=bf,
                reuse_factor=rf, strategy=strategy, product=product, product_type=product_type,
            ))
        elif cls in CONV_CLASSES:
            layers.append(_conv(hl, prev_type, prev_n, out_t, n_out, source, rf, strategy))
        elif cls in ("Pooling1D", "Pooling2D"):
            layers.append(_pool(hl, prev_type, prev_n, out_t, n_out, source))
        elif cls in ("Reshape", "Flatten"):
            # io_parallel arrays are flat and channel-last: Flatten / Reshape move no data
            if n_out != prev_n:
                raise RtlGenError(f"layer {hl.name}: {cls} changes the element count {prev_n} -> {n_out}")
            continue
        elif cls == "BatchNormalization":
            layers.append(_batchnorm(hl, prev_type, prev_n, out_t, n_out, source))
        elif cls in ("Activation", "ReLU") and act in ("relu", "linear"):
            kind = "relu" if act == "relu" else "cast"
            layers.append(Layer(name=hl.name, kind=kind, n_in=prev_n, n_out=n_out, in_type=prev_type,
                                out_type=out_t, source=source, reuse_factor=rf, strategy=strategy))
        else:
            # Recorded so the RTL stage can refuse it by name; conversion and C-sim still work.
            layers.append(Layer(name=hl.name, kind=f"unsupported:{source}", n_in=prev_n, n_out=n_out,
                                in_type=prev_type, out_type=out_t, source=source))
        prev_type, prev_n = out_t, n_out
    return Graph(in_type, n_in, tuple(layers), softmax_stripped)


#: hls4ml classes computed by conv_1d/2d_latency_cl (im2col + the Dense product/accumulate).
CONV_CLASSES = ("Conv1D", "Conv2D", "PointwiseConv1D", "PointwiseConv2D", "Conv2DBatchnorm")


def _geometry(hl: Any, two_d: bool, k_h: int, k_w: int, n_chan: int, count_pad: bool = False) -> Geometry:
    a = hl.get_attr
    if two_d:
        return Geometry(int(a("in_height")), int(a("in_width")), n_chan, k_h, k_w, int(a("stride_height")),
                        int(a("stride_width")), int(a("pad_top")), int(a("pad_left")), int(a("out_height")),
                        int(a("out_width")), count_pad)
    in_w = int(a("in_width") if a("in_width") is not None else a("n_in"))
    out_w = int(a("out_width") if a("out_width") is not None else a("n_out"))
    return Geometry(1, in_w, n_chan, 1, k_w, 1, int(a("stride_width")), 0, int(a("pad_left")), 1, out_w, count_pad)


def _conv(hl: Any, in_t: FixedType, n_in: int, out_t: FixedType, n_out: int, source: str, rf: int,
          strategy: str) -> Layer:
    a = hl.get_attr
    two_d = a("filt_height") is not None and "1D" not in hl.class_name
    k_h, k_w = (int(a("filt_height")), int(a("filt_width"))) if two_d else (1, int(a("filt_width")))
    n_chan, n_filt = int(a("n_chan")), int(a("n_filt"))
    for attr in ("dilation_height", "dilation_width", "dilation"):
        if int(a(attr) or 1) != 1:
            raise RtlGenError(f"layer {hl.name}: dilated convolutions ({attr}={a(attr)}) are not supported")
    geom = _geometry(hl, two_d, k_h, k_w, n_chan)
    if geom.in_h * geom.in_w * n_chan != n_in or geom.pixels * n_filt != n_out:
        raise RtlGenError(f"layer {hl.name}: geometry {geom} does not match {n_in} inputs / {n_out} outputs")
    w = _csim_values(hl.weights["weight"], f"layer {hl.name} weights")
    b = _csim_values(hl.weights["bias"], f"layer {hl.name} biases")
    k = k_h * k_w * n_chan
    if hl.get_attr("_weights_transposed", False) or w.size != k * n_filt:
        raise RtlGenError(f"layer {hl.name}: kernel layout {w.shape} (strategy {strategy}) is not the "
                          f"{k_h}x{k_w}x{n_chan}x{n_filt} kernel of the Latency strategy",
                          hint="use the Latency strategy for convolutions (hls.layer_strategy)")
    wc, wf = _grid_codes(w, f"layer {hl.name} weights")
    bc, bf = _grid_codes(b, f"layer {hl.name} biases")
    product, product_type = _product(hl, in_t, wc)
    return Layer(
        name=hl.name, kind="conv", n_in=n_in, n_out=n_out, in_type=in_t, out_type=out_t, source=source,
        accum_type=_layer_type(hl, hl.types["accum_t"].precision, "accum"), weights=wc.reshape(k, n_filt),
        weight_frac=wf, bias=bc.reshape(n_filt), bias_frac=bf, reuse_factor=rf, strategy=strategy,
        product=product, product_type=product_type, geometry=geom,
    )


def _pool(hl: Any, in_t: FixedType, n_in: int, out_t: FixedType, n_out: int, source: str) -> Layer:
    a = hl.get_attr
    two_d = hl.class_name == "Pooling2D"
    k_h, k_w = (int(a("pool_height")), int(a("pool_width"))) if two_d else (1, int(a("pool_width")))
    geom = _geometry(hl, two_d, k_h, k_w, int(a("n_filt")), bool(a("count_pad")))
    if geom.in_h * geom.in_w * geom.n_chan != n_in or geom.pixels * geom.n_chan != n_out:
        raise RtlGenError(f"layer {hl.name}: geometry {geom} does not match {n_in} inputs / {n_out} outputs")
    op = {"Max": "max", "Average": "avg"}.get(str(a("pool_op")))
    if op is None:
        raise RtlGenError(f"layer {hl.name}: pooling operation {a('pool_op')!r} is not supported; valid: Max, Average")
    return Layer(name=hl.name, kind="pool", n_in=n_in, n_out=n_out, in_type=in_t, out_type=out_t,
                 source=f"{source}({op})", accum_type=_layer_type(hl, hl.types["accum_t"].precision, "accum"),
                 geometry=geom, pool_op=op)


def _batchnorm(hl: Any, in_t: FixedType, n_in: int, out_t: FixedType, n_out: int, source: str) -> Layer:
    """hls4ml's ``normalize``: ``(res_T)(x*scale + bias)`` with the sum exact, as a diagonal Dense
    whose accumulator is wide enough to be exact (so only the final cast rounds)."""
    s = _csim_values(hl.weights["scale"], f"layer {hl.name} scale").ravel()
    b = _csim_values(hl.weights["bias"], f"layer {hl.name} bias").ravel()
    n_filt = int(hl.get_attr("n_filt") or -1)
    idx = np.arange(n_in) % n_filt if n_filt > 0 else np.arange(n_in)
    if n_out != n_in or idx.max() >= len(s) or len(s) != len(b):
        raise RtlGenError(f"layer {hl.name}: {len(s)} scales / {len(b)} biases for {n_in} inputs")
    sc, sf = _grid_codes(s[idx], f"layer {hl.name} scale")
    bc, bf = _grid_codes(b[idx], f"layer {hl.name} bias")
    frac = max(in_t.frac + sf, bf)
    prod = np.stack([sc * in_t.min_code, sc * in_t.max_code])
    lo = (prod.min(axis=0) << (frac - in_t.frac - sf)) + (bc << (frac - bf))
    hi = (prod.max(axis=0) << (frac - in_t.frac - sf)) + (bc << (frac - bf))
    width = max(int(v).bit_length() for v in (*lo.tolist(), *hi.tolist(), 1)) + 2
    acc_t = FixedType(width, width - frac, True, "TRN", "WRAP")
    return Layer(name=hl.name, kind="dense", n_in=n_in, n_out=n_out, in_type=in_t, out_type=out_t,
                 source=source, accum_type=acc_t, weights=np.diag(sc), weight_frac=sf, bias=bc, bias_frac=bf,
                 reuse_factor=1, strategy="latency")


def _is_binary(hl: Any) -> bool:
    from hls4ml.model.types import XnorPrecisionType

    return isinstance(hl.weights["weight"].type.precision, XnorPrecisionType)


def _product(hl: Any, in_type: FixedType, weight_codes: np.ndarray) -> tuple[str, FixedType | None]:
    """How hls4ml multiplies this layer's weights (``nnet_mult.h``): exactly, or by exponent."""
    from hls4ml.model.types import ExponentPrecisionType, FixedPrecisionType, IntegerPrecisionType

    prec = hl.weights["weight"].type.precision
    if isinstance(prec, ExponentPrecisionType):
        # weight_exponential<x_T, w_T>::r_T = ap_fixed<2*(E + W_x), E + W_x>, E = exponent width
        e_w = int(prec.width)
        return "po2", FixedType(2 * (e_w + in_type.width), e_w + in_type.width)
    if _is_binary(hl):  # -a or a: exact, like a multiplication by -1 or +1
        return "exact", None
    if not isinstance(prec, (FixedPrecisionType, IntegerPrecisionType)):
        raise RtlGenError(f"layer {hl.name}: weight type {type(prec).__name__} ({prec}) is not supported; "
                          f"supported: ap_fixed / ap_int (incl. ternary), binary and power-of-two (quantized_po2) weights")
    return "exact", None


def _csim_values(var: Any, what: str) -> np.ndarray:
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


def _layer_type(hl: Any, precision: Any, what: str) -> FixedType:
    try:
        return precision_to_type(precision)
    except ValueError as e:
        raise RtlGenError(f"layer {hl.name}: {what} type {precision}: {e}") from e
