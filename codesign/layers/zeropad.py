"""ZeroPadding1D / 2D: hls4ml's ``zeropad1d/2d_cl`` (``nnet_padding*.h``).

Under io_stream, hls4ml's ``insert_zero_padding_before_conv1d/2d`` pass puts a ZeroPadding node
before every padded convolution and makes the convolution 'valid'. The pad holds code 0 of the
input type, so a convolution over the padded image equals the convolution with its padding taps
dropped (a zero product leaves every accumulator unchanged): :func:`absorb` folds such a node back
into the convolution's geometry, whose window generator shifts in the zeros itself. A ZeroPadding
the user placed elsewhere stays a layer of its own (golden model: the image copied into a zero
border); the RTL backend refuses it by name.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from codesign.graph import Geometry, Layer
from codesign.layers import extract
from codesign.layers.base import LayerKind, Upstream


class ZeroPad(LayerKind):
    kind = "zeropad"
    hls4ml_classes = ("ZeroPadding1D", "ZeroPadding2D")
    keras_classes = ("ZeroPadding1D", "ZeroPadding2D")
    supported = "ZeroPadding1D/2D before a convolution"
    streams = True  # folded into the convolution it precedes (absorb)

    def extract(self, hl: Any, up: Upstream) -> Layer:
        a = hl.get_attr
        two_d = hl.class_name == "ZeroPadding2D"
        if two_d:
            geom = Geometry(int(a("in_height")), int(a("in_width")), int(a("n_chan")), 1, 1, 1, 1,
                            int(a("pad_top")), int(a("pad_left")), int(a("out_height")), int(a("out_width")))
        else:
            geom = Geometry(1, int(a("in_width")), int(a("n_chan")), 1, 1, 1, 1, 0, int(a("pad_left")), 1,
                            int(a("out_width")))
        extract.check_geometry(hl, geom, up.n_in, up.n_out, geom.n_chan)
        return Layer(name=hl.name, kind="zeropad", n_in=up.n_in, n_out=up.n_out, in_type=up.in_type,
                     out_type=up.out_type, source=up.source, geometry=geom)

    def golden(self, layer: Layer, x: np.ndarray) -> np.ndarray:
        g = layer.geometry
        assert g is not None
        src = g.windows()[:, 0]  # 1x1 window: the input pixel of each output pixel, -1 in the border
        idx = (np.maximum(src, 0)[:, None] * g.n_chan + np.arange(g.n_chan)).reshape(-1)
        inside = np.repeat(src >= 0, g.n_chan)
        return np.where(inside, x[:, idx], 0)


def absorb(layers: list[Layer]) -> list[Layer]:
    """Fold each ZeroPadding directly followed by an unpadded convolution into that convolution
    (same padding amounts, same input type), as io_parallel would have padded it."""
    out: list[Layer] = []
    for layer in layers:
        prev = out[-1] if out else None
        g = layer.geometry
        if (prev is not None and prev.kind == "zeropad" and layer.kind == "conv" and g is not None
                and g.pad_top == 0 and g.pad_left == 0 and prev.in_type == prev.out_type):
            zp = prev.geometry
            assert zp is not None
            merged = replace(g, in_h=zp.in_h, in_w=zp.in_w, pad_top=zp.pad_top, pad_left=zp.pad_left)
            out[-1] = replace(layer, n_in=prev.n_in, in_type=prev.in_type, geometry=merged,
                              source=f"{prev.source}+{layer.source}")
        else:
            out.append(layer)
    return out


KIND = ZeroPad()
