"""UpSampling1D / 2D (nearest): hls4ml's ``Resize`` layer, ``resize_nearest`` (``nnet_image.h``,
``nnet_image_stream.h``). Values are copied, never cast (the output has the input's type).

io_parallel picks source pixel ``((i * ratio) >> 16)`` with ``ratio = (in << 16) / out + 1``, a
fixed-point scale; io_stream repeats every pixel ``out_w / in_w`` times and every row
``out_h / in_h`` times (hls4ml asserts the sizes divide). The RTL: wires (io_parallel); on
io_stream a row buffer that sends each row's first copy as its pixels arrive and the others from
the buffer (:func:`codesign.arch.stream.upsample`), one output pixel per cycle.
"""

from __future__ import annotations

from typing import Any

import jinja2
import numpy as np

from codesign.arch import stream as stream_arch
from codesign.errors import RtlGenError
from codesign.graph import Geometry, Layer
from codesign.layers import extract
from codesign.layers.base import LayerKind, Rendered, RenderOptions, Upstream, module_header


def source_pixels(layer: Layer) -> np.ndarray:
    """The input pixel of every output pixel, as hls4ml's implementation for the layer's io_type picks it."""
    g = layer.geometry
    assert g is not None
    if layer.stream:
        rows, cols = np.arange(g.out_h) // (g.out_h // g.in_h), np.arange(g.out_w) // (g.out_w // g.in_w)
    else:
        y_ratio, x_ratio = ((g.in_h << 16) // g.out_h) + 1, ((g.in_w << 16) // g.out_w) + 1
        rows, cols = (np.arange(g.out_h) * y_ratio) >> 16, (np.arange(g.out_w) * x_ratio) >> 16
    return (rows[:, None] * g.in_w + cols[None, :]).reshape(-1)


def _element_map(layer: Layer) -> np.ndarray:
    g = layer.geometry
    assert g is not None
    return (source_pixels(layer)[:, None] * g.n_chan + np.arange(g.n_chan)).reshape(-1)


class Resize(LayerKind):
    kind = "resize"
    hls4ml_classes = ("Resize",)
    keras_classes = ("UpSampling1D", "UpSampling2D")
    supported = "UpSampling1D/2D (nearest)"
    streams = True

    def extract(self, hl: Any, up: Upstream) -> Layer:
        a = hl.get_attr
        if str(a("algorithm") or "nearest") != "nearest" or a("align_corners"):
            raise RtlGenError(f"layer {hl.name}: resize algorithm {a('algorithm')!r} (align_corners "
                              f"{a('align_corners')}); the RTL builds nearest-neighbour upsampling only")
        h_in, h_out = int(a("in_height") or 1), int(a("out_height") or 1)
        w_in, w_out = int(a("in_width")), int(a("out_width"))
        geom = Geometry(h_in, w_in, int(a("n_chan")), 1, 1, 1, 1, 0, 0, h_out, w_out)
        extract.check_geometry(hl, geom, up.n_in, up.n_out, geom.n_chan)
        if up.out_type != up.in_type:
            raise RtlGenError(f"layer {hl.name}: resize from {up.in_type} to {up.out_type}; hls4ml copies the "
                              f"values, so the types must be equal")
        if h_out % h_in or w_out % w_in:
            raise RtlGenError(f"layer {hl.name}: {h_in}x{w_in} -> {h_out}x{w_out} is not an integer upsampling")
        return Layer(name=hl.name, kind="resize", n_in=up.n_in, n_out=up.n_out, in_type=up.in_type,
                     out_type=up.out_type, source=up.source, geometry=geom)

    def golden(self, layer: Layer, x: np.ndarray) -> np.ndarray:
        return x[:, _element_map(layer)]

    def render(self, env: jinja2.Environment, layer: Layer, module: str, opts: RenderOptions) -> Rendered:
        w = layer.in_type.width
        wires = [(j * w + w - 1, j * w, s * w + w - 1, s * w) for j, s in enumerate(_element_map(layer).tolist())]
        text = env.get_template("wires.v.j2").render(wires=wires, **module_header(layer, module))
        return Rendered(module, text, 0, 1, 0, False, (), {"architecture": "wires (nearest-neighbour copy)"})

    def render_stream(self, env: jinja2.Environment, layer: Layer, module: str, opts: RenderOptions,
                      beats_in: int) -> list[Rendered]:
        g = layer.geometry
        assert g is not None
        if beats_in != g.in_h * g.in_w:
            raise RtlGenError(f"layer {layer.name}: {beats_in} stream beats per image; its {g.in_h}x{g.in_w} input "
                              f"needs {g.in_h * g.in_w}")
        rw, rh = g.out_w // g.in_w, g.out_h // g.in_h
        text, handshake = stream_arch.upsample(
            env, module, g.in_w, rw, rh, g.n_chan * layer.in_type.width,
            f"layer {layer.name} ({layer.source}): {g.in_h}x{g.in_w}x{g.n_chan} -> {g.out_h}x{g.out_w}, nearest")
        extra = {"architecture": f"stream upsampling x{rh} x{rw} (row buffer {g.in_w if rh > 1 else 0} pixels)",
                 "line_buffer_pixels": g.in_w if rh > 1 else 0}
        return [Rendered(module, text, 1, 1, 0, True, (), extra, handshake)]

    def beats_out(self, layer: Layer, beats_in: int) -> int:
        assert layer.geometry is not None
        return layer.geometry.out_h * layer.geometry.out_w


KIND = Resize()
