"""Folded Dense layers (reuse factor R > 1) as a digit-serial shared constant-coefficient adder graph.

The inputs enter ``d = ceil(W / R)`` bits per cycle, least significant digit first, for
``D = ceil(W / d) <= R`` cycles (idle cycles when D < R, so II = R). Every digit is unsigned: a
signed input is offset, ``x = u - 2^(W-1)`` with ``u = x XOR MSB`` (the sign bit flipped), so

    sum_i w_ij x_i = sum_t 2^(d t) * sum_i w_ij u_i[t]  -  2^(W-1) * sum_i w_ij.

The inner sum ``P_j(t) = sum_i w_ij u_i[t]`` is the same constant matrix-vector product as at
RF 1, on d-bit digits, built by the same machinery (:mod:`codesign.arch.adder_build` with input
codes 0 .. 2^d - 1, :mod:`~codesign.arch.adder_lower`, :mod:`~codesign.arch.adder_schedule`,
the node writer of :mod:`~codesign.arch.adder_emit`), so its adders are only as wide as the digit
plus the weights, common subexpressions are shared and pruned weights cost nothing.

Each distinct root of the graph (an output's partial sum, up to a shift and sign) has one
accumulator. Its unsigned hardware code ``H(t)`` is accumulated least significant digit first
without a wide adder: ``S <= (first ? 0 : S >> d) + H(t)`` while the d bits shifted out of S are
final and collect in a shift register L; after the last digit ``A = {S, L} = sum_t H(t) 2^(d t)``.
The constants (bias, the digit offset ``-2^(W-1) sum_i w_ij``, the graph's code offset
``off * sum_t 2^(d t)``) add once per output, in the one constant adder ahead of the
accum/result casts (``y_j = (result_t)(accum_t)(K_j ± (A << k_j))``, the casts of
:func:`codesign.arch.dense.output_stage`). The sum is exact integer arithmetic, so this is valid
exactly where RF 1 uses the adder graph: exact products, no per-product rounding (a saturating
accum_t that no partial sum can overflow is accepted, as in :func:`codesign.arch.dense.check_exact`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from codesign.arch import serial
from codesign.arch.adder_build import AdderGraph, build
from codesign.arch.adder_emit import emit_nodes
from codesign.arch.adder_graph import SELECT_METHODS
from codesign.arch.adder_lower import Hardware, lower, refine
from codesign.arch.adder_schedule import Schedule, schedule
from codesign.arch.adder_timing import CLOCK_NS, adder_delay
from codesign.arch.dense import DenseCost, bias_codes, output_stage, product_frac, check_exact, needs_product_rounding
from codesign.arch.netlist import FusedActivation, Module, const, signed_width
from codesign.graph import Layer

#: Arrival of the digits inside the first stage when there is one digit: straight from the input
#: register.
DIGIT_ARRIVAL_NS = 0.1
#: Delay of the digit multiplexer (a LUT6 and its routing; a LUT6 selects among up to 4 digits).
DIGIT_MUX_NS = 0.45
#: Each further MUXF7 / MUXF8 level of a wider digit multiplexer (5..8, 9..16 digits).
DIGIT_MUXF_NS = 0.15
#: Delay of the accumulator's first-digit gate ahead of its adder (ns).
GATE_NS = 0.1


def digits(width: int, R: int) -> tuple[int, int]:
    """(d, D): digit width ``ceil(width / R)`` and the number of digits ``ceil(width / d)``."""
    d = -(-width // R)
    return d, -(-width // d)


def digit_arrival(D: int) -> float:
    """Arrival (ns) of the digits inside the first stage: the input register, then a D:1 multiplexer."""
    if D == 1:
        return DIGIT_ARRIVAL_NS
    levels = max(0, (D - 1).bit_length() - 2)  # LUT6 up to 4 digits, MUXF7 up to 8, MUXF8 up to 16
    return DIGIT_ARRIVAL_NS + DIGIT_MUX_NS + DIGIT_MUXF_NS * levels


def mux_luts(D: int) -> int:
    """LUTs of one bit of a D:1 digit multiplexer (a LUT6 per 4 digits, MUXF7/F8 combine them)."""
    return 0 if D == 1 else -(-D // 4)


def unavailable(layer: Layer, adder_graph: bool = True) -> str | None:
    """Why a layer cannot be built digit-serially (None: it can)."""
    if not adder_graph:
        return "rtl.adder_graph is off"
    if layer.product != "exact":
        return f"its products are {layer.product!r}, not exact"
    if needs_product_rounding(layer):
        return "hls4ml rounds every product into accum_t (accum_t keeps fewer fractional bits than x*w)"
    if layer.nonzero_weights == 0:
        return "every weight is zero"
    return None


@dataclass
class Plan:
    """The digit-serial graph of a layer and what it costs."""

    R: int
    d: int
    D: int
    g: AdderGraph
    hw: Hardware
    sch: Schedule
    roots: dict[int, int]  #: root signal -> accumulator S width
    lut: int  #: estimated LUTs (cost model)
    ff: int  #: estimated flip-flops

    @property
    def depth(self) -> int:
        return self.sch.out_stage

    @property
    def latency(self) -> int:
        return serial.latency(self.D, self.depth)

    @property
    def low_bits(self) -> int:
        """Width of each accumulator's shift register L of final low digits."""
        return self.d * (self.D - 1)


def _acc_width(hmax: int, d: int, D: int) -> int:
    """Bits of S: ``S <= (S >> d) + H`` over D digits with H <= hmax."""
    smax = 0
    for _ in range(D):
        smax = (smax >> d) + hmax
    return max(smax.bit_length(), d + 1 if D > 1 else 1)


def plan(layer: Layer, R: int, clock_ns: float = CLOCK_NS) -> Plan:
    """Build (and cost) the digit-serial graph of ``layer`` at reuse factor R."""
    assert layer.weights is not None and layer.accum_type is not None
    why = unavailable(layer)
    if why:
        raise ValueError(f"layer {layer.name}: no digit-serial architecture: {why}")
    t_in = layer.in_type
    d, D = digits(t_in.width, R)
    best: tuple[tuple[int, int], AdderGraph, Hardware, Schedule, dict[int, int]] | None = None
    for select in SELECT_METHODS:
        g = build(layer.weights, [0] * layer.n_in, [(1 << d) - 1] * layer.n_in, select=select)
        hw = refine(g, lower(g))
        roots: dict[int, int] = {}
        for t in g.outputs:
            if t is not None and t.sig not in roots:
                roots[t.sig] = _acc_width(hw.signals[t.sig].hi, d, D)
        delays = [adder_delay(roots[t.sig]) + GATE_NS if t is not None else 0.0 for t in g.outputs]
        sch = schedule(g, delays, clock_ns, digit_arrival(D))
        key = (sch.out_stage, hw.cost)
        if best is None or key < best[0]:
            best = (key, g, hw, sch, roots)
    assert best is not None
    _, g, hw, sch, roots = best
    used = _used_inputs(g)
    acc_bits = sum(roots.values())
    n_out_bits = layer.n_out * layer.out_type.width
    out_adder = layer.n_out * layer.accum_type.width  # the constant adder and casts (as at RF 1)
    lut = hw.cost + acc_bits + len(used) * d * mux_luts(D) + out_adder // 2 + 8
    ff = (len(used) * t_in.width + sch.register_bits(g) + acc_bits + len(roots) * d * (D - 1) + n_out_bits
          + 3 * sch.out_stage + 8)
    return Plan(R, d, D, g, hw, sch, roots, lut, ff)


def _used_inputs(g: AdderGraph) -> list[int]:
    used = {x for n in g.nodes for x in (n.a, n.b)} | {t.sig for t in g.outputs if t is not None}
    return sorted(i for i in used if i < g.n_in)


def build_module(layer: Layer, module_name: str, p: Plan,
                 act: FusedActivation | None = None) -> tuple[Module, DenseCost, serial.Serial]:
    """The module of ``layer`` from its plan; render with ``dense_serial.v.j2``. ``act``: an
    activation applied before the output registers (:func:`codesign.arch.dense.register_output`)."""
    assert layer.weights is not None and layer.accum_type is not None
    check_exact(layer)
    t_in, acc_t = layer.in_type, layer.accum_type
    W, d, D, g, hw, sch = t_in.width, p.d, p.D, p.g, p.hw, p.sch
    m = Module(module_name)
    used = _used_inputs(g)
    slot = {i: k for k, i in enumerate(used)}
    # input register: the used inputs' unsigned codes, loaded on the handshake and held; digit t of
    # each is selected by the cycle counter. Not a shift register: shifting costs a load-or-shift
    # LUT per register bit, the multiplexer one LUT per digit bit for up to 4 digits.
    load = []
    for i in range(layer.n_in):
        lo = i * W
        if i not in slot:
            serial.mark_unused(m, f"in{i}", serial.bus_bits("in_data", lo, W))
            continue
        if t_in.signed:
            load.append(f"~in_data[{lo}]" if W == 1 else f"~in_data[{lo + W - 1}], in_data[{lo + W - 2}:{lo}]")
        else:
            load.append(serial.bus_bits("in_data", lo, W))
        m.wire(f"x{i}", d, _digit_mux(slot[i] * W, W, d, D, serial.counter_width(p.R)))
    names = [f"x{i}" for i in range(g.n_in)] + [f"n{k}" for k in range(len(g.nodes))]
    last_use = sch.last_use(g)

    def at(sig: int, s: int) -> str:
        return names[sig] if s == sch.stage[sig] else f"{names[sig]}_r{s - 1}"

    emit_nodes(m, g, hw, sch, names, last_use)
    used_sigs = set(used) | set(range(g.n_in, g.n_in + len(g.nodes)))
    for sig in sorted(used_sigs):
        for s in range(sch.stage[sig], last_use[sig]):
            w = hw.signals[sig].width
            m.decls.append(f"reg [{w - 1}:0] {names[sig]}_r{s};")
            m.engine.append(f"{names[sig]}_r{s} <= {at(sig, s)};")
    # accumulators, one per distinct root: S <= (first ? 0 : S >> d) + H; L collects S's low digits
    So, dl = sch.out_stage, p.low_bits
    for sig, sw in p.roots.items():
        h = hw.signals[sig]
        acc = f"sa{sig}"
        m.decls.append(f"reg [{sw - 1}:0] {acc};")
        root = f"~(~{at(sig, So)})"  # no $macc merge of the root adder into the accumulator
        add = "{" + (f"{sw - h.width}'b0, " if sw > h.width else "") + root + "}"
        assert sw >= h.width
        if D > 1:
            keep = f"{acc}[{sw - 1}:{d}]" if sw - d > 1 else f"{acc}[{sw - 1}]"
            m.accs.append(f"{acc} <= (a_first ? {sw}'d0 : {{{d}'b0, {keep}}}) + {add};")
            low = f"{acc}[{d - 1}:0]" if d > 1 else f"{acc}[0]"
            m.decls.append(f"reg [{dl - 1}:0] la{sig};")
            if dl > d:
                m.accs.append(f"la{sig} <= {{{low}, la{sig}[{dl - 1}:{d}]}};" if dl - d > 1 else
                              f"la{sig} <= {{{low}, la{sig}[{dl - 1}]}};")
            else:
                m.accs.append(f"la{sig} <= {low};")
        else:
            m.accs.append(f"{acc} <= {add};")
    # outputs: v_j = K_j ± (A << k_j), exact in accum units, then the accum/result casts
    a = acc_t.frac - product_frac(layer)
    assert a >= 0
    bias = bias_codes(layer)
    off_in = 1 << (W - 1) if t_in.signed else 0
    G = sum(1 << (d * t) for t in range(D))
    for j, t in enumerate(g.outputs):
        col = [int(w) for w in layer.weights[:, j]]
        if t is None:
            output_stage(m, layer, j, None, 0, f"y{j}", act=act)
            continue
        h = hw.signals[t.sig]
        sgn = -h.pol if t.neg else h.pol
        k = t.shift + a
        K = int(bias[j]) - ((off_in * sum(col)) << a) - sgn * ((h.off * G) << k)
        vlo = int(bias[j]) + (sum(min(w * t_in.min_code, w * t_in.max_code) for w in col) << a)
        vhi = int(bias[j]) + (sum(max(w * t_in.min_code, w * t_in.max_code) for w in col) << a)
        w_out = signed_width(vlo, vhi)
        aw = p.roots[t.sig] + dl
        wc = max(w_out, aw + k + 1)
        parts = [f"sa{t.sig}"] + ([f"la{t.sig}"] if dl else []) + ([f"{k}'b0"] if k else [])
        shifted = "{" + (f"{wc - aw - k}'b0, " if wc > aw + k else "") + ", ".join(parts) + "}"
        m.wire(f"o{j}_sum", wc, f"{const(K, wc)} {'+' if sgn > 0 else '-'} {shifted}")
        m.wire(f"o{j}", w_out, f"o{j}_sum[{w_out - 1}:0]")
        if wc > w_out:
            serial.mark_unused(m, f"o{j}", f"o{j}_sum[{wc - 1}:{w_out}]")
        serial.finish(m, layer, j, f"o{j}", w_out, vlo, vhi, act)
    x_bits = max(1, len(used) * W)
    s = serial.Serial(
        R=p.R, active=D, depth=So, x_bits=x_bits,
        x_load="{" + ", ".join(reversed(load)) + "}" if load else f"{x_bits}'d0",
        x_next="",
        uses_first=D > 1)
    if not load:
        serial.mark_unused(m, "x_sh", "x_sh")
    cost = DenseCost(latency=s.latency, ii=p.R, multipliers=0, adders=len(g.nodes) + len(p.roots))
    return m, cost, s


def _digit_mux(base: int, W: int, d: int, D: int, tw: int) -> str:
    """Digit ``t`` of the W-bit code at ``x_sh[base +: W]`` (the last digit zero-extended to d bits);
    the idle cycles t >= D read the last digit, which no accumulator takes."""
    def digit(k: int) -> str:
        lo = base + k * d
        n = min(d, base + W - lo)
        bits = serial.bus_bits("x_sh", lo, n)
        return bits if n == d else f"{{{d - n}'b0, {bits}}}"
    expr = digit(D - 1)
    for k in range(D - 2, -1, -1):
        expr = f"(t == {tw}'d{k}) ? {digit(k)} : {expr}"
    return expr


def evaluate(p: Plan, layer: Layer, x: np.ndarray) -> np.ndarray:
    """``sum_i w_ij x_i`` (N x n_out) as the digit-serial datapath computes it (for tests)."""
    from codesign.arch.adder_lower import hw_evaluate

    assert layer.weights is not None
    t_in = layer.in_type
    x = np.asarray(x, dtype=np.int64)
    u = x + (1 << (t_in.width - 1)) if t_in.signed else x
    acc = {sig: np.zeros(len(x), dtype=object) for sig in p.roots}
    for t in range(p.D):
        dig = (u >> (p.d * t)) & ((1 << p.d) - 1)
        vals = hw_evaluate(p.g, p.hw, dig)
        for sig in acc:
            acc[sig] = acc[sig] + (vals[sig].astype(object) << (p.d * t))
    G = sum(1 << (p.d * t) for t in range(p.D))
    off_in = 1 << (t_in.width - 1) if t_in.signed else 0
    out = np.zeros((len(x), layer.n_out), dtype=object)
    for j, term in enumerate(p.g.outputs):
        if term is None:
            continue
        h = p.hw.signals[term.sig]
        v = h.pol * (acc[term.sig] - h.off * G)
        v = v * (1 << term.shift)
        out[:, j] = (-v if term.neg else v) - off_in * int(layer.weights[:, j].sum())
    return out.astype(np.int64)
