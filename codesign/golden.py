"""Integer golden model of the hardware IR: the same casts, in the same order, as hls4ml's C++.

Each layer kind computes its own (``LayerKind.golden`` in :mod:`codesign.layers`, where the
arithmetic of each kind is documented); this module runs a graph through them.
"""

from __future__ import annotations

import numpy as np

from codesign import layers as kinds
from codesign.graph import Graph, Layer


def run_layer(layer: Layer, x: np.ndarray) -> np.ndarray:
    """One layer's output codes for N x n_in input codes."""
    kind = kinds.KINDS.get(layer.kind)
    if kind is None:
        raise ValueError(f"layer {layer.name}: golden model has no {layer.kind!r}")
    return kind.golden(layer, np.asarray(x, dtype=np.int64))


def layer_outputs(graph: Graph, in_codes: np.ndarray, chunk: int = 2048) -> dict[str, np.ndarray]:
    """Every layer's output codes for N input vectors (N x n_in codes of the input type)."""
    in_codes = np.asarray(in_codes, dtype=np.int64)
    outs: dict[str, list[np.ndarray]] = {layer.name: [] for layer in graph.layers}
    # each kind's expansion (a conv's Dense equivalent) done once, not per chunk
    expanded = [kinds.KINDS[layer.kind].expand(layer) if layer.kind in kinds.KINDS else layer
                for layer in graph.layers]
    for start in range(0, len(in_codes), chunk):
        x = in_codes[start : start + chunk]
        for layer in expanded:
            x = run_layer(layer, x)
            outs[layer.name].append(x)
    return {k: (np.concatenate(v) if v else np.zeros((0, 0), np.int64)) for k, v in outs.items()}


def predict(graph: Graph, in_codes: np.ndarray) -> np.ndarray:
    """Output codes of the whole network."""
    return layer_outputs(graph, in_codes)[graph.layers[-1].name]
