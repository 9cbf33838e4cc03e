"""Max / average pooling 1D and 2D: hls4ml's ``pooling1d/2d_cl`` (``nnet_pooling.h``).

Golden model: max returns the window's largest input converted to accum_t; average adds the
inputs one by one in accum_t, then divides by the tap count (truncating toward zero, as ap_fixed's
``/=`` by an integer); both then convert to result_t. Padded taps hold hls4ml's ``pad_val``: 0 for
average, the code with only the top bit set for max. RTL: parallel comparator / adder trees.
"""

from __future__ import annotations

from typing import Any

import jinja2
import numpy as np

from codesign.arch import pool as pool_arch
from codesign.errors import RtlGenError
from codesign.fixedpoint import cast, max_pool_pad_code
from codesign.graph import Layer
from codesign.layers import extract
from codesign.layers.base import LayerKind, Rendered, RenderOptions, Upstream, module_header


class Pool(LayerKind):
    kind = "pool"
    hls4ml_classes = ("Pooling1D", "Pooling2D")
    keras_classes = ("MaxPooling1D", "AveragePooling1D", "MaxPooling2D", "AveragePooling2D")
    supported = "Max/AveragePooling1D/2D"

    def extract(self, hl: Any, up: Upstream) -> Layer:
        a = hl.get_attr
        two_d = hl.class_name == "Pooling2D"
        k_h, k_w = (int(a("pool_height")), int(a("pool_width"))) if two_d else (1, int(a("pool_width")))
        geom = extract.geometry(hl, two_d, k_h, k_w, int(a("n_filt")), bool(a("count_pad")))
        extract.check_geometry(hl, geom, up.n_in, up.n_out, geom.n_chan)
        op = {"Max": "max", "Average": "avg"}.get(str(a("pool_op")))
        if op is None:
            raise RtlGenError(f"layer {hl.name}: pooling operation {a('pool_op')!r} is not supported; valid: Max, Average")
        return Layer(name=hl.name, kind="pool", n_in=up.n_in, n_out=up.n_out, in_type=up.in_type,
                     out_type=up.out_type, source=f"{up.source}({op})", accum_type=extract.accum_type(hl),
                     geometry=geom, pool_op=op)

    def golden(self, layer: Layer, x: np.ndarray) -> np.ndarray:
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
