"""Flatten / Reshape: io_parallel arrays are flat and channel-last, so they move no data and leave
no layer in the hardware IR. (Keras Dropout is the identity at inference; hls4ml drops it.)"""

from __future__ import annotations

from typing import Any

from codesign.errors import RtlGenError
from codesign.graph import Layer
from codesign.layers.base import LayerKind, Upstream


class Reshape(LayerKind):
    hls4ml_classes = ("Reshape", "Flatten")
    keras_classes = ("Flatten", "Dropout")
    supported = "Flatten"
    streams = True  # io_stream's Flatten is in place too: the next layer reads the same beats

    def extract(self, hl: Any, up: Upstream) -> Layer | None:
        if up.n_out != up.n_in:
            raise RtlGenError(f"layer {hl.name}: {hl.class_name} changes the element count {up.n_in} -> {up.n_out}")
        return None


KIND = Reshape()
