"""Folded Dense layers (reuse factor R > 1) as input-serial multiplier lanes.

With ``k = ceil(n_in / R)`` inputs per cycle the layer needs ``C = ceil(n_in / k) <= R`` cycles
(idle cycles when C < R, so II = R). A shift register delivers inputs ``c*k .. c*k + k - 1`` in
cycle c (its k lowest elements; no wide multiplexers), and every output j has k multipliers: slot
m multiplies element m by ``w[c*k + m, j]``, read from a ROM indexed by the cycle (a case
statement: LUT-ROM friendly). A slot whose weights are all pruned has no multiplier. The k
products of an output are summed and registered, then added into the output's accumulator; after
the last cycle the accumulator goes through the bias add and the accum/result casts of
:func:`codesign.arch.dense.output_stage`.

Exactness as :func:`codesign.arch.dense.folded`: products are exact, or (when accum_t keeps fewer
fractional bits than x*w) each one is rounded on its own into a wrapping accum_t, as hls4ml's
``(accum_t)(x*w)``; the rounded terms then add in any order, since wrapping is modular.
"""

from __future__ import annotations

from dataclasses import dataclass

from codesign.arch import serial
from codesign.arch.dense import (DenseCost, output_stage, product_frac, exact_product_range, check_exact,
                                 needs_product_rounding, multiplier_cost, multiply)
from codesign.arch.netlist import FusedActivation, Module, Net, cast_instance, const, ext, rom, signed_width
from codesign.graph import Layer


def groups(n_in: int, R: int) -> tuple[int, int]:
    """(k, C): inputs per cycle ``ceil(n_in / R)`` and cycles ``ceil(n_in / k)``."""
    k = -(-n_in // R)
    return k, -(-n_in // k)


def unavailable(layer: Layer) -> str | None:
    """Why a layer cannot be built input-serially (None: it can)."""
    if layer.product != "exact":
        return f"its products are {layer.product!r}, not exact"
    if layer.nonzero_weights == 0:
        return "every weight is zero"
    return None


@dataclass(frozen=True)
class Plan:
    R: int
    k: int
    C: int
    multipliers: int
    lut: int  #: estimated LUTs (multipliers as LUTs unless rtl.multipliers is dsp)
    ff: int
    dsp: int = 0  #: estimated DSP blocks (rtl.multipliers: dsp)


def _slot_weights(layer: Layer, k: int, C: int, j: int, m: int) -> list[int]:
    assert layer.weights is not None
    return [int(layer.weights[c * k + m, j]) if c * k + m < layer.n_in else 0 for c in range(C)]


def _x_width(layer: Layer) -> int:
    return layer.in_type.width + (0 if layer.in_type.signed else 1)


def rom_luts(bits: int, entries: int) -> int:
    """LUT6s of a ROM of ``entries`` words: one per output bit and 64 entries (none for a constant)."""
    return 0 if entries <= 1 else bits * -(-entries // 64)


def plan(layer: Layer, R: int, multipliers: str = "auto") -> Plan:
    """Size (and cost) the input-serial architecture of ``layer`` at reuse factor R."""
    assert layer.weights is not None and layer.accum_type is not None
    k, C = groups(layer.n_in, R)
    x_w = _x_width(layer)
    rounding = needs_product_rounding(layer)
    mults = lut = ff = dsp = 0
    for j in range(layer.n_out):
        lo = hi = 0
        q_w = 0
        for m in range(k):
            ws = _slot_weights(layer, k, C, j, m)
            if not any(ws):
                continue
            mults += 1
            w_w = signed_width(min(ws + [0]), max(ws + [0]))
            mult_lut, mult_dsp = multiplier_cost(x_w, w_w, multipliers)
            lut, dsp = lut + mult_lut + rom_luts(w_w, C), dsp + mult_dsp
            if rounding:
                lut += layer.accum_type.width
            q_w += 1
            for w in ws:
                a, b = (layer.accum_type.min_code, layer.accum_type.max_code) if rounding else exact_product_range(layer, w)
                lo, hi = lo + min(a, 0), hi + max(b, 0)
        if q_w:
            a_w = signed_width(lo, hi)
            lut += a_w * q_w  # the slots' adder tree and the accumulator
            ff += 2 * a_w
        lut += layer.accum_type.width // 2  # bias add and casts
        ff += layer.out_type.width
    lut += layer.n_in * layer.in_type.width // 2 + 8  # input shift register (load / shift mux), control
    ff += layer.n_in * layer.in_type.width + 8
    return Plan(R, k, C, mults, lut, ff, dsp)


def build_module(layer: Layer, module_name: str, p: Plan, multipliers: str = "auto",
                 act: FusedActivation | None = None) -> tuple[Module, DenseCost, serial.Serial]:
    """The module of ``layer``; render with ``dense_serial.v.j2``. ``act``: an activation applied
    before the output registers (:func:`codesign.arch.dense.register_output`)."""
    assert layer.weights is not None and layer.accum_type is not None
    rounding = needs_product_rounding(layer)
    check_exact(layer, product_rounding=rounding)
    acc_t = layer.accum_type
    t_in = layer.in_type
    W, k, C = t_in.width, p.k, p.C
    tw = serial.counter_width(p.R)
    x_w = _x_width(layer)
    m = Module(module_name)
    x_bits = layer.n_in * W
    slot_used = [False] * k
    for j in range(layer.n_out):
        for s in range(k):
            if any(_slot_weights(layer, k, C, j, s)):
                slot_used[s] = True
    for s in range(k):
        bits = serial.bus_bits("x_sh", s * W, W)
        if not slot_used[s]:
            serial.mark_unused(m, f"xs{s}", bits)
            continue
        m.wire(f"xs{s}", x_w, bits if t_in.signed else "{1'b0, " + bits + "}")
    if C > 1:
        keep = serial.bus_bits("x_sh", k * W, x_bits - k * W)
        x_next = "{" + f"{k * W}'b0, {keep}" + "}"
    else:
        x_next = ""
    mults = 0
    for j in range(layer.n_out):
        terms, lo, hi = [], 0, 0
        for s in range(k):
            ws = _slot_weights(layer, k, C, j, s)
            if not any(ws):
                continue
            mults += 1
            w_w = signed_width(min(ws + [0]), max(ws + [0]))
            name = f"m{j}_{s}"
            if C > 1:
                m.decls.append(f"reg signed [{w_w - 1}:0] w{name};")
                m.combs.append(rom(f"w{name}", w_w, "t", tw, list(ws)))
            else:
                m.wire(f"w{name}", w_w, const(ws[0], w_w))
            mul_w = x_w + w_w
            multiply(m, f"p{name}", f"xs{s}", x_w, f"w{name}", w_w, multipliers)
            if rounding:
                q = cast_instance(m, f"r{name}", f"p{name}", mul_w, product_frac(layer), acc_t)
                a, b = acc_t.min_code, acc_t.max_code
                pw = signed_width(a, b)
                m.wire(f"e{name}", pw, q if acc_t.signed else "{1'b0, " + q + "}")
            else:
                rng = [exact_product_range(layer, w) for w in ws]
                a, b = min(r[0] for r in rng), max(r[1] for r in rng)
                pw = signed_width(a, b)
                if pw < mul_w:
                    serial.mark_unused(m, f"p{name}", f"p{name}[{mul_w - 1}:{pw}]")
                m.wire(f"e{name}", pw, f"p{name}[{pw - 1}:0]")
            terms.append((f"e{name}", pw, a, b))
            for w in ws:
                ta, tb = (acc_t.min_code, acc_t.max_code) if rounding else exact_product_range(layer, w)
                lo, hi = lo + min(ta, 0), hi + max(tb, 0)
        if not terms:
            output_stage(m, layer, j, None, 0, f"y{j}", act=act)
            continue
        a_w = signed_width(lo, hi)
        q_lo, q_hi = sum(t[2] for t in terms), sum(t[3] for t in terms)
        q_w = min(a_w, signed_width(q_lo, q_hi))  # a cycle's sum is a partial sum: it fits in a_w
        m.decls.append(f"reg signed [{q_w - 1}:0] q{j};")
        # the products' low q_w bits: their sum is exact modulo 2^q_w, and the sum fits in q_w bits
        parts = [f"{t[0]}[{q_w - 1}:0]" if t[1] > q_w else ext(t[0], t[1], q_w) for t in terms]
        m.engine.append(f"q{j} <= " + " + ".join(parts) + ";")
        m.decls.append(f"reg signed [{a_w - 1}:0] acc{j};")
        m.accs.append(f"acc{j} <= (a_first ? {a_w}'d0 : acc{j}) + {ext(f'q{j}', q_w, a_w)};")
        output_stage(m, layer, j, Net(f"acc{j}", lo, hi), 0, f"y{j}", acc_t.frac if rounding else None, act)
    s = serial.Serial(R=p.R, active=C, depth=1, x_bits=x_bits, x_load="in_data", x_next=x_next, uses_first=True)
    return m, DenseCost(latency=s.latency, ii=p.R, multipliers=mults, adders=0), s
