"""The Verilog netlist of a lowered, scheduled adder graph (a ``netlist.Module``).

:func:`emit` writes the input codes (:func:`_input_codes`), one unsigned adder per node
(:func:`emit_node`: written so that Yosys keeps the adders as they are), the pipeline register
chains of :class:`codesign.arch.adder_schedule.Schedule`, and per output the constant (bias and
offsets) adder and the accum/result casts of :func:`codesign.arch.dense.output_stage` (same casts,
same order) into the output register of the final stage (:func:`_output`), through a fused
activation when the layer takes one (:func:`codesign.arch.dense.register_output`).
"""

from __future__ import annotations

from codesign.arch.adder_build import AdderGraph, Term
from codesign.arch.adder_lower import Hardware, HwNode, HwSignal, const_add_forms, out_const
from codesign.arch.adder_schedule import Schedule
from codesign.arch.dense import bias_codes, output_stage, product_frac, register_output
from codesign.arch.netlist import FusedActivation, Module, cast_instance, const, signed_width
from codesign.graph import Layer


def _bits(name: str, width: int, inv: bool, hi: int | None = None, lo: int = 0) -> str:
    """``name[hi:lo]`` (complemented when ``inv``); for use inside a concatenation (self-determined)."""
    if hi is None:
        hi = width - 1
    sel = name if (hi, lo) == (width - 1, 0) else (f"{name}[{hi}]" if hi == lo else f"{name}[{hi}:{lo}]")
    return f"~{sel}" if inv else sel


def _zext(expr: str, width: int, to: int, shift: int = 0) -> str:
    """``{0..., expr, shift zeros}``: the unsigned ``expr`` (``width`` bits) shifted and zero-extended to ``to``."""
    parts = [expr] + ([f"{shift}'b0"] if shift else [])
    if to > width + shift:
        parts.insert(0, f"{to - width - shift}'b0")
    assert to >= width + shift
    return "{" + ", ".join(parts) + "}"


def emit_node(m: Module, name: str, d: int, h: HwSignal, a: str, ha: HwSignal, b: str, hb: HwSignal,
               hn: HwNode, local: tuple[bool, bool] = (False, False)) -> None:
    """``name = A + ((B + cin) << d)`` in ``h.width`` unsigned bits (:class:`HwNode`); the low ``d``
    bits are A's and bypass the adder.

    A true addition is written ``X + Y``; one with a complemented operand ``X - {1..1, Y}``
    (= X + ~Y + 1, ``cin``), so the carry chain's generate inputs get the true operand X (Yosys maps
    ``X + ~Y`` with ``~Y`` there: one inverter per bit). An operand that is a whole adder output of
    the same stage read by this adder only (``local``: a, b are) is written ``~(~X)``: Yosys'
    ``alumacc`` merges such an adder into its reader, a multi-operand ``$macc`` mapped to a
    compressor tree, which costs more LUTs than the two carry chains when the operands differ in
    width; the inverters stop the merge and vanish in the LUT mapping.
    """
    u, ua, ub, inv_a, inv_b = h.width, ha.width, hb.width, hn.inv_a, hn.inv_b
    tmp = f"{name}_sum"
    if u > d and (d == 0 or ua > d):  # an adder on the bits from d up
        wh, wah = u - d, ua - d
        wc = max(wh, wah, ub)
        if hn.cin:  # one operand complemented: X + ~Y + 1 = X - {1..1, Y}
            if inv_a:
                x, wx, y, wy = _bits(b, ub, False), ub, _bits(a, ua, False, ua - 1, d), wah
                whole_x, whole_y = local[1], local[0] and d == 0
            else:
                x, wx, y, wy = _bits(a, ua, False, ua - 1, d), wah, _bits(b, ub, False), ub
                whole_x, whole_y = local[0] and d == 0, local[1]
            if whole_x:
                x = f"~(~{x})"
            if whole_y:
                y = f"~(~{y})"
            ones = "{" + (f"{{{wc - wy}{{1'b1}}}}, " if wc > wy else "") + y + "}"
            expr = f"{_zext(x, wx, wc)} - {ones}"
        else:  # both true (or, rarely, both complemented)
            x = _bits(a, ua, inv_a, ua - 1, d)
            if local[0] and d == 0 and not inv_a:
                x = f"~(~{x})"
            y = _bits(b, ub, inv_b)
            if local[1] and not inv_b:
                y = f"~(~{y})"
            expr = f"{_zext(x, wah, wc)} + {_zext(y, ub, wc)}"
        m.wire(tmp, wc, expr)
        keep = wh
        m.wire(name, u, f"{tmp}[{wh - 1}:0]" if d == 0 else "{" + f"{tmp}[{wh - 1}:0], {_bits(a, ua, inv_a, d - 1, 0)}" + "}")
    elif u > d:  # A fits in the low d bits: the high part is B alone, no adder
        assert not hn.cin
        wh = u - d
        wc = max(wh, ub)
        m.wire(tmp, wc, _zext(_bits(b, ub, inv_b), ub, wc))
        keep = wh
        m.wire(name, u, "{" + f"{tmp}[{wh - 1}:0], {_zext(_bits(a, ua, inv_a), ua, d)}" + "}")
    else:  # degenerate: the result fits below the shift
        assert not hn.cin
        wc = max(u, ua, ub + d)
        m.wire(tmp, wc, f"{_zext(_bits(a, ua, inv_a), ua, wc)} + {_zext(_bits(b, ub, inv_b), ub, wc, d)}")
        keep = u
        m.wire(name, u, f"{tmp}[{u - 1}:0]")
    if wc > keep:  # the result needs fewer bits than the operands have (correlated operands)
        m.decls.append(f"wire unused_{name};")
        m.assigns.append(f"assign unused_{name} = ^{tmp}[{wc - 1}:{keep}];")


def _output(m: Module, layer: Layer, j: int, src: str, h: HwSignal, t: Term, stage: int,
            act: FusedActivation | None) -> None:
    """``y_j = (result_t)(accum_t)(bias_j ± (v << shift))`` from the root's code H, registered in ``stage``.

    ``v = pol * (H - off)``, so the accumulator value is ``K + (H' << k)`` with a constant K (bias
    and offsets) and ``H' = H`` or ``~H``: one constant adder (carry cells, plus an inverter per bit
    where the propagate signal is an inverted H bit: :func:`const_add_forms`), then the casts of
    :func:`codesign.arch.dense.output_stage` (same casts, same order).
    """
    assert layer.accum_type is not None
    acc_t = layer.accum_type
    k = t.shift + acc_t.frac - product_frac(layer)  # root lsb in accum units (>= 0: check_exact)
    bias = int(bias_codes(layer)[j])
    u = h.width
    kc, inv = out_const(h, t.neg, bias, k)
    hlo, hhi = ((1 << u) - 1 - h.hi, (1 << u) - 1 - h.lo) if inv else (h.lo, h.hi)
    lo, hi = kc + (hlo << k), kc + (hhi << k)
    w = max(signed_width(lo, hi), k + 1)
    s_name = f"o{j}"
    # acc = ((kc >> k) + H') << k | kc's low k bits: c + H' or (c - 1) - {1..1, ~H'}, whichever puts
    # fewer constant ones against H' bits; H' reaches the adder through an inverter (no $macc merge
    # with the root adder, see emit_node)
    c, c_lo = kc >> k, kc & ((1 << k) - 1)
    wc = max(w - k, u + 1)
    plain, sub = const_add_forms(c, u, inv)
    if c == 0 and not inv:
        body = _zext(src, u, wc)
    elif plain <= sub:
        body = f"{const(c, wc)} + {_zext(f'~(~{src})', u, wc)}"
    else:
        body = f"{const(c - 1, wc)} - {{{wc - u}'h{(1 << (wc - u)) - 1:x}, {f'~(~{src})' if inv else f'~{src}'}}}"
    m.wire(f"{s_name}_sum", wc, body)
    low = f", {k}'h{c_lo:x}" if k else ""
    m.wire(s_name, w, f"{{{s_name}_sum[{w - k - 1}:0]{low}}}")
    if wc > w - k:
        m.decls.append(f"wire unused_{s_name};")
        m.assigns.append(f"assign unused_{s_name} = ^{s_name}_sum[{wc - 1}:{w - k}];")
    src_t, src_w, signed_src = s_name, w, True
    if acc_t.overflow == "WRAP" and (lo < acc_t.min_code or hi > acc_t.max_code):
        src_t = cast_instance(m, f"acc{j}", s_name, w, acc_t.frac, acc_t)
        src_w, signed_src = acc_t.width, acc_t.signed
    y = cast_instance(m, f"res{j}", src_t, src_w, acc_t.frac, layer.out_type, signed_src)
    register_output(m, layer, j, y, stage, f"y{j}", act)


def _input_codes(m: Module, layer: Layer, hw: Hardware, used: set[int]) -> list[str]:
    """Input i's hardware code ``x{i}``: the element itself (unsigned) or with its sign bit flipped."""
    t = layer.in_type
    names = []
    for i in range(layer.n_in):
        lo_bit = i * t.width
        name = f"x{i}"
        h = hw.signals[i]
        u = h.width
        if h.off:  # signed: the code's width is t.width and off = 2^(t.width-1)
            assert u == t.width and h.off == 1 << (t.width - 1)
            top = lo_bit + t.width - 1
            expr = f"~in_data[{top}]" if t.width == 1 else f"{{~in_data[{top}], in_data[{top - 1}:{lo_bit}]}}"
        else:
            assert u <= t.width
            expr = f"in_data[{lo_bit}]" if u == 1 else f"in_data[{lo_bit + u - 1}:{lo_bit}]"
            if u < t.width:
                m.decls.append(f"wire unused_{name}_top;")
                m.assigns.append(f"assign unused_{name}_top = ^in_data[{lo_bit + t.width - 1}:{lo_bit + u}];")
        m.wire(name, u, expr)
        if i not in used:  # every weight of this input is pruned
            m.decls.append(f"wire unused_{name};")
            m.assigns.append(f"assign unused_{name} = ^{name};")
        names.append(name)
    return names


def emit_nodes(m: Module, g: AdderGraph, hw: Hardware, sch: Schedule, names: list[str],
               last_use: list[int]) -> None:
    """Every adder node of ``g`` into ``m``: signal ``sig`` is ``names[sig]``, its stage-s
    registered copy ``names[sig]_r{s-1}`` (the registers themselves are the caller's)."""

    def at(sig: int, s: int) -> str:
        """The name of ``sig`` as seen by combinational logic of stage s."""
        return names[sig] if s == sch.stage[sig] else f"{names[sig]}_r{s - 1}"

    # Yosys merges an adder into its consumer only when that is its one reader (no register, no output)
    readers = [0] * (g.n_in + len(g.nodes))
    for n in g.nodes:
        readers[n.a] += 1
        readers[n.b] += 1
    for t in g.outputs:
        if t is not None:
            readers[t.sig] += 1
    for k, (n, hn) in enumerate(zip(g.nodes, hw.nodes)):
        sig = g.n_in + k
        s = sch.stage[sig]
        local = tuple(x >= g.n_in and sch.stage[x] == s and last_use[x] == s and readers[x] == 1 for x in (n.a, n.b))
        emit_node(m, names[sig], n.shift, hw.signals[sig], at(n.a, s), hw.signals[n.a], at(n.b, s),
                   hw.signals[n.b], hn, local)


def emit(layer: Layer, module_name: str, g: AdderGraph, hw: Hardware, sch: Schedule,
         act: FusedActivation | None = None) -> Module:
    """The module of ``layer`` computing graph ``g`` in the representation ``hw``, pipelined by
    ``sch``; ``act``: an activation fused in front of the output registers."""
    m = Module(module_name)
    used = {x for n in g.nodes for x in (n.a, n.b)} | {t.sig for t in g.outputs if t is not None}
    names = _input_codes(m, layer, hw, used) + [f"n{k}" for k in range(len(g.nodes))]
    last_use = sch.last_use(g)

    def at(sig: int, s: int) -> str:
        """The name of ``sig`` as seen by combinational logic of stage s."""
        return names[sig] if s == sch.stage[sig] else f"{names[sig]}_r{s - 1}"

    emit_nodes(m, g, hw, sch, names, last_use)
    for sig in range(g.n_in + len(g.nodes)):
        if sig not in used:
            continue
        for s in range(sch.stage[sig], last_use[sig]):
            m.reg(s, f"{names[sig]}_r{s}", hw.signals[sig].width, at(sig, s))
    for j, t in enumerate(g.outputs):
        if t is None:
            output_stage(m, layer, j, None, sch.out_stage, f"y{j}", act=act)
        else:
            _output(m, layer, j, at(t.sig, sch.out_stage), hw.signals[t.sig], t, sch.out_stage, act)
    m.n_stages = sch.out_stage + 1
    return m
