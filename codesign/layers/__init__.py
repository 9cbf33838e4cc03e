"""The layer kinds and their registry: the one table of what the flow can build.

Each kind lives in one module (:mod:`codesign.layers.base` says what a kind provides):

- ``dense``: Dense (and BatchNormalization, extracted by ``batchnorm`` as a diagonal Dense)
- ``conv``: Conv1D / Conv2D / DepthwiseConv (hls4ml splits SeparableConv into depthwise + pointwise),
  computed as its Dense equivalent (io_parallel) or per output pixel from line buffers (io_stream)
- ``pool``: Max / AveragePooling1D / 2D
- ``activation``: ReLU and linear (``relu`` / ``cast``)
- ``reshape``: Flatten / Reshape (no data moves)
- ``zeropad``: ZeroPadding1D / 2D (io_stream puts one before each padded conv; folded into it)
- ``resize``: UpSampling1D / 2D, nearest neighbour (hls4ml's Resize)

A new kind is a module with a :class:`~codesign.layers.base.LayerKind` subclass and a line in
``RECOGNISERS`` (and ``KINDS`` when it has its own IR kind); see docs/ARCHITECTURE.md.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from codesign.errors import RtlGenError
from codesign.fixedpoint import from_hls4ml as precision_to_type
from codesign.graph import Graph, Layer
from codesign.layers import activation, batchnorm, conv, dense, pool, reshape, resize, zeropad
from codesign.layers.base import LayerKind, Rendered, RenderOptions, Upstream
from codesign.layers.extract import layer_type

__all__ = ["KINDS", "RECOGNISERS", "KERAS_CLASSES", "KERAS_WEIGHT_CLASSES", "LayerKind", "Rendered",
           "RenderOptions", "for_layer", "from_hls4ml", "SUPPORTED"]

#: hls4ml layers -> IR layers, in the order the "supported" messages list them
RECOGNISERS: tuple[LayerKind, ...] = (dense.KIND, conv.KIND, pool.KIND, reshape.KIND, batchnorm.KIND,
                                      activation.ACTIVATION, zeropad.KIND, resize.KIND)
#: IR kind name -> the kind that computes and builds it
KINDS: dict[str, LayerKind] = {k.kind: k for k in (dense.KIND, conv.KIND, pool.KIND, activation.RELU,
                                                    activation.CAST, zeropad.KIND, resize.KIND)}
_BY_HLS4ML_CLASS: dict[str, LayerKind] = {c: r for r in RECOGNISERS for c in r.hls4ml_classes}
#: Keras / QKeras layer classes the importer accepts (besides InputLayer)
KERAS_CLASSES: tuple[str, ...] = tuple(c for r in RECOGNISERS for c in r.keras_classes)
#: Keras classes with a kernel: weights counted, reuse factor and strategy set per layer
KERAS_WEIGHT_CLASSES: tuple[str, ...] = tuple(c for r in RECOGNISERS for c in r.keras_weight_classes)
#: what the RTL backend builds, for error messages
SUPPORTED = (", ".join(r.supported for r in RECOGNISERS)
             + " (a final Softmax is stripped when hls.strip_softmax is true)")
#: Keras classes of convolutions (hls.io_type auto measures their io_parallel expansion)
CONV_KERAS_CLASSES = conv.KIND.keras_classes
#: Keras classes every one of whose kinds has a streaming RTL (besides InputLayer)
STREAM_KERAS_CLASSES: tuple[str, ...] = ("InputLayer",) + tuple(
    c for r in RECOGNISERS if r.streams for c in r.keras_classes)
#: hls4ml classes extracted as conv layers (their reuse factor applies to the per-pixel kernel)
CONV_HLS4ML_CLASSES = conv.KIND.hls4ml_classes


def for_layer(layer: Layer) -> LayerKind:
    """The kind of an IR layer; an error naming the layer and what is supported otherwise."""
    kind = KINDS.get(layer.kind)
    if kind is None:
        raise RtlGenError(f"layer {layer.name}: {layer.source or layer.kind} is not supported by the RTL backend; "
                          f"supported: {SUPPORTED}")
    return kind


def from_hls4ml(hls_model: Any, softmax_stripped: bool = False) -> Graph:
    """Extract the hardware IR from a converted hls4ml ModelGraph (one input; io_parallel, or
    io_stream with every layer marked ``stream`` and hls4ml's padding nodes folded back into the
    convolutions, :func:`codesign.layers.zeropad.absorb`)."""
    stream = str(hls_model.config.get_config_value("IOType")) == "io_stream"
    layers_in = list(hls_model.get_layers())
    if not layers_in or layers_in[0].class_name not in ("Input", "InputLayer"):
        raise RtlGenError("hls4ml graph does not start with an Input layer")
    in_var = layers_in[0].get_output_variable()
    in_type = precision_to_type(in_var.type.precision)
    n_in = int(np.prod(in_var.shape))
    prev_type, prev_n = in_type, n_in
    out: list[Layer] = []
    for hl in layers_in[1:]:
        out_var = hl.get_output_variable()
        act = (hl.get_attr("activation") or "").lower()
        up = Upstream(
            in_type=prev_type, n_in=prev_n, out_type=layer_type(hl, out_var.type.precision, "result"),
            n_out=int(np.prod(out_var.shape)), source=f"{hl.class_name}({act})" if act else hl.class_name,
            reuse_factor=int(hl.get_attr("reuse_factor") or 1),
            strategy=str(hl.get_attr("strategy") or "latency").lower(),
        )
        recogniser = _BY_HLS4ML_CLASS.get(hl.class_name)
        if recogniser is None or not recogniser.accepts(hl):
            # Recorded so the RTL stage can refuse it by name; conversion and C-sim still work.
            out.append(Layer(name=hl.name, kind=f"unsupported:{up.source}", n_in=up.n_in, n_out=up.n_out,
                             in_type=up.in_type, out_type=up.out_type, source=up.source))
        else:
            layer = recogniser.extract(hl, up)
            if layer is None:  # moves no data: the next layer reads what this one read
                continue
            out.append(layer)
        prev_type, prev_n = up.out_type, up.n_out
    out = zeropad.absorb(out)
    if stream:
        out = [replace(layer, stream=True) for layer in out]
    return Graph(in_type, n_in, tuple(out), softmax_stripped)
