"""Max / average pooling 1D and 2D: hls4ml's ``pooling1d/2d_cl`` (``nnet_pooling.h``).

Golden model: max returns the window's largest input converted to accum_t; average adds the
inputs one by one in accum_t, then divides by the tap count (truncating toward zero, as ap_fixed's
``/=`` by an integer); both then convert to result_t. Padded taps hold hls4ml's ``pad_val``: 0 for
average, the code with only the top bit set for max. RTL: parallel comparator / adder trees.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import jinja2
import numpy as np

from codesign.arch import pool as pool_arch
from codesign.arch import stream as stream_arch
from codesign.errors import RtlGenError
from codesign.fixedpoint import cast, max_pool_pad_code
from codesign.graph import Layer
from codesign.layers import extract
from codesign.layers.base import LayerKind, Rendered, RenderOptions, Upstream, module_header


def tree_split(n: int) -> int:
    """How ``nnet::reduce`` splits n > 2 operands: the left part is the largest power of two below n."""
    return 1 << ((n - 1).bit_length() - 1)


def golden_stream(layer: Layer, x: np.ndarray) -> np.ndarray:
    """``pooling1d/2d_buffer_cl`` (io_stream): each tap converted to accum_t, the window reduced by
    ``nnet::reduce`` (a balanced tree, every max / sum converted back to accum_t), an average divided
    by the tap count (truncating toward zero), then result_t. No padding (hls4ml asserts it)."""
    g, acc_t, in_t = layer.geometry, layer.accum_type, layer.in_type
    assert g is not None and acc_t is not None

    def reduce(cols: list[np.ndarray]) -> np.ndarray:
        if len(cols) == 1:
            return cols[0]
        if len(cols) == 2:
            a, b = cols
        else:
            k = tree_split(len(cols))
            a, b = reduce(cols[:k]), reduce(cols[k:])
        return np.maximum(a, b) if layer.pool_op == "max" else cast(a + b, acc_t.frac, acc_t)

    out = np.zeros((len(x), layer.n_out), dtype=np.int64)
    for p, taps in enumerate(g.windows()):
        for ch in range(g.n_chan):
            y = reduce([cast(x[:, t * g.n_chan + ch], in_t.frac, acc_t) for t in taps])
            if layer.pool_op == "avg":
                y = np.where(y >= 0, y // len(taps), -((-y) // len(taps)))
            out[:, p * g.n_chan + ch] = cast(y, acc_t.frac, layer.out_type)
    return out


class Pool(LayerKind):
    kind = "pool"
    hls4ml_classes = ("Pooling1D", "Pooling2D")
    keras_classes = ("MaxPooling1D", "AveragePooling1D", "MaxPooling2D", "AveragePooling2D")
    supported = "Max/AveragePooling1D/2D"
    streams = True

    def extract(self, hl: Any, up: Upstream) -> Layer:
        a = hl.get_attr
        two_d = hl.class_name == "Pooling2D"
        k_h, k_w = (int(a("pool_height")), int(a("pool_width"))) if two_d else (1, int(a("pool_width")))
        geom = extract.geometry(hl, two_d, k_h, k_w, int(a("n_filt")), bool(a("count_pad")))
        extract.check_geometry(hl, geom, up.n_in, up.n_out, geom.n_chan)
        if str(hl.model.config.get_config_value("IOType")) == "io_stream" and (
                geom.pad_top or geom.pad_left or (geom.stride_h, geom.stride_w) != (k_h, k_w)):
            raise RtlGenError(f"layer {hl.name}: hls4ml's io_stream pooling needs 'valid' padding and stride = pool "
                              f"size (got window {k_h}x{k_w}, stride {geom.stride_h}x{geom.stride_w}, padding "
                              f"{geom.pad_top},{geom.pad_left})", hint="use io_parallel (hls.io_type) for this model")
        op = {"Max": "max", "Average": "avg"}.get(str(a("pool_op")))
        if op is None:
            raise RtlGenError(f"layer {hl.name}: pooling operation {a('pool_op')!r} is not supported; valid: Max, Average")
        return Layer(name=hl.name, kind="pool", n_in=up.n_in, n_out=up.n_out, in_type=up.in_type,
                     out_type=up.out_type, source=f"{up.source}({op})", accum_type=extract.accum_type(hl),
                     geometry=geom, pool_op=op)

    def golden(self, layer: Layer, x: np.ndarray) -> np.ndarray:
        if layer.stream:
            return golden_stream(layer, x)
        g, acc_t, in_t = layer.geometry, layer.accum_type, layer.in_type
        assert g is not None and acc_t is not None
        c = g.n_chan
        out = np.zeros((len(x), layer.n_out), dtype=np.int64)
        for p, taps in enumerate(g.windows()):
            length = len(taps) if g.count_pad else int(np.count_nonzero(taps >= 0))
            for ch in range(c):
                if layer.pool_op == "max":
                    pad = np.full(len(x), max_pool_pad_code(in_t))
                    cols = [x[:, t * c + ch] if t >= 0 else pad for t in taps]
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

    def render_stream(self, env: jinja2.Environment, layer: Layer, module: str, opts: RenderOptions,
                      beats_in: int) -> list[Rendered]:
        """``pooling1d/2d_buffer_cl``: the window generator, then one registered reduction stage
        (:func:`codesign.arch.pool.build_stream`) per window."""
        g = layer.geometry
        assert g is not None
        if beats_in != g.in_h * g.in_w:
            raise RtlGenError(f"layer {layer.name}: {beats_in} stream beats per image; its {g.in_h}x{g.in_w} input "
                              f"needs {g.in_h * g.in_w}")
        text, handshake, win_extra = stream_arch.window(
            env, f"{module}_win", g, layer.in_type.width,
            f"layer {layer.name} ({layer.source}): {g.in_h}x{g.in_w}x{g.n_chan} x {layer.in_type} -> "
            f"{g.k_h}x{g.k_w} windows")
        win = Rendered(f"{module}_win", text, 1, 1, 0, True, (), win_extra, handshake)
        window = replace(layer, n_in=g.k_h * g.k_w * g.n_chan, n_out=g.n_chan)
        m, cost = pool_arch.build_stream(layer, module)
        text = env.get_template("dense_parallel.v.j2").render(m=m, n_stages=m.n_stages, **module_header(window, module))
        extra = {"architecture": f"stream ({'comparator' if layer.pool_op == 'max' else 'adder'} tree per window)",
                 "pool_op": layer.pool_op, "window": [g.k_h, g.k_w], "stride": [g.stride_h, g.stride_w],
                 "operators": cost.adders, **win_extra}
        tree = Rendered(module, text, cost.latency, cost.ii, 0, True, ("fxp_cast.v",), extra, ("pipeline", m.n_stages))
        return [win, tree]

    def beats_out(self, layer: Layer, beats_in: int) -> int:
        assert layer.geometry is not None
        return layer.geometry.pixels

    def render(self, env: jinja2.Environment, layer: Layer, module: str, opts: RenderOptions) -> Rendered:
        m, cost = pool_arch.build(layer, module)
        text = env.get_template("dense_parallel.v.j2").render(m=m, n_stages=m.n_stages, **module_header(layer, module))
        g = layer.geometry
        assert g is not None
        extra = {"architecture": "parallel comparator trees" if layer.pool_op == "max" else "parallel adder trees",
                 "pool_op": layer.pool_op, "window": [g.k_h, g.k_w], "stride": [g.stride_h, g.stride_w],
                 "operators": cost.adders}
        return Rendered(module, text, cost.latency, cost.ii, 0, True, ("fxp_cast.v",), extra)


KIND = Pool()
