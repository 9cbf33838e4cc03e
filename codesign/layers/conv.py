"""Conv1D / Conv2D: hls4ml's ``conv_1d/2d_latency_cl`` (io_parallel; ``nnet_conv*_latency.h``) and
``conv_1d/2d_buffer_cl`` (io_stream; ``nnet_conv*_stream.h``, :meth:`Conv.render_stream`).

Each output pixel computes the Dense product/accumulate of its im2col window, so the golden model
and the RTL both work on the layer's Dense equivalent (:func:`dense_equivalent`): fully parallel
over output pixels, every pixel with its own copy of the kernel's products; RF > 1 folds the
products of all pixels onto ceil(nonzeros / R) lanes.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import jinja2
import numpy as np

from codesign.arch import stream as stream_arch
from codesign.arch.netlist import FusedActivation
from codesign.errors import RtlGenError
from codesign.graph import Layer
from codesign.layers import extract
from codesign.layers.base import Rendered, RenderOptions, Upstream, module_header
from codesign.layers.dense import Dense, check_reuse_factor, golden_dense, render_products


def dense_equivalent(layer: Layer) -> Layer:
    """A conv layer as the Dense layer it computes: one weight-shared kernel per output pixel.

    Output (pixel p, filter f) sums kernel[(tap*C + c), f] * x[window[p, tap]*C + c] over the
    taps inside the image, in hls4ml's im2col order; padded taps multiply zero and drop out (a
    zero product leaves wrapping and saturating accumulators alike unchanged). Input index order
    follows tap order, so the golden model's input-by-input accumulation keeps hls4ml's order.
    """
    g, k = layer.geometry, layer.weights
    assert layer.kind == "conv" and g is not None and k is not None and layer.bias is not None
    n_filt = k.shape[1]
    w = np.zeros((layer.n_in, g.pixels * n_filt), dtype=np.int64)
    for p, taps in enumerate(g.windows()):
        for t, pix in enumerate(taps):
            if pix >= 0:
                rows = slice(t * g.n_chan, (t + 1) * g.n_chan)
                w[pix * g.n_chan : (pix + 1) * g.n_chan, p * n_filt : (p + 1) * n_filt] = k[rows]
    return replace(layer, kind="dense", weights=w, bias=np.tile(layer.bias, g.pixels))


class Conv(Dense):
    """A conv shares Dense's cost rules (ii, reuse factor, stored weights: the kernel once)."""

    kind = "conv"
    #: hls4ml classes computed by conv_1d/2d_latency_cl (im2col + the Dense product/accumulate)
    hls4ml_classes = ("Conv1D", "Conv2D", "PointwiseConv1D", "PointwiseConv2D", "Conv2DBatchnorm",
                      "DepthwiseConv1D", "DepthwiseConv2D")
    #: hls4ml splits a SeparableConv into a DepthwiseConv and a PointwiseConv (seperable_to_dw_conv)
    keras_classes = ("Conv1D", "QConv1D", "Conv2D", "QConv2D", "DepthwiseConv1D", "DepthwiseConv2D",
                     "QDepthwiseConv2D", "SeparableConv1D", "SeparableConv2D")
    keras_weight_classes = keras_classes
    supported = "Conv1D/Conv2D, DepthwiseConv1D/2D, SeparableConv1D/2D"
    streams = True

    def extract(self, hl: Any, up: Upstream) -> Layer:
        a = hl.get_attr
        two_d = a("filt_height") is not None and "1D" not in hl.class_name
        k_h, k_w = (int(a("filt_height")), int(a("filt_width"))) if two_d else (1, int(a("filt_width")))
        n_chan, n_filt = int(a("n_chan")), int(a("n_filt"))
        for attr in ("dilation_height", "dilation_width", "dilation"):
            if int(a(attr) or 1) != 1:
                raise RtlGenError(f"layer {hl.name}: dilated convolutions ({attr}={a(attr)}) are not supported")
        geom = extract.geometry(hl, two_d, k_h, k_w, n_chan)
        extract.check_geometry(hl, geom, up.n_in, up.n_out, n_filt)
        w, b = extract.kernel_and_bias(hl)
        k = k_h * k_w * n_chan
        if hl.class_name.startswith("Depthwise"):
            w = self._depthwise_kernel(hl, w, k_h * k_w, n_chan, n_filt)
        if hl.get_attr("_weights_transposed", False) or w.size != k * n_filt:
            raise RtlGenError(f"layer {hl.name}: kernel layout {w.shape} (strategy {up.strategy}) is not the "
                              f"{k_h}x{k_w}x{n_chan}x{n_filt} kernel of the Latency strategy",
                              hint="use the Latency strategy for convolutions (hls.layer_strategy)")
        wc, wf = extract.grid_codes(w, f"layer {hl.name} weights")
        bc, bf = extract.grid_codes(b, f"layer {hl.name} biases")
        product, product_type = extract.product(hl, up.in_type)
        return Layer(
            name=hl.name, kind="conv", n_in=up.n_in, n_out=up.n_out, in_type=up.in_type, out_type=up.out_type,
            source=up.source, accum_type=extract.accum_type(hl), weights=wc.reshape(k, n_filt), weight_frac=wf,
            bias=bc.reshape(n_filt), bias_frac=bf, reuse_factor=up.reuse_factor, strategy=up.strategy,
            product=product, product_type=product_type, geometry=geom,
        )

    @staticmethod
    def _depthwise_kernel(hl: Any, w: np.ndarray, taps: int, n_chan: int, n_filt: int) -> np.ndarray:
        """hls4ml's ``depthwise_product``: channel c of every tap feeds output c only, summed in tap
        order with the Dense's casts; as a (taps*C) x C kernel, zero off its channel."""
        multiplier = int(hl.get_attr("depth_multiplier") or 1)
        if multiplier != 1 or n_filt != n_chan or np.asarray(w).size != taps * n_chan:
            raise RtlGenError(f"layer {hl.name}: depthwise convolution with depth multiplier {multiplier} "
                              f"({n_chan} -> {n_filt} channels); the RTL builds multiplier 1")
        per_tap = np.asarray(w, dtype=np.float64).reshape(taps, n_chan)
        kernel = np.zeros((taps * n_chan, n_chan))
        for t in range(taps):
            kernel[t * n_chan + np.arange(n_chan), np.arange(n_chan)] = per_tap[t]
        return kernel

    def expand(self, layer: Layer) -> Layer:
        return dense_equivalent(layer)

    def golden(self, layer: Layer, x: np.ndarray) -> np.ndarray:
        return golden_dense(dense_equivalent(layer), x)

    def kernel_layer(self, layer: Layer) -> Layer:
        """The Dense that computes one output pixel from its window (hls4ml's ``mult_config``)."""
        assert layer.weights is not None
        k, n_filt = layer.weights.shape
        return replace(layer, kind="dense", n_in=k, n_out=n_filt, geometry=None, stream=False)

    def render_stream(self, env: jinja2.Environment, layer: Layer, module: str, opts: RenderOptions,
                      beats_in: int) -> list[Rendered]:
        """``conv_1d/2d_buffer_cl``: a line-buffer window generator (padding shifted in as zeros)
        feeding the kernel's Dense, built as any Dense is (RF 1: one output pixel per cycle through
        the shared adder graph; RF R: folded, one output pixel every R cycles)."""
        g = layer.geometry
        assert g is not None
        self._check(layer)
        if beats_in != g.in_h * g.in_w:
            raise RtlGenError(f"layer {layer.name}: {beats_in} stream beats per image; its {g.in_h}x{g.in_w} input "
                              f"needs {g.in_h * g.in_w}")
        kernel = self.kernel_layer(layer)
        check_reuse_factor(kernel, kernel.n_in, kernel.n_out)
        text, handshake, win_extra = stream_arch.window(
            env, f"{module}_win", g, layer.in_type.width,
            f"layer {layer.name} ({layer.source}): {g.in_h}x{g.in_w}x{g.n_chan} x {layer.in_type} -> "
            f"{g.k_h}x{g.k_w} windows")
        win = Rendered(f"{module}_win", text, 1, 1, 0, True, (), win_extra, handshake)
        r, extra = render_products(env, kernel, module, opts, module_header(kernel, module))
        r.extra = {**extra, "architecture": f"conv stream (line buffer -> {extra['architecture']} kernel)",
                   **self._conv_fields(layer), **win_extra}
        return [win, r]

    def beats_out(self, layer: Layer, beats_in: int) -> int:
        assert layer.geometry is not None
        return layer.geometry.pixels

    def _check(self, layer: Layer) -> None:
        assert layer.weights is not None
        if layer.strategy != "latency":
            raise RtlGenError(f"layer {layer.name}: convolutions are generated for hls4ml's Latency strategy only "
                              f"(got {layer.strategy!r})", hint="set hls.layer_strategy for this layer to Latency")
        k, n_filt = layer.weights.shape
        if layer.reuse_factor > k * n_filt:
            raise RtlGenError(f"layer {layer.name}: reuse factor {layer.reuse_factor} is outside 1..{k * n_filt} "
                              f"(kernel n_in*n_out = {k}*{n_filt})")

    def _conv_fields(self, layer: Layer) -> dict[str, Any]:
        g = layer.geometry
        assert g is not None and layer.weights is not None
        return {"pixels": g.pixels, "kernel": [g.k_h, g.k_w, g.n_chan, layer.weights.shape[1]],
                "stride": [g.stride_h, g.stride_w], "padding": [g.pad_top, g.pad_left],
                "kernel_nonzero_weights": layer.nonzero_weights}

    def render(self, env: jinja2.Environment, layer: Layer, module: str, opts: RenderOptions,
               act: FusedActivation | None = None) -> Rendered:
        g = layer.geometry
        assert g is not None and layer.weights is not None
        self._check(layer)
        header = module_header(layer, module)
        flat = dense_equivalent(layer)
        check_reuse_factor(flat, flat.n_in, flat.n_out)
        conv = {**self._conv_fields(layer), "expanded_nonzero_weights": flat.nonzero_weights}
        rendered, extra = render_products(env, flat, module, opts, header, act)
        rendered.extra = {**extra, "architecture": f"conv ({extra['architecture']} over {g.pixels} pixels)", **conv}
        return rendered

    def render_fused(self, env: jinja2.Environment, layer: Layer, module: str, opts: RenderOptions,
                     act: FusedActivation) -> Rendered | None:
        """As a Dense's: its io_parallel Dense equivalent at reuse factor 1 takes the activation."""
        return self.render(env, layer, module, opts, act) if layer.reuse_factor == 1 else None


KIND = Conv()
