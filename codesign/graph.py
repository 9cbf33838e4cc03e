"""The hardware IR: what the RTL backend needs from hls4ml's converted graph, as plain data.

The convert stage extracts it from the ModelGraph (final types after hls4ml's passes, weights as
integer codes, reuse factors; :func:`codesign.layers.from_hls4ml`) into ``<run>/hls/graph.json``; the RTL generator, the golden model
and the report read only this file, so they never depend on hls4ml internals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from codesign.errors import RtlGenError
from codesign.fixedpoint import FixedType
from codesign.rundir import read_json, write_json

GRAPH_FORMAT = 1


@dataclass(frozen=True)
class Geometry:
    """A sliding window over a channel-last image (hls4ml io_parallel layout: index (h*W + w)*C + c).

    Conv1D / Pooling1D use ``in_h = k_h = out_h = 1``. ``pad_*`` are hls4ml's computed paddings.
    """

    in_h: int
    in_w: int
    n_chan: int
    k_h: int
    k_w: int
    stride_h: int
    stride_w: int
    pad_top: int
    pad_left: int
    out_h: int
    out_w: int
    count_pad: bool = False  #: average pooling: divide by the full window, padding included

    @property
    def pixels(self) -> int:
        return self.out_h * self.out_w

    @property
    def pad_bottom(self) -> int:
        """Rows of padding below the image that the last output row's window reaches."""
        return max(0, (self.out_h - 1) * self.stride_h + self.k_h - self.in_h - self.pad_top)

    @property
    def pad_right(self) -> int:
        return max(0, (self.out_w - 1) * self.stride_w + self.k_w - self.in_w - self.pad_left)

    def windows(self) -> np.ndarray:
        """pixels x (k_h*k_w): input pixel index of each window tap, -1 where it falls in padding.

        Taps are in hls4ml's im2col order (row of the window, then column)."""
        out = np.full((self.pixels, self.k_h * self.k_w), -1, dtype=np.int64)
        for oh in range(self.out_h):
            for ow in range(self.out_w):
                for kh in range(self.k_h):
                    for kw in range(self.k_w):
                        h = oh * self.stride_h + kh - self.pad_top
                        w = ow * self.stride_w + kw - self.pad_left
                        if 0 <= h < self.in_h and 0 <= w < self.in_w:
                            out[oh * self.out_w + ow, kh * self.k_w + kw] = h * self.in_w + w
        return out

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class Layer:
    """One layer of the hardware IR. ``kind`` names the layer kind that computes and builds it
    (:data:`codesign.layers.KINDS`); the optional fields are the ones its kind uses."""

    name: str
    kind: str
    n_in: int
    n_out: int
    in_type: FixedType
    out_type: FixedType
    source: str = ""  #: hls4ml class (and activation) it came from, for messages
    accum_type: FixedType | None = None
    weights: np.ndarray | None = None  #: n_in x n_out integer codes
    weight_frac: int = 0
    bias: np.ndarray | None = None  #: n_out integer codes
    bias_frac: int = 0
    reuse_factor: int = 1
    strategy: str = "latency"
    #: "exact" (x*w computed exactly) or "po2" (hls4ml's weight_exponential: x shifted by the
    #: weight's exponent inside ``product_type``, truncating, then negated for negative weights).
    product: str = "exact"
    product_type: FixedType | None = None
    #: conv / pool: the sliding window (conv weights are then the k_h*k_w*n_chan x n_filt kernel)
    geometry: Geometry | None = None
    #: pool: "max" or "avg"
    pool_op: str = ""
    #: computed by hls4ml's io_stream implementation (one pixel, all channels, per stream beat):
    #: pooling reduces its window as a balanced tree, and the RTL is a streaming dataflow
    stream: bool = False

    @property
    def nonzero_weights(self) -> int:
        return int(np.count_nonzero(self.weights)) if self.weights is not None else 0

    def to_json(self) -> dict[str, Any]:
        """The layer in graph.json: the common fields, then those its kind sets."""
        d: dict[str, Any] = {
            "name": self.name, "kind": self.kind, "n_in": self.n_in, "n_out": self.n_out,
            "in_type": self.in_type.to_json(), "out_type": self.out_type.to_json(), "source": self.source,
            "reuse_factor": self.reuse_factor, "strategy": self.strategy,
        }
        if self.geometry is not None:
            d["geometry"] = self.geometry.to_json()
        if self.pool_op:
            d["pool_op"] = self.pool_op
        if self.stream:
            d["stream"] = True
        if self.accum_type is not None:
            d["accum_type"] = self.accum_type.to_json()
        if self.weights is not None:
            assert self.bias is not None
            d.update(weights=self.weights.tolist(), weight_frac=self.weight_frac, bias=self.bias.tolist(),
                     bias_frac=self.bias_frac, nonzero_weights=self.nonzero_weights, product=self.product)
            if self.product_type is not None:
                d["product_type"] = self.product_type.to_json()
        return d


@dataclass(frozen=True)
class Graph:
    """A feed-forward chain of layers from the input type to the output type."""

    input_type: FixedType
    n_in: int
    layers: tuple[Layer, ...]
    softmax_stripped: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def output_type(self) -> FixedType:
        return self.layers[-1].out_type if self.layers else self.input_type

    @property
    def n_out(self) -> int:
        return self.layers[-1].n_out if self.layers else self.n_in

    @property
    def io_type(self) -> str:
        """hls4ml's io_type the graph was converted with: "io_stream" or "io_parallel"."""
        return "io_stream" if any(layer.stream for layer in self.layers) else "io_parallel"

    def to_json(self) -> dict[str, Any]:
        return {
            "format": GRAPH_FORMAT, "input": {"n": self.n_in, "type": self.input_type.to_json()},
            "output": {"n": self.n_out, "type": self.output_type.to_json()},
            "softmax_stripped": self.softmax_stripped, "notes": list(self.notes),
            "layers": [layer.to_json() for layer in self.layers],
        }

    def save(self, path: Path) -> None:
        write_json(path, self.to_json())


def _type(d: dict[str, Any]) -> FixedType:
    return FixedType(d["width"], d["integer"], d["signed"], d["rounding"], d["overflow"])


def load(path: Path) -> Graph:
    data = read_json(path)
    if data.get("format") != GRAPH_FORMAT:
        raise RtlGenError(f"{path}: graph format {data.get('format')!r}, expected {GRAPH_FORMAT}")
    layers = []
    for d in data["layers"]:
        extra: dict[str, Any] = {}
        if "geometry" in d:
            extra["geometry"] = Geometry(**d["geometry"])
        if "pool_op" in d:
            extra["pool_op"] = d["pool_op"]
        if d.get("stream"):
            extra["stream"] = True
        if "accum_type" in d:
            extra["accum_type"] = _type(d["accum_type"])
        if "weights" in d:
            extra.update(
                weights=np.array(d["weights"], dtype=np.int64).reshape(-1, len(d["bias"])),
                weight_frac=d["weight_frac"], bias=np.array(d["bias"], dtype=np.int64), bias_frac=d["bias_frac"],
                product=d.get("product", "exact"),
                product_type=_type(d["product_type"]) if d.get("product_type") else None,
            )
        layers.append(Layer(
            name=d["name"], kind=d["kind"], n_in=d["n_in"], n_out=d["n_out"], in_type=_type(d["in_type"]),
            out_type=_type(d["out_type"]), source=d.get("source", ""), reuse_factor=d["reuse_factor"],
            strategy=d["strategy"], **extra,
        ))
    return Graph(_type(data["input"]["type"]), data["input"]["n"], tuple(layers),
                 data.get("softmax_stripped", False), tuple(data.get("notes", ())))
