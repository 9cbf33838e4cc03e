"""What the serial folded architectures share: the schedule of one vector and the output casts.

A serial folded layer (``digit_serial``, ``input_serial``; rendered with ``dense_serial.v.j2``)
accepts one vector every R cycles into an input register (shifted by input-serial, read a digit
at a time by digit-serial), issues ``active`` <= R cycles of work
(digits, or groups of inputs) while its counter ``t`` runs 0 .. R-1 (idle cycles when
``active < R``), passes each cycle's partial sums through ``depth`` pipeline register stages into
one accumulator per output (or per shared partial sum) and, once the last cycle is accumulated,
registers the casts of every output, keeping the valid/ready protocol of ``dense_folded.v.j2``
(the engine freezes while a finished sum waits for a full output register; the stall reads only
the module's own registers, so no ready path runs combinationally through the layers).

Edges from the input handshake to the output handshake: ``active + depth + 2`` (:func:`latency`).
"""

from __future__ import annotations

from dataclasses import dataclass

from codesign.arch.dense import register_output
from codesign.arch.netlist import FusedActivation, Module, cast_instance
from codesign.graph import Layer


@dataclass(frozen=True)
class Serial:
    """The schedule of a serial folded layer (template parameters of ``dense_serial.v.j2``)."""

    R: int  #: reuse factor: cycles between vectors
    active: int  #: cycles that issue work (digits / input groups), <= R
    depth: int  #: pipeline register stages between the issue cycle and the accumulators
    x_bits: int  #: width of the input register
    x_load: str  #: its value on the input handshake
    x_next: str  #: its value on every other enabled cycle ("" when it never shifts)
    uses_first: bool  #: whether the accumulators read ``a_first``

    @property
    def tw(self) -> int:
        return counter_width(self.R)

    @property
    def latency(self) -> int:
        return latency(self.active, self.depth)


def counter_width(R: int) -> int:
    """Bits of the cycle counter ``t`` (0 .. R-1) of ``dense_serial.v.j2``."""
    return max(1, (R - 1).bit_length())


def latency(active: int, depth: int) -> int:
    """Clock edges input handshake -> output handshake: the accept edge, ``active`` issue cycles,
    ``depth`` pipeline stages, the accumulate edge of the last cycle, the output register."""
    return active + depth + 2


def finish(m: Module, layer: Layer, j: int, src: str, width: int, lo: int, hi: int,
           act: FusedActivation | None = None) -> None:
    """``y_j = (result_t)(accum_t)v`` for a signed net ``src`` (``width`` bits) that carries the
    exact accumulator value v in accum_t units, v in [lo, hi]; registered in stage 0 (loaded when
    the sum is done), holding ``act`` of it when an activation is fused. The casts of
    :func:`codesign.arch.dense.output_stage`, in its order."""
    assert layer.accum_type is not None
    acc_t = layer.accum_type
    signed_src = True
    if acc_t.overflow == "WRAP" and (lo < acc_t.min_code or hi > acc_t.max_code):
        src = cast_instance(m, f"acc{j}", src, width, acc_t.frac, acc_t)
        width, signed_src = acc_t.width, acc_t.signed
    y = cast_instance(m, f"res{j}", src, width, acc_t.frac, layer.out_type, signed_src)
    register_output(m, layer, j, y, 0, f"y{j}", act)


def bus_bits(bus: str, lo: int, width: int) -> str:
    """``bus[lo + width - 1:lo]`` (one bit: ``bus[lo]``)."""
    return f"{bus}[{lo}]" if width == 1 else f"{bus}[{lo + width - 1}:{lo}]"


def mark_unused(m: Module, name: str, expr: str) -> None:
    """Bits nothing reads, named so ``verilator -Wall`` knows it is deliberate."""
    m.decls.append(f"wire unused_{name};")
    m.assigns.append(f"assign unused_{name} = ^{expr};")
