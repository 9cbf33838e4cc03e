"""A tiny netlist IR for generated layer modules: signed nets with exact value ranges.

Python decides every width from the exact range of values a net can carry; the Verilog templates
only print declarations and assignments. All internal nets are signed two's complement; every
operand is extended explicitly (a general multiplier's excepted: see ``codesign.arch.dense.multiply``),
so the output is lint-clean under ``verilator -Wall``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from codesign.fixedpoint import FixedType


def signed_width(lo: int, hi: int) -> int:
    """Bits of the smallest signed two's complement type holding every integer in [lo, hi]."""
    return max((-lo - 1).bit_length() if lo < 0 else 0, hi.bit_length() if hi > 0 else 0) + 1


def ext(name: str, width: int, to: int, shift: int = 0) -> str:
    """``name`` (signed, ``width`` bits) shifted left by ``shift`` and sign-extended to ``to`` bits."""
    body = name if shift == 0 else f"{name}, {shift}'b0"
    grow = to - width - shift
    if grow < 0:
        raise ValueError(f"cannot fit {name} ({width} bits << {shift}) into {to} bits")
    if grow == 0:
        return body if shift == 0 else "{" + body + "}"
    sign = f"{name}[{width - 1}]"
    return "{{" + f"{grow}{{{sign}}}" + "}, " + body + "}"


def const(value: int, width: int) -> str:
    """A signed constant literal of ``width`` bits (written from its bit pattern: no -N'sdM pitfall)."""
    return f"{width}'h{value & ((1 << width) - 1):x}"


def rom(name: str, width: int, index: str, index_bits: int, words: list[int]) -> str:
    """An ``always @*`` line setting ``name`` (a reg of ``width`` bits) to ``words[index]`` (0 past the end).

    Written as a chain of comparisons, not as a ``case``: Yosys 0.23 turns a constant ``case`` into a
    ROM and merges the index's register (the layer's cycle counter) into it, which moves the
    counter's next-state logic into every bit of every table (LUT6/MUXF7/MUXF8 trees and a register
    per bit: +35 % LUTs on an input-serial layer); the chain maps to one small LUT per bit."""
    expr = f"{width}'d0"
    for k in range(len(words) - 1, -1, -1):
        if words[k]:
            expr = f"({index} == {index_bits}'d{k}) ? {const(words[k], width)} : {expr}"
    return f"always @* {name} = {expr};"


@dataclass
class Net:
    """A signed net carrying ``value * 2**lsb`` where value in [lo, hi]; ``neg`` negates it."""

    name: str
    lo: int
    hi: int
    lsb: int = 0
    neg: bool = False

    @property
    def width(self) -> int:
        return signed_width(self.lo, self.hi)


@dataclass(frozen=True)
class FusedActivation:
    """An element-wise activation layer applied by the layer before it to each of its results
    before the output register (``rtl.fuse_activations``): its primitive (fxp_relu or fxp_cast,
    with the same parameters as the activation's own module would give it) and its output type."""

    name: str  #: the activation layer's name
    primitive: str  #: "fxp_relu" | "fxp_cast"
    out_type: FixedType


@dataclass
class Module:
    """Lines of one generated module, grouped so the template can lay them out."""

    name: str
    decls: list[str] = field(default_factory=list)
    assigns: list[str] = field(default_factory=list)
    stages: list[list[str]] = field(default_factory=list)  #: per stage: "reg <= expr;" lines
    instances: list[str] = field(default_factory=list)
    combs: list[str] = field(default_factory=list)  #: combinational always blocks (ROMs, muxes)
    engine: list[str] = field(default_factory=list)  #: folded layers: per-cycle product registers
    accs: list[str] = field(default_factory=list)  #: folded layers: accumulator updates
    counter: int = 0
    n_stages: int = 0
    #: the activation whose result the output registers hold (None: the layer's own result)
    fused: FusedActivation | None = None

    def stages_extend(self, stage: int) -> None:
        while len(self.stages) <= stage:
            self.stages.append([])

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def wire(self, name: str, width: int, expr: str) -> None:
        self.decls.append(f"wire signed [{width - 1}:0] {name};")
        self.assigns.append(f"assign {name} = {expr};")

    def reg(self, stage: int, name: str, width: int, expr: str) -> None:
        self.stages_extend(stage)
        self.decls.append(f"reg signed [{width - 1}:0] {name};")
        self.stages[stage].append(f"{name} <= {expr};")


def reduce_tree(m: Module, nets: list[Net], op: Callable[[Module, Net, Net], Net]) -> Net:
    """Combine ``nets`` pairwise, level by level, into one (a balanced tree of len(nets) - 1 ops)."""
    if not nets:
        raise ValueError("reduce_tree needs at least one net")
    while len(nets) > 1:
        nets = [op(m, nets[k], nets[k + 1]) for k in range(0, len(nets) - 1, 2)] + (
            [nets[-1]] if len(nets) % 2 else [])
    return nets[0]


def cast_instance(m: Module, name: str, din: str, w_in: int, f_in: int, to: FixedType,
                  src_signed: bool = True, primitive: str = "fxp_cast") -> str:
    """Instantiate rtl/fxp_cast.v converting ``din`` (w_in bits, f_in fractional) to ``to`` (or
    ``primitive`` fxp_relu, which takes the same parameters)."""
    from codesign.fixedpoint import OVERFLOW_CODE, QUANT_CODE

    out = f"{name}_q"
    m.decls.append(f"wire [{to.width - 1}:0] {out};")
    m.instances.append(
        f"{primitive} #(.W_IN({w_in}), .F_IN({f_in}), .SIGNED_IN({int(src_signed)}), .W_OUT({to.width}), "
        f".F_OUT({to.frac}), .SIGNED_OUT({int(to.signed)}), .ROUND({QUANT_CODE[to.rounding]}), "
        f".OVERFLOW({OVERFLOW_CODE[to.overflow]})) u_{name} (.din({din}), .dout({out}));"
    )
    return out


def input_element(m: Module, bus: str, index: int, t: FixedType, name: str) -> Net:
    """Declare element ``index`` of a packed bus as a signed net (unsigned types gain a 0 sign bit)."""
    lo_bit = index * t.width
    sel = f"{bus}[{lo_bit + t.width - 1}:{lo_bit}]" if t.width > 1 else f"{bus}[{lo_bit}]"
    if t.signed:
        m.wire(name, t.width, sel)
    else:
        m.wire(name, t.width + 1, "{1'b0, " + sel + "}")
    return Net(name, t.min_code, t.max_code)
