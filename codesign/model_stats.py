"""Model statistics the model stage records: per-layer weights, nonzeros, bits, sparsity, BOPs.

Shared by training (:mod:`codesign.train`) and import (:mod:`codesign.model_io`), for QKeras and
plain Keras models alike.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from codesign import layers as layer_kinds


def quantized_weights(layer: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """The kernel and bias as the hardware sees them (after the layer's quantizers)."""
    weights = layer.get_weights()
    kernel, bias = weights[0], (weights[1] if len(weights) > 1 else None)
    kq = getattr(layer, "kernel_quantizer_internal", None)
    bq = getattr(layer, "bias_quantizer_internal", None)
    if kq is not None:
        kernel = np.asarray(kq(kernel.astype(np.float32)))
    if bias is not None and bq is not None:
        bias = np.asarray(bq(bias.astype(np.float32)))
    return kernel, bias


#: Layers with a kernel whose weights, nonzeros and sparsity are counted.
WEIGHT_LAYERS = layer_kinds.KERAS_WEIGHT_CLASSES
#: Layers that pass their input's bit width through unchanged (max, reshape, identity).
WIDTH_PRESERVING = ("Dropout", "MaxPooling1D", "MaxPooling2D", "Flatten", "Reshape")


def layer_stats(model: Any) -> list[dict[str, Any]]:
    """Per-layer name, kind, bits, weights, nonzero, sparsity, input_bits, uses (weights: kernel only).

    ``nonzero`` counts kernel entries that are nonzero *after quantization* (what the hardware
    multiplies); ``bits`` is the weight quantizer's width (activations: the output width; float
    layers: None). ``input_bits`` is the width of the value entering the layer, None if unknown.
    ``uses`` is how often each weight multiplies per inference: 1 for Dense, the number of output
    positions (height x width) for Conv2D; 0 for layers without weights.
    """
    stats: list[dict[str, Any]] = []
    in_bits: int | None = None
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "InputLayer":
            continue
        bits = _quantizer_bits(layer)
        entry: dict[str, Any] = {"name": layer.name, "kind": kind, "bits": bits, "input_bits": in_bits,
                                 "weights": 0, "nonzero": 0, "sparsity": None, "uses": 0}
        if kind in WEIGHT_LAYERS:
            kernel, _ = quantized_weights(layer)
            entry["weights"] = int(kernel.size)
            entry["nonzero"] = int(np.count_nonzero(kernel))
            entry["sparsity"] = 1.0 - entry["nonzero"] / max(1, entry["weights"])
            entry["uses"] = math.prod(int(d) for d in layer.output_shape[1:-1])  # 1 for Dense
        stats.append(entry)
        # Only a quantizer fixes the width of what the next layer sees; pooling, Flatten and
        # Dropout pass it through.
        if kind == "QActivation":
            in_bits = bits
        elif kind not in WIDTH_PRESERVING:
            in_bits = None
    return stats


def _quantizer_bits(layer: Any) -> int | None:
    """Width of the layer's weight quantizer (QDense, QConv2D) or activation quantizer (QActivation)."""
    q = getattr(layer, "kernel_quantizer_internal", None)
    if q is None and type(layer).__name__ == "QActivation":
        q = getattr(layer, "quantizer", None)
    bits = getattr(q, "bits", None)
    return int(bits) if bits is not None else None


def totals(layers: list[dict[str, Any]]) -> dict[str, Any]:
    """Global weight sparsity and BOPs over the dense and conv layers.

    BOPs = sum over those layers of nonzero_weights * uses * weight_bits * input_bits: one
    b_w x b_a multiply per nonzero weight per use (conv: per output position) per inference,
    accumulations not counted. None when a layer's weight or input width is unknown (float layers).
    """
    dense = [e for e in layers if e["kind"] in WEIGHT_LAYERS]
    weights = sum(e["weights"] for e in dense)
    nonzero = sum(e["nonzero"] for e in dense)
    known = all(e["bits"] is not None and e["input_bits"] is not None for e in dense)
    bops = (sum(e["nonzero"] * e.get("uses", 1) * e["bits"] * e["input_bits"] for e in dense)
            if known else None)
    return {
        "total_weights": weights,
        "total_nonzero": nonzero,
        "weight_sparsity": 1.0 - nonzero / max(1, weights),
        "bops": bops,
        "bops_definition": ("sum over dense and conv layers of nonzero quantized weights x uses per "
                            "inference (conv: output positions) x weight bits x input bits"),
    }
