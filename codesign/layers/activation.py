"""Element-wise activations: ReLU (``x > 0 ? (result_t)x : 0``) and linear (``(result_t)x``).

hls4ml's Activation / ReLU layers with ``relu`` or ``linear``; other activations are recorded as
unsupported (conversion and C-sim still work, the RTL stage refuses them by name). RTL: one
combinational fxp_relu / fxp_cast per element; in io_parallel, the same primitives move into the
output stage of a reuse-factor-1 Dense / conv before it (:meth:`_Elementwise.activation`,
``rtl.fuse_activations``), so its register holds the narrow activation type and this layer has no
module of its own.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import jinja2
import numpy as np

from codesign.arch.netlist import FusedActivation
from codesign.errors import RtlGenError
from codesign.fixedpoint import OVERFLOW_CODE, QUANT_CODE, cast
from codesign.graph import Layer
from codesign.layers.base import LayerKind, Rendered, RenderOptions, Upstream, module_header

#: activation functions with an RTL builder
ACTIVATIONS = ("relu", "linear")


class _Elementwise(LayerKind):
    primitive: str = "fxp_cast"
    streams = True

    def render_stream(self, env: jinja2.Environment, layer: Layer, module: str, opts: RenderOptions,
                      beats_in: int) -> list[Rendered]:
        """The same combinational module over one beat's elements."""
        per_beat = layer.n_in // beats_in
        r = self.render(env, replace(layer, n_in=per_beat, n_out=per_beat), module, opts)
        r.handshake = ("comb",)
        return [r]

    def activation(self, layer: Layer) -> FusedActivation:
        """The primitive its module instantiates per element, and its output type."""
        return FusedActivation(layer.name, self.primitive, layer.out_type)

    def render(self, env: jinja2.Environment, layer: Layer, module: str, opts: RenderOptions) -> Rendered:
        if layer.n_in != layer.n_out:
            raise RtlGenError(f"layer {layer.name}: element-wise {layer.kind} with n_in != n_out")
        t_in, t_out = layer.in_type, layer.out_type
        text = env.get_template("elementwise.v.j2").render(
            kind=layer.kind, prim=self.primitive, n=layer.n_in, w_in=t_in.width, f_in=t_in.frac,
            s_in=int(t_in.signed), w_out=t_out.width, f_out=t_out.frac, s_out=int(t_out.signed),
            rnd=QUANT_CODE[t_out.rounding], ovf=OVERFLOW_CODE[t_out.overflow], **module_header(layer, module),
        )
        prims = ("fxp_cast.v", "fxp_relu.v") if self.primitive == "fxp_relu" else ("fxp_cast.v",)
        return Rendered(module, text, 0, 1, 0, False, prims, {"architecture": "combinational"})


class Relu(_Elementwise):
    kind = "relu"
    primitive = "fxp_relu"

    def golden(self, layer: Layer, x: np.ndarray) -> np.ndarray:
        return np.where(x > 0, cast(x, layer.in_type.frac, layer.out_type), 0)


class Cast(_Elementwise):
    kind = "cast"

    def golden(self, layer: Layer, x: np.ndarray) -> np.ndarray:
        return cast(x, layer.in_type.frac, layer.out_type)


class Activation(LayerKind):
    """Recognises hls4ml's Activation / ReLU layers as a ``relu`` or ``cast`` layer."""

    hls4ml_classes = ("Activation", "ReLU")
    streams = True
    keras_classes = ("Activation", "QActivation", "ReLU", "Softmax")
    supported = "ReLU / quantized ReLU, linear activation"

    def accepts(self, hl: Any) -> bool:
        return (hl.get_attr("activation") or "").lower() in ACTIVATIONS

    def extract(self, hl: Any, up: Upstream) -> Layer:
        kind = "relu" if (hl.get_attr("activation") or "").lower() == "relu" else "cast"
        return Layer(name=hl.name, kind=kind, n_in=up.n_in, n_out=up.n_out, in_type=up.in_type,
                     out_type=up.out_type, source=up.source, reuse_factor=up.reuse_factor, strategy=up.strategy)


RELU, CAST, ACTIVATION = Relu(), Cast(), Activation()
