"""Max / average pooling (hls4ml ``pooling1d_cl`` / ``pooling2d_cl``) as one registered stage.

Every output (pixel, channel) reads its window straight from the flat channel-last input bus:

- **max**: a balanced tree of signed comparators (``a > b ? a : b``, the maximum whatever the
  order, so hls4ml's left-to-right scan gives the same value); padded taps are hls4ml's
  ``pad_val`` constant. The maximum is then converted to accum_t and to result_t, as
  ``res = (res_T)(accum_t)max``.
- **avg**: the exact window sum, converted to accum_t once, then divided by the tap count with
  truncation toward zero (ap_fixed's ``/=`` by an integer) as an arithmetic shift; then result_t.
  One conversion equals hls4ml's add-then-convert per tap when accum_t keeps every fractional bit
  of the input and either wraps (modular) or saturates a sum of non-negative inputs (monotone);
  other accum types, and tap counts that are not powers of two, are refused by name.

Latency 1, II 1: the comparator/adder tree is a few LUT levels, registered at the output.
"""

from __future__ import annotations

from codesign.errors import RtlGenError
from codesign.fixedpoint import FixedType, max_pool_pad_code
from codesign.graph import Layer
from codesign.arch.dense import DenseCost
from codesign.arch.netlist import Module, Net, cast_instance, const, ext, input_element, reduce_tree, signed_width


def check(layer: Layer) -> None:
    """Refuse, naming the layer, what one registered stage cannot reproduce bit-exactly."""
    g, acc_t, in_t = layer.geometry, layer.accum_type, layer.in_type
    assert g is not None and acc_t is not None
    if layer.pool_op == "max":
        return
    if layer.pool_op != "avg":
        raise RtlGenError(f"layer {layer.name}: pooling operation {layer.pool_op!r}; valid: max, avg")
    counts = {len(t) if g.count_pad else int((t >= 0).sum()) for t in g.windows()}
    bad = sorted(c for c in counts if c & (c - 1))
    if bad:
        raise RtlGenError(f"layer {layer.name}: average pooling over {bad[0]} taps; the RTL divides by powers of "
                          f"two only (window {g.k_h}x{g.k_w}, padding counted: {g.count_pad})")
    if acc_t.frac < in_t.frac:
        raise RtlGenError(f"layer {layer.name}: accum type {acc_t} keeps {acc_t.frac} fractional bits but the "
                          f"input {in_t} has {in_t.frac}: hls4ml rounds after every add",
                          hint="give the pooling layer an accum precision with at least the input's fractional bits")
    n = g.k_h * g.k_w
    lo, hi = n * min(in_t.min_code, 0), n * max(in_t.max_code, 0)
    sh = acc_t.frac - in_t.frac
    fits = (lo << sh) >= acc_t.min_code and (hi << sh) <= acc_t.max_code
    if not fits and acc_t.overflow != "WRAP" and in_t.min_code < 0:
        raise RtlGenError(f"layer {layer.name}: the window sum of signed inputs can overflow the saturating accum "
                          f"type {acc_t}; hls4ml saturates after every add, in order",
                          hint="widen the pooling layer's accum precision")


def _max(m: Module, a: Net, b: Net) -> Net:
    w = max(a.width, b.width)
    name = m.fresh("mx")
    m.wire(name, w, f"({ext(a.name, a.width, w)} > {ext(b.name, b.width, w)}) ? "
                    f"{ext(a.name, a.width, w)} : {ext(b.name, b.width, w)}")
    return Net(name, min(a.lo, b.lo), max(a.hi, b.hi))


def _sum(m: Module, a: Net, b: Net) -> Net:
    lo, hi = a.lo + b.lo, a.hi + b.hi
    w = signed_width(lo, hi)
    name = m.fresh("sm")
    m.wire(name, w, f"{ext(a.name, a.width, w)} + {ext(b.name, b.width, w)}")
    return Net(name, lo, hi)


def build(layer: Layer, module_name: str) -> tuple[Module, DenseCost]:
    check(layer)
    g, acc_t, in_t = layer.geometry, layer.accum_type, layer.in_type
    assert g is not None and acc_t is not None
    m = Module(module_name)
    c = g.n_chan
    xs = [input_element(m, "in_data", i, in_t, f"x{i}") for i in range(layer.n_in)]
    used = set()
    pad: Net | None = None
    if layer.pool_op == "max" and (g.windows() < 0).any():
        code = max_pool_pad_code(layer.in_type)
        w = signed_width(code, code)
        m.wire("pad", w, const(code, w))
        pad = Net("pad", code, code)
    comparators = 0
    for p, taps in enumerate(g.windows()):
        for ch in range(c):
            j = p * c + ch
            inside = [xs[t * c + ch] for t in taps if t >= 0]
            used.update(t * c + ch for t in taps if t >= 0)
            if layer.pool_op == "max":
                nets = inside + ([pad] if pad is not None and len(inside) < len(taps) else [])
                root = reduce_tree(m, nets, _max)
                comparators += len(nets) - 1
                src = cast_instance(m, f"acc{j}", root.name, root.width, in_t.frac, acc_t)
            else:
                root = reduce_tree(m, inside, _sum)
                comparators += len(inside) - 1
                count = len(taps) if g.count_pad else len(inside)
                acc = cast_instance(m, f"acc{j}", root.name, root.width, in_t.frac, acc_t)
                k = count.bit_length() - 1
                wa = acc_t.width + 1  # signed view of the accum code
                a_s = f"a{j}"
                m.wire(a_s, wa, ("{" + f"{acc}[{acc_t.width - 1}], {acc}" + "}") if acc_t.signed else "{1'b0, " + acc + "}")
                if k == 0:
                    q = a_s
                else:  # truncate toward zero: bias negative values by 2^k - 1 before the arithmetic shift
                    q = f"q{j}"
                    m.wire(f"b{j}", wa + 1, f"{ext(a_s, wa, wa + 1)} + ({a_s}[{wa - 1}] ? {const((1 << k) - 1, wa + 1)} : "
                                            f"{const(0, wa + 1)})")
                    m.wire(q, wa + 1 - k, f"b{j}[{wa}:{k}]")
                    m.decls.append(f"wire unused_b{j};")  # the remainder bits: dropped by design
                    m.assigns.append(f"assign unused_b{j} = ^b{j}[{k - 1}:0];")
                    wa = wa + 1 - k
                src = cast_instance(m, f"div{j}", q, wa, acc_t.frac, acc_t)
            y = cast_instance(m, f"res{j}", src, acc_t.width, acc_t.frac, layer.out_type, acc_t.signed)
            m.stages_extend(0)
            m.decls.append(f"reg [{layer.out_type.width - 1}:0] y{j};")
            m.stages[0].append(f"y{j} <= {y};")
    for i, x in enumerate(xs):
        if i not in used:
            m.decls.append(f"wire unused_{x.name};")
            m.assigns.append(f"assign unused_{x.name} = ^{x.name};")
    m.n_stages = 1
    return m, DenseCost(latency=1, ii=1, multipliers=0, adders=comparators)


def _accum_net(m: Module, code: str, acc_t: FixedType, name: str) -> Net:
    """An accum_t code as a signed net (an unsigned type gains a 0 sign bit)."""
    if acc_t.signed:
        m.wire(name, acc_t.width, code)
    else:
        m.wire(name, acc_t.width + 1, "{1'b0, " + code + "}")
    return Net(name, acc_t.min_code, acc_t.max_code)


def build_stream(layer: Layer, module_name: str) -> tuple[Module, DenseCost]:
    """io_stream pooling of one window (``k_h*k_w`` taps x C channels in im2col order) to C outputs,
    as ``pooling2d_buffer_cl`` computes it: every tap converted to accum_t, ``nnet::reduce``'s
    balanced tree (left part the largest power of two below n) with every sum converted back to
    accum_t, an average divided by n truncating toward zero, then result_t. One registered stage."""
    g, acc_t, in_t = layer.geometry, layer.accum_type, layer.in_type
    assert g is not None and acc_t is not None
    n, c = g.k_h * g.k_w, g.n_chan
    if layer.pool_op not in ("max", "avg"):
        raise RtlGenError(f"layer {layer.name}: pooling operation {layer.pool_op!r}; valid: max, avg")
    if layer.pool_op == "avg" and n & (n - 1):
        raise RtlGenError(f"layer {layer.name}: average pooling over {n} taps; the RTL divides by powers of two only "
                          f"(window {g.k_h}x{g.k_w})")
    m = Module(module_name)
    ops = 0

    def combine(a: Net, b: Net) -> Net:
        if layer.pool_op == "max":
            return _max(m, a, b)
        s = _sum(m, a, b)
        return _accum_net(m, cast_instance(m, m.fresh("acc"), s.name, s.width, acc_t.frac, acc_t), acc_t, m.fresh("an"))

    def reduce(nets: list[Net]) -> Net:
        nonlocal ops
        if len(nets) == 1:
            return nets[0]
        k = 1 if len(nets) == 2 else 1 << ((len(nets) - 1).bit_length() - 1)
        ops += 1
        return combine(reduce(nets[:k]), reduce(nets[k:]))

    m.stages_extend(0)
    for ch in range(c):
        taps = []
        for t in range(n):
            x = input_element(m, "in_data", t * c + ch, in_t, f"x{t}_{ch}")
            code = cast_instance(m, f"tap{t}_{ch}", x.name, x.width, in_t.frac, acc_t)
            taps.append(_accum_net(m, code, acc_t, f"a{t}_{ch}"))
        root = reduce(taps)
        src, width = root.name, root.width
        k = n.bit_length() - 1
        if layer.pool_op == "avg" and k > 0:  # truncate toward zero: bias negatives by 2^k - 1, shift
            b = f"b{ch}"
            m.wire(b, width + 1, f"{ext(src, width, width + 1)} + ({src}[{width - 1}] ? {const((1 << k) - 1, width + 1)} "
                                 f": {const(0, width + 1)})")
            src, width = f"q{ch}", width + 1 - k
            m.wire(src, width, f"{b}[{width + k - 1}:{k}]")
            m.decls.append(f"wire unused_{b};")  # the remainder bits: dropped by design
            m.assigns.append(f"assign unused_{b} = ^{b}[{k - 1}:0];")
        y = cast_instance(m, f"res{ch}", src, width, acc_t.frac, layer.out_type)
        m.decls.append(f"reg [{layer.out_type.width - 1}:0] y{ch};")
        m.stages[0].append(f"y{ch} <= {y};")
    m.n_stages = 1
    return m, DenseCost(latency=1, ii=1, multipliers=0, adders=ops)
