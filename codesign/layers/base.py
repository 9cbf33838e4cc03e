"""What a layer kind is: one class that knows a kind of layer end to end.

A kind recognises its hls4ml layer classes and extracts them into the hardware IR
(:class:`codesign.graph.Layer`), names the Keras classes the importer accepts for it, computes its
integer golden model, renders its Verilog module and states its cost. The registry
(:mod:`codesign.layers`) maps hls4ml classes and IR kind names to these classes; adding a kind is
a new module here and a line in the registry (hls4ml's per-layer template classes and FINN's step
lookup work the same way).

Two roles, often one class: a *recogniser* turns hls4ml layers into IR layers (BatchNormalization
becomes a diagonal ``dense``; Flatten becomes nothing), an *IR kind* (``kind`` set) computes and
builds them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import jinja2
import numpy as np

from codesign.arch.netlist import FusedActivation
from codesign.errors import RtlGenError
from codesign.fixedpoint import FixedType
from codesign.graph import Layer


@dataclass(frozen=True)
class Upstream:
    """What extraction knows of an hls4ml layer before its kind looks at it."""

    in_type: FixedType  #: the previous layer's output type
    n_in: int
    out_type: FixedType  #: this layer's result type
    n_out: int
    source: str  #: hls4ml class (and activation), for messages
    reuse_factor: int
    strategy: str


@dataclass(frozen=True)
class RenderOptions:
    """The rtl section's choices every builder may use."""

    levels_per_stage: int
    adder_graph: bool
    clock_ns: float  #: the delay budget pipeline registers are placed by
    #: reuse factor > 1: auto (cost model) | lanes | digit_serial | input_serial (codesign.arch.fold)
    fold_architecture: str = "auto"
    #: general multipliers of the folded architectures: auto | dsp | lut (codesign.arch.dense.MULTIPLIERS)
    multipliers: str = "auto"
    #: io_parallel: a layer that can (LayerKind.render_fused) applies the element-wise activation
    #: after it before its output register (rtl.fuse_activations)
    fuse_activations: bool = True
    #: set per layer: its inputs come straight from the previous layer's output registers (which
    #: took the activation between them), so the delay model starts its first stage at 0 ns
    registered_inputs: bool = False


@dataclass
class Rendered:
    """A layer's Verilog module and what design.json says of it."""

    module: str
    text: str
    latency: int  #: clock edges from input to output
    ii: int  #: cycles between vectors at full rate
    multipliers: int
    clocked: bool
    primitives: tuple[str, ...]  #: files of codesign/primitives it instantiates
    extra: dict[str, Any]  #: kind-specific design.json fields (architecture, cost figures)
    #: its valid/ready state machine, for the streaming top's cycle model
    #: (:mod:`codesign.arch.stream_timing`); empty for a module no stream uses
    handshake: tuple[Any, ...] = ()


def module_header(layer: Layer, module: str) -> dict[str, Any]:
    """Template parameters every layer module shares: name, bus widths, its comment line."""
    return dict(
        name=module, in_bits=layer.n_in * layer.in_type.width, out_bits=layer.n_out * layer.out_type.width,
        n_out=layer.n_out,
        comment=f"layer {layer.name} ({layer.source}): {layer.n_in} x {layer.in_type} -> {layer.n_out} x {layer.out_type}",
    )


class LayerKind:
    """Base class of the layer kinds; a subclass overrides what applies to it."""

    #: the IR kind name it computes and builds ("" for a recogniser only)
    kind: ClassVar[str] = ""
    #: hls4ml layer classes (``class_name``) it extracts
    hls4ml_classes: ClassVar[tuple[str, ...]] = ()
    #: Keras / QKeras classes the importer accepts for it
    keras_classes: ClassVar[tuple[str, ...]] = ()
    #: Keras classes with a kernel (weights counted, a reuse factor and strategy set per layer)
    keras_weight_classes: ClassVar[tuple[str, ...]] = ()
    #: how the RTL backend's "supported:" message names it
    supported: ClassVar[str] = ""
    #: whether its streaming RTL exists (hls.io_type auto streams only models made of such kinds)
    streams: ClassVar[bool] = False

    def accepts(self, hl: Any) -> bool:
        """Whether it builds this layer of one of its hls4ml classes (an Activation: relu or linear)."""
        return True

    def extract(self, hl: Any, up: Upstream) -> Layer | None:
        """The IR layer for hls4ml layer ``hl``, or None when it moves no data (Flatten)."""
        raise NotImplementedError(f"{type(self).__name__} recognises no hls4ml layer")

    def expand(self, layer: Layer) -> Layer:
        """The layer as the golden model computes it (a conv as its Dense equivalent); done once."""
        return layer

    def golden(self, layer: Layer, x: np.ndarray) -> np.ndarray:
        """Output codes for N x n_in input codes, with hls4ml's casts in hls4ml's order."""
        raise NotImplementedError(f"layer {layer.name}: no golden model for kind {layer.kind!r}")

    def render(self, env: jinja2.Environment, layer: Layer, module: str, opts: RenderOptions) -> Rendered:
        """Its Verilog module."""
        raise RtlGenError(f"layer {layer.name}: kind {layer.kind!r} has no RTL builder")

    def activation(self, layer: Layer) -> FusedActivation | None:
        """The element-wise operation it is, for the layer before it to apply in front of that
        layer's output register (``rtl.fuse_activations``); None when it is not one."""
        return None

    def render_fused(self, env: jinja2.Environment, layer: Layer, module: str, opts: RenderOptions,
                     act: FusedActivation) -> Rendered | None:
        """Its io_parallel module with the next layer's activation ``act`` applied to every result
        before the output register, whose outputs are then ``act.out_type``: the module's extra
        says ``fused_activation: act.name`` when it took it (a module may still decline, e.g. when
        the activation does not fit its last stage, and is then the plain :meth:`render`). None
        when this layer never fuses (nothing rendered; the caller renders both layers)."""
        return None

    def render_stream(self, env: jinja2.Environment, layer: Layer, module: str, opts: RenderOptions,
                      beats_in: int) -> list[Rendered]:
        """Its io_stream modules, in stream order (each a file of its own, each with its
        ``handshake``); ``beats_in`` stream beats per image enter it, ``layer.n_in / beats_in``
        elements each."""
        raise RtlGenError(f"layer {layer.name}: {layer.source or layer.kind} has no streaming (io_stream) RTL",
                          hint="convert this model with hls.io_type: io_parallel")

    def beats_out(self, layer: Layer, beats_in: int) -> int:
        """Stream beats per image it sends for ``beats_in`` received."""
        return beats_in

    def ii(self, layer: Layer) -> int:
        """Cycles between vectors the layer accepts."""
        return 1

    def reuse_factor(self, layer: Layer) -> int | None:
        """The reuse factor design.json reports (None: the kind has none)."""
        return None

    def stored_weights(self, layer: Layer) -> int:
        """Weights the layer stores (a conv's kernel once, not per pixel)."""
        return 0
