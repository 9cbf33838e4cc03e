"""Dense layers in RTL, bit-exact with hls4ml's latency/resource Dense.

Arithmetic (proved equal to hls4ml's order of casts, see docs/DESIGN.md): products x*w are exact and
their conversion to accum_t only moves the binary point when accum_t keeps at least the product's
fractional bits; with a wrapping accum_t the sum is modular, so summing exactly and wrapping once
at the end gives hls4ml's result in any order. A saturating accum_t is accepted only when no
partial sum in hls4ml's order can reach its limits; otherwise the layer is refused.

Two architectures:
* reuse factor 1: every weight is a constant; each product is its canonical-signed-digit shift-add
  terms, summed in one balanced adder tree per neuron, registered every ``levels_per_stage`` adder
  levels (an elastic pipeline: stage k loads when empty or when stage k+1 loads).
* reuse factor R > 1: ceil(nonzeros / R) multiplier lanes; lane m owns nonzero terms
  [m*R, (m+1)*R) in (neuron, input) order, reads its weight from a per-lane ROM and its input through
  a per-lane mux indexed by the cycle counter, and adds into the accumulators of the neurons those
  terms belong to. II = R, latency = R + 3 (input register, R issue cycles, accumulate, output
  register).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from codesign.errors import RtlGenError
from codesign.fixedpoint import FixedType, cast, po2_zero_exponent
from codesign.graph import Layer
from codesign.arch.csd import csd
from codesign.arch.netlist import (FusedActivation, Module, Net, cast_instance, const, ext, input_element, reduce_tree,
                                   rom, signed_width)


@dataclass(frozen=True)
class DenseCost:
    latency: int
    ii: int
    #: general (variable x variable) multipliers, the ones synthesis may put into DSP blocks; a
    #: constant weight's product is shift-add terms, counted in ``adders``
    multipliers: int
    adders: int


#: Values of ``rtl.multipliers``: how the folded architectures build their general (variable x
#: variable) multipliers. "auto" writes ``a * b`` and leaves the mapping to the synthesizer (Yosys
#: and Vivado map wide products to DSP blocks, narrow ones to LUTs) while the fold cost model counts
#: every multiplier as LUTs; "dsp" marks each product ``(* use_dsp = "yes" *)`` (Vivado's attribute)
#: and the cost model counts it as DSP blocks, so folding trades LUTs for DSPs; "lut" writes each
#: product as signed shift-and-add partial products, LUTs in any tool (no ``*`` for a DSP to take).
MULTIPLIERS = ("auto", "dsp", "lut")
#: DSP48E2's signed multiplier operands (27 x 18 bits): a wider product takes several blocks.
DSP_A_BITS, DSP_B_BITS = 27, 18


def dsp_blocks(a_w: int, b_w: int) -> int:
    """DSP48E2 blocks of an ``a_w`` x ``b_w`` signed product (the wider operand on the 27-bit port)."""
    a, b = max(a_w, b_w), min(a_w, b_w)
    return -(-a // DSP_A_BITS) * -(-b // DSP_B_BITS)


def multiplier_cost(a_w: int, b_w: int, multipliers: str) -> tuple[int, int]:
    """The cost model's (LUTs, DSP blocks) of one general ``a_w`` x ``b_w`` multiplier built as
    ``multipliers`` says: about ``a_w * b_w`` LUTs and no DSP, or no LUT and its DSP48E2 blocks."""
    return (0, dsp_blocks(a_w, b_w)) if multipliers == "dsp" else (a_w * b_w, 0)


def multiply(m: Module, name: str, a: str, a_w: int, b: str, b_w: int, multipliers: str) -> int:
    """Declare ``name`` = signed ``a`` (a_w bits) x signed ``b`` (b_w bits), exact in a_w + b_w bits,
    built as ``multipliers`` says (see MULTIPLIERS); returns the product's width."""
    if multipliers not in MULTIPLIERS:
        raise ValueError(f"rtl.multipliers {multipliers!r}; valid: {', '.join(MULTIPLIERS)}")
    w = a_w + b_w
    m.decls.append(("(* use_dsp = \"yes\" *) " if multipliers == "dsp" else "") + f"wire signed [{w - 1}:0] {name};")
    if multipliers != "lut":
        # Both operands are signed wires of their own widths, so Verilog sign-extends them to the
        # w-bit context itself. Written out as concatenations instead, Yosys sees a w x w multiply
        # and maps two DSP48E2 where one holds the a_w x b_w product.
        m.assigns.append(f"assign {name} = {a} * {b};")
        return w
    # b = -b[b_w-1] * 2^(b_w-1) + sum_i b[i] * 2^i: one partial product of a per bit of b, the
    # sign bit's subtracted; every term and the sum are exact modulo 2^w and the product fits in w
    m.decls.append(f"wire signed [{w - 1}:0] {name}_a;")
    m.assigns.append(f"assign {name}_a = {ext(a, a_w, w)};")
    terms = []
    for i in range(b_w):
        shifted = f"{name}_a" if i == 0 else "{" + f"{name}_a[{w - 1 - i}:0], {i}'b0" + "}"
        terms.append(f"({{{w}{{{b}[{i}]}}}} & {shifted})")
    positive = " + ".join(terms[:-1]) or f"{w}'d0"
    m.assigns.append(f"assign {name} = {positive} - {terms[-1]};")
    return w


def product_frac(layer: Layer) -> int:
    if layer.product == "po2":
        assert layer.product_type is not None
        return layer.product_type.frac
    return layer.in_type.frac + layer.weight_frac


def _contributes(layer: Layer, w: int) -> bool:
    """Whether a weight adds a term: a pruned zero does not; a po2 zero is +1 in hls4ml's C-sim."""
    return layer.product == "po2" or w != 0


def _po2_shift(layer: Layer, w: int) -> tuple[int, bool]:
    """A power-of-two product as (s, negate): code = x << s (s >= 0) or floor(x / 2**-s), in r_T."""
    assert layer.product_type is not None
    if w == 0:
        e, neg = po2_zero_exponent(layer.in_type, layer.product_type), False
    else:
        e, neg = int(round(np.log2(abs(w)))) - layer.weight_frac, w < 0
    return layer.product_type.frac - layer.in_type.frac + e, neg


def _po2_range(layer: Layer, w: int) -> tuple[int, int]:
    r_t, t = layer.product_type, layer.in_type
    assert r_t is not None
    s, neg = _po2_shift(layer, w)
    lo, hi = (t.min_code << s, t.max_code << s) if s >= 0 else (t.min_code >> -s, t.max_code >> -s)
    if neg:
        lo, hi = -hi, -lo
    if lo < r_t.min_code or hi > r_t.max_code:
        raise RtlGenError(f"layer {layer.name}: power-of-two product x*{w}*2^-{layer.weight_frac} wraps in "
                          f"hls4ml's product type {r_t}; the RTL backend does not reproduce that wrap")
    return lo, hi


def needs_product_rounding(layer: Layer) -> bool:
    """accum_t keeps fewer fractional bits than x*w: hls4ml rounds every product on its own."""
    assert layer.accum_type is not None and layer.weights is not None
    return layer.accum_type.frac < product_frac(layer) and any(
        _contributes(layer, int(w)) for w in layer.weights.ravel())


def check_exact(layer: Layer, product_rounding: bool = False) -> None:
    """Refuse what the RTL cannot reproduce exactly, naming the layer and the type.

    ``product_rounding``: the caller rounds every product into accum_t on its own (the parallel
    architecture does, for a wrapping accum_t, where summing rounded products in any order is exact).
    """
    assert layer.accum_type is not None and layer.weights is not None and layer.bias is not None
    acc = layer.accum_type
    if layer.product == "po2" and layer.reuse_factor > 1:
        raise RtlGenError(
            f"layer {layer.name}: power-of-two (quantized_po2) weights are supported at reuse factor 1 only, "
            f"got {layer.reuse_factor}", hint=f"set hls.layer_reuse_factor.{layer.name}: 1")
    if layer.product not in ("exact", "po2"):
        raise RtlGenError(f"layer {layer.name}: product kind {layer.product!r} is not supported")
    if needs_product_rounding(layer) and not (product_rounding and acc.overflow == "WRAP"):
        raise RtlGenError(
            f"layer {layer.name}: accum type {acc} keeps {acc.frac} fractional bits but products x*w have "
            f"{product_frac(layer)}; per-product rounding in accum_t is supported with a wrapping accum_t only "
            f"(overflow {acc.overflow}, reuse factor {layer.reuse_factor})",
            hint=f"give {layer.name} an accum precision with at least {product_frac(layer)} fractional bits",
        )
    if acc.overflow != "WRAP":
        lo, hi = _partial_sum_bounds(layer)
        if lo < acc.min_code or hi > acc.max_code:
            raise RtlGenError(
                f"layer {layer.name}: saturating accum type {acc} can overflow (partial sums reach "
                f"[{lo}, {hi}] codes, type holds [{acc.min_code}, {acc.max_code}]); its result would depend "
                f"on the order of additions",
                hint="use a wider accum precision or AP_WRAP",
            )


def bias_codes(layer: Layer) -> np.ndarray:
    """The bias as accumulator codes: the value every output's sum starts from."""
    assert layer.accum_type is not None and layer.bias is not None
    return cast(layer.bias, layer.bias_frac, layer.accum_type)


def exact_product_range(layer: Layer, w: int) -> tuple[int, int]:
    if layer.product == "po2":
        return _po2_range(layer, w)
    t = layer.in_type
    a, b = t.min_code * w, t.max_code * w
    return min(a, b), max(a, b)


def _partial_sum_bounds(layer: Layer) -> tuple[int, int]:
    """Bounds (accum codes) of every partial sum bias + sum of any subset of products."""
    assert layer.weights is not None and layer.accum_type is not None
    shift = layer.accum_type.frac - product_frac(layer)
    bias = bias_codes(layer)
    lo_all, hi_all = 0, 0
    for j in range(layer.n_out):
        lo, hi = int(bias[j]), int(bias[j])
        for w in layer.weights[:, j]:
            if _contributes(layer, int(w)):
                a, b = exact_product_range(layer, int(w))
                lo += min(a, 0) << max(shift, 0)
                hi += max(b, 0) << max(shift, 0)
        lo_all, hi_all = min(lo_all, lo), max(hi_all, hi)
    return lo_all, hi_all


def register_output(m: Module, layer: Layer, j: int, y: str, stage: int, out_name: str,
                    act: FusedActivation | None = None) -> None:
    """Register result ``y`` (output ``j``, result_t) as ``out_name`` in ``stage``; with a fused
    activation ``act``, register the activation of it instead: the same primitive its own module
    would apply, moved in front of the register, so the register holds the narrow activation type
    rather than the wide result type."""
    t = layer.out_type
    if act is not None:
        y = cast_instance(m, f"act{j}", y, t.width, t.frac, act.out_type, t.signed, act.primitive)
        t = act.out_type
        m.fused = act
    m.stages_extend(stage)
    m.decls.append(f"reg [{t.width - 1}:0] {out_name};")
    m.stages[stage].append(f"{out_name} <= {y};")


def output_stage(m: Module, layer: Layer, j: int, root: Net | None, stage: int, out_name: str,
                 tree_frac: int | None = None, act: FusedActivation | None = None) -> None:
    """out_j = (result_t)(accum_t)(bias + root): bias add, accum wrap, result cast, one register
    (holding ``act`` of it when an activation is fused, :func:`register_output`).

    ``tree_frac``: fractional bits of the root's units (default: the products')."""
    assert layer.accum_type is not None
    acc_t = layer.accum_type
    shift_to_acc = acc_t.frac - (product_frac(layer) if tree_frac is None else tree_frac)
    bias = int(bias_codes(layer)[j])
    if root is None:
        lo = hi = bias
        s_name = m.fresh("s")
        w = signed_width(lo, hi)
        m.wire(s_name, w, const(bias, w))
    else:
        sh = root.lsb + shift_to_acc
        rlo, rhi = (root.lo << sh, root.hi << sh)
        if root.neg:
            rlo, rhi = -rhi, -rlo
        lo, hi = bias + rlo, bias + rhi
        w = max(signed_width(lo, hi), root.width + sh + 1, signed_width(bias, bias))
        s_name = m.fresh("s")
        op = "-" if root.neg else "+"
        m.wire(s_name, w, f"{const(bias, w)} {op} {ext(root.name, root.width, w, sh)}")
    src = s_name
    if acc_t.overflow == "WRAP" and (lo < acc_t.min_code or hi > acc_t.max_code):
        src = cast_instance(m, f"acc{j}", s_name, w, acc_t.frac, acc_t)
        w = acc_t.width
        signed_src = acc_t.signed
    else:
        signed_src = True
    y = cast_instance(m, f"res{j}", src, w, acc_t.frac, layer.out_type, signed_src)
    register_output(m, layer, j, y, stage, out_name, act)


def _mark_unused_inputs(m: Module, layer: Layer, xs: list[Net]) -> None:
    """Inputs whose weights are all pruned feed nothing; name them so -Wall knows it is deliberate.

    Power-of-two products read only some bits of an input (or none, when the shift drops them all).
    """
    assert layer.weights is not None
    for i, x in enumerate(xs):
        if layer.product == "po2" or not np.any(layer.weights[i] != 0):
            m.decls.append(f"wire unused_{x.name};")
            m.assigns.append(f"assign unused_{x.name} = ^{x.name};")


def _combine(m: Module, a: Net, b: Net) -> Net:
    lsb = min(a.lsb, b.lsb)
    sa, sb = a.lsb - lsb, b.lsb - lsb
    alo, ahi, blo, bhi = a.lo << sa, a.hi << sa, b.lo << sb, b.hi << sb
    if a.neg == b.neg:
        lo, hi, op, neg = alo + blo, ahi + bhi, "+", a.neg
    else:
        if a.neg:  # make a the positive one
            a, b, sa, sb, alo, ahi, blo, bhi = b, a, sb, sa, blo, bhi, alo, ahi
        lo, hi, op, neg = alo - bhi, ahi - blo, "-", False
    w = max(signed_width(lo, hi), a.width + sa, b.width + sb)
    name = m.fresh("t")
    m.wire(name, w, f"{ext(a.name, a.width, w, sa)} {op} {ext(b.name, b.width, w, sb)}")
    return Net(name, lo, hi, lsb, neg)


def _register(m: Module, n: Net, stage: int) -> Net:
    name = m.fresh("r")
    m.reg(stage, name, n.width, n.name)
    return Net(name, n.lo, n.hi, n.lsb, n.neg)


def _po2_leaf(m: Module, layer: Layer, x: Net, w: int, truncated: dict[tuple[str, int], Net]) -> Net | None:
    """x * 2^e as hls4ml's weight_exponential computes it: a wire shift (floor when bits drop)."""
    _po2_range(layer, w)  # refuses a product that would wrap in r_T
    s, neg = _po2_shift(layer, w)
    if s >= 0:
        return Net(x.name, x.lo, x.hi, s, neg)
    k = -s
    lo, hi = x.lo >> k, x.hi >> k
    if lo == hi == 0:
        return None  # every bit of x is shifted out: the product is 0
    key = (x.name, k)
    if key not in truncated:
        name = f"{x.name}_f{k}"
        width = signed_width(lo, hi)
        m.wire(name, width, f"{x.name}[{k + width - 1}:{k}]" if width > 1 else f"{x.name}[{k}]")
        truncated[key] = Net(name, lo, hi)
    t = truncated[key]
    return Net(t.name, t.lo, t.hi, 0, neg)


def _rounded_product(m: Module, layer: Layer, terms: list[Net]) -> tuple[Net | None, int]:
    """One product x*w (its shift-add terms, summed combinationally) cast into accum_t's fractional
    bits with accum_t's rounding, as hls4ml's ``(accum_t)(x*w)``; wrap is left to the final cast.
    Returns the product in accum_t units and the adders spent."""
    assert layer.accum_type is not None
    acc = layer.accum_type
    if not terms:
        return None, 0
    adders = len(terms) - 1
    net = reduce_tree(m, terms, _combine)
    src, lo, hi, width = net.name, net.lo, net.hi, net.width
    if net.neg:  # materialise the sign before rounding: round(-v) != -round(v)
        lo, hi = -net.hi, -net.lo
        width = signed_width(lo, hi)
        src = m.fresh("n")
        m.wire(src, width, f"{const(0, width)} - {ext(net.name, net.width, width)}")
        adders += 1
    f_in = product_frac(layer) - net.lsb
    if f_in <= acc.frac:  # this product is already on accum_t's grid
        return Net(src, lo, hi, acc.frac - f_in), adders
    wide = FixedType(62, 62 - acc.frac, True, acc.rounding, "WRAP")
    rlo, rhi = (int(v) for v in cast(np.array([lo, hi]), f_in, wide))
    wq = signed_width(rlo, rhi)
    q = cast_instance(m, m.fresh("pr"), src, width, f_in, FixedType(wq, wq - acc.frac, True, acc.rounding, "WRAP"))
    return Net(q, rlo, rhi), adders + 1


def parallel(layer: Layer, module_name: str, levels_per_stage: int = 2,
             act: FusedActivation | None = None) -> tuple[Module, DenseCost]:
    """Reuse factor 1: constant-coefficient shift-add trees, pipelined; ``act``: an activation
    applied before the output registers (:func:`register_output`)."""
    assert layer.weights is not None
    check_exact(layer, product_rounding=True)
    rounding = needs_product_rounding(layer)
    m = Module(module_name)
    xs = [input_element(m, "in_data", i, layer.in_type, f"x{i}") for i in range(layer.n_in)]
    _mark_unused_inputs(m, layer, xs)
    trees: list[list[Net]] = []
    truncated: dict[tuple[str, int], Net] = {}
    adders = 0
    for j in range(layer.n_out):
        leaves = []
        for i in range(layer.n_in):
            w = int(layer.weights[i, j])
            if layer.product == "po2":
                leaf = _po2_leaf(m, layer, xs[i], w, truncated)
                terms = [leaf] if leaf is not None else []
            else:
                x = xs[i]
                terms = [Net(x.name, x.lo, x.hi, shift, sign < 0) for shift, sign in csd(w)]
            if rounding and terms:
                rounded, spent = _rounded_product(m, layer, terms)
                adders += spent
                terms = [rounded] if rounded is not None else []
            leaves.extend(terms)
        leaves.sort(key=lambda n: (n.lsb, n.neg))
        trees.append(leaves)
    depth = max((int(np.ceil(np.log2(len(t)))) if len(t) > 1 else 0) for t in trees) if trees else 0
    n_tree_stages = -(-depth // levels_per_stage) if depth else 0
    for j, nodes in enumerate(trees):
        level = 0
        while level < depth:
            level += 1
            nxt = []
            for k in range(0, len(nodes) - 1, 2):
                nxt.append(_combine(m, nodes[k], nodes[k + 1]))
                adders += 1
            if len(nodes) % 2:
                nxt.append(nodes[-1])
            nodes = nxt
            if level % levels_per_stage == 0 or level == depth:
                nodes = [_register(m, n, (level - 1) // levels_per_stage) for n in nodes]
        root = nodes[0] if nodes else None
        output_stage(m, layer, j, root, n_tree_stages, f"y{j}", layer.accum_type.frac if rounding else None, act)
    n_stages = n_tree_stages + 1
    m.n_stages = n_stages
    # constant products are shift-add terms (csd) or wire shifts (po2): no general multiplier
    return m, DenseCost(latency=n_stages, ii=1, multipliers=0, adders=adders)


def saturation_order_matters(layer: Layer) -> bool:
    """A saturating accum_t that some partial sum can overflow: hls4ml's result depends on the
    order of its additions (input by input), so only a sequential accumulation reproduces it."""
    assert layer.accum_type is not None
    if layer.accum_type.overflow == "WRAP" or layer.product == "po2" or layer.nonzero_weights == 0:
        return False
    lo, hi = _partial_sum_bounds(layer)
    return lo < layer.accum_type.min_code or hi > layer.accum_type.max_code


def needs_sequential(layer: Layer) -> bool:
    """A saturating accum_t whose result depends on hls4ml's order of additions or of product
    roundings: the RF 1 layer is built by :func:`sequential`."""
    assert layer.accum_type is not None
    if layer.accum_type.overflow == "WRAP" or layer.product != "exact" or layer.nonzero_weights == 0:
        return False
    return saturation_order_matters(layer) or needs_product_rounding(layer)


#: Saturating additions per pipeline stage of the sequential architecture.
SEQUENTIAL_ADDS_PER_STAGE = 4


def sequential(layer: Layer, module_name: str, act: FusedActivation | None = None) -> tuple[Module, DenseCost]:
    """Reuse factor 1 with a saturating accum_t that can overflow: hls4ml's exact order.

    Stage 0 computes and registers every product ``(accum_t)(x*w)`` (CSD shift-adds, then
    rtl/fxp_cast with accum_t's rounding *and* overflow). Each neuron's accumulator starts at
    ``(accum_t)bias`` and adds its products input by input, every sum cast back into accum_t
    (saturating as ap_fixed does), SEQUENTIAL_ADDS_PER_STAGE additions per pipeline stage, the
    products not yet added travelling along in registers; the last stage registers
    ``(result_t)acc`` (or ``act`` of it, :func:`register_output`). Zero weights are skipped: adding
    0 never saturates."""
    assert layer.weights is not None and layer.accum_type is not None
    acc_t = layer.accum_type
    m = Module(module_name)
    xs = [input_element(m, "in_data", i, layer.in_type, f"x{i}") for i in range(layer.n_in)]
    _mark_unused_inputs(m, layer, xs)
    aw = acc_t.width + (0 if acc_t.signed else 1)  # an accum code as a signed net
    prod_frac = product_frac(layer)
    adders = 0

    def accum_net(q: str) -> Net:
        """The unsigned bits of an fxp_cast output as a signed net of width aw."""
        name = m.fresh("a")
        m.wire(name, aw, q if acc_t.signed else "{1'b0, " + q + "}")
        return Net(name, acc_t.min_code, acc_t.max_code)

    chains: list[list[Net]] = []
    for j in range(layer.n_out):
        chain = []
        for i in range(layer.n_in):
            w = int(layer.weights[i, j])
            if w == 0:
                continue
            terms = [Net(xs[i].name, xs[i].lo, xs[i].hi, shift, sign < 0) for shift, sign in csd(w)]
            adders += len(terms) - 1
            t = reduce_tree(m, terms, _combine)
            lo, hi = ((-t.hi) << t.lsb, (-t.lo) << t.lsb) if t.neg else (t.lo << t.lsb, t.hi << t.lsb)
            width = max(signed_width(lo, hi), t.width + t.lsb + 1)
            exact = m.fresh("pe")
            m.wire(exact, width, f"{const(0, width)} {'-' if t.neg else '+'} {ext(t.name, t.width, width, t.lsb)}")
            q = cast_instance(m, m.fresh("pa"), exact, width, prod_frac, acc_t)
            chain.append(_register(m, accum_net(q), 0))
        chains.append(chain)
    steps = max((len(c) for c in chains), default=0)
    n_add = -(-steps // SEQUENTIAL_ADDS_PER_STAGE)
    bias = bias_codes(layer)
    for j, chain in enumerate(chains):
        run = m.fresh("b")
        m.wire(run, aw, const(int(bias[j]), aw))
        acc = Net(run, acc_t.min_code, acc_t.max_code)  # an aw-bit net, like every later sum
        pending = list(chain)
        for stage in range(1, n_add + 1):
            for p in pending[:SEQUENTIAL_ADDS_PER_STAGE]:
                total = m.fresh("sq")
                m.wire(total, aw + 1, f"{ext(acc.name, aw, aw + 1)} + {ext(p.name, aw, aw + 1)}")
                acc = accum_net(cast_instance(m, m.fresh("ss"), total, aw + 1, acc_t.frac, acc_t))
                adders += 1
            pending = pending[SEQUENTIAL_ADDS_PER_STAGE:]
            acc = _register(m, acc, stage)
            pending = [_register(m, p, stage) for p in pending]
        y = cast_instance(m, f"res{j}", acc.name, aw, acc_t.frac, layer.out_type)
        register_output(m, layer, j, y, n_add + 1, f"y{j}", act)
    m.n_stages = n_add + 2
    return m, DenseCost(latency=m.n_stages, ii=1, multipliers=0, adders=adders)


def folded(layer: Layer, module_name: str, multipliers: str = "auto",
           act: FusedActivation | None = None) -> tuple[Module, DenseCost, dict]:
    """Reuse factor R > 1: ceil(nonzeros/R) time-multiplexed multipliers, II = R; ``act``: an
    activation applied before the output registers (:func:`register_output`).

    When accum_t keeps fewer fractional bits than x*w, each lane rounds its product into a
    (wrapping) accum_t before the register, as hls4ml's ``mult[i] = (accum_t)(x*w)``; the rounded
    terms then add in any order, since wrapping is modular."""
    assert layer.weights is not None and layer.accum_type is not None
    rounding = needs_product_rounding(layer)
    check_exact(layer, product_rounding=rounding)
    acc_t = layer.accum_type

    def term_range(w: int) -> tuple[int, int]:
        # a rounded product is any accum_t code (the cast wraps); else the exact product's range
        return (acc_t.min_code, acc_t.max_code) if rounding else exact_product_range(layer, w)

    R = layer.reuse_factor
    terms = [(j, i, int(layer.weights[i, j])) for j in range(layer.n_out) for i in range(layer.n_in)
             if layer.weights[i, j] != 0]
    n_lanes = -(-len(terms) // R) if terms else 0
    m = Module(module_name)
    xs = [input_element(m, "x_reg", i, layer.in_type, f"x{i}") for i in range(layer.n_in)]
    _mark_unused_inputs(m, layer, xs)
    x_w = xs[0].width if xs else 1
    tw = max(1, (R - 1).bit_length())
    lanes = []
    for lane in range(n_lanes):
        sched = terms[lane * R:(lane + 1) * R]
        wmax = max(abs(w) for _, _, w in sched)
        w_w = signed_width(-wmax, wmax)
        p_lo = min(min(term_range(w)) for _, _, w in sched)
        p_hi = max(max(term_range(w)) for _, _, w in sched)
        p_w = max(signed_width(p_lo, p_hi), 2)
        mul_w = x_w + w_w
        xcase = " ".join(f"{tw}'d{t}: xs{lane} = {xs[i].name};" for t, (_, i, _) in enumerate(sched))
        m.decls.append(f"reg signed [{x_w - 1}:0] xs{lane};")
        m.decls.append(f"reg signed [{w_w - 1}:0] ws{lane};")
        multiply(m, f"prod{lane}", f"xs{lane}", x_w, f"ws{lane}", w_w, multipliers)
        m.combs.append(f"always @* begin case (t) {xcase} default: xs{lane} = {x_w}'d0; endcase end")
        m.combs.append(rom(f"ws{lane}", w_w, "t", tw, [w for _, _, w in sched]))
        m.decls.append(f"reg signed [{p_w - 1}:0] p{lane};")
        if rounding:
            q = cast_instance(m, f"rp{lane}", f"prod{lane}", mul_w, product_frac(layer), acc_t)
            val = q if acc_t.signed else "{1'b0, " + q + "}"
            m.engine.append(f"p{lane} <= {val};")
        else:
            if p_w < mul_w:
                m.decls.append(f"wire [{mul_w - p_w - 1}:0] unused_prod{lane} = prod{lane}[{mul_w - 1}:{p_w}];")
            m.engine.append(f"p{lane} <= prod{lane}[{p_w - 1}:0];")
        lanes.append((lane, sched, p_w, p_lo, p_hi))
    # accumulators: neuron j collects lane m while p_t is inside j's slice of m's schedule
    for j in range(layer.n_out):
        contrib, lo, hi = [], 0, 0
        for lane, sched, p_w, p_lo, p_hi in lanes:
            ts = [t for t, (jj, _, w) in enumerate(sched) if jj == j]
            if not ts:
                continue
            for t in ts:
                a, b = term_range(sched[t][2])
                lo, hi = lo + min(a, 0), hi + max(b, 0)
            contrib.append((lane, p_w, ts[0], ts[-1]))
        if not contrib:
            output_stage(m, layer, j, None, 0, f"y{j}", act=act)
            continue
        a_w = signed_width(lo, hi)
        terms_expr = []
        for lane, p_w, t0, t1 in contrib:
            cond = f"(p_t >= {tw}'d{t0}) && (p_t <= {tw}'d{t1})" if (t0, t1) != (0, R - 1) else "1'b1"
            if t0 == 0 and t1 < R - 1:
                cond = f"(p_t <= {tw}'d{t1})"
            elif t1 == R - 1 and t0 > 0:
                cond = f"(p_t >= {tw}'d{t0})"
            # p{lane} also carries other neurons' (possibly wider) products; neuron j's own
            # products fit in a_w bits, so its low a_w bits are exact while cond holds
            p_val = f"p{lane}[{a_w - 1}:0]" if p_w > a_w else ext(f"p{lane}", p_w, a_w)
            terms_expr.append(f"(({cond}) ? {p_val} : {a_w}'d0)")
        m.decls.append(f"reg signed [{a_w - 1}:0] acc{j};")
        m.accs.append(f"acc{j} <= (p_first ? {a_w}'d0 : acc{j}) + " + " + ".join(terms_expr) + ";")
        output_stage(m, layer, j, Net(f"acc{j}", lo, hi), 0, f"y{j}", acc_t.frac if rounding else None, act)
    info = {"lanes": n_lanes, "tw": tw, "R": R}
    return m, DenseCost(latency=R + 3, ii=R, multipliers=n_lanes, adders=0), info
