"""Max / average pooling (hls4ml ``pooling1d_cl`` / ``pooling2d_cl``) as one registered stage.

Every output (pixel, channel) reads its window straight from the flat channel-last input bus:

- **max**: a balanced tree of signed comparators (``a > b ? a : b``, the maximum whatever the
  order, so hls4ml's left-to-right scan gives the same value); padded taps are hls4ml's
  ``pad_val`` constant. The maximum is then converted to accum_t and to result_t, as
  ``res = (res_T)(accum_t)max``.
- **avg**: the exact window sum, converted to accum_t once, then divided by the tap count with
  truncation toward zero (ap_fixed's ``/=`` by an integer: :func:`divide_toward_zero`, a biased
  arithmetic shift for a power of two, a multiply by a rounded-up reciprocal otherwise); then
  result_t. One conversion equals hls4ml's add-then-convert per tap when accum_t keeps every
  fractional bit of the input and either wraps (modular) or saturates a sum of non-negative inputs
  (monotone); other accum types are refused by name.

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


def divide_toward_zero(m: Module, src: str, width: int, n: int, tag: str) -> tuple[str, int]:
    """``src`` (signed, ``width`` bits) divided by the constant ``n`` >= 1, truncated toward zero:
    the net's name and width. A power of two is an arithmetic shift of the value biased by
    n - 1 when negative; any other n divides the magnitude as floor(x * M / 2^s) with
    s = width + ceil(log2 n) and M = floor(2^s / n) + 1, exact for every x < 2^width
    (Granlund and Montgomery, "Division by invariant integers using multiplication", 1994), then
    restores the sign."""
    if n == 1:
        return src, width
    if n & (n - 1) == 0:
        k = n.bit_length() - 1
        b = f"b{tag}"
        m.wire(b, width + 1, f"{ext(src, width, width + 1)} + ({src}[{width - 1}] ? {const(n - 1, width + 1)} "
                             f": {const(0, width + 1)})")
        q = f"q{tag}"
        m.wire(q, width + 1 - k, f"{b}[{width}:{k}]")
        m.decls.append(f"wire unused_{b};")  # the remainder bits: dropped by design
        m.assigns.append(f"assign unused_{b} = ^{b}[{k - 1}:0];")
        return q, width + 1 - k
    shift = width + (n - 1).bit_length()
    mult = (1 << shift) // n + 1
    pw = width + mult.bit_length()
    mag, prod, qm, q = f"mag{tag}", f"pm{tag}", f"qm{tag}", f"q{tag}"
    m.wire(mag, width, f"{src}[{width - 1}] ? (~{src} + {width}'d1) : {src}")  # |src| < 2^width, unsigned
    m.wire(prod, pw, f"{{{{{pw - width}{{1'b0}}}}, {mag}}} * {pw}'d{mult}")
    qw = pw - shift
    m.wire(qm, qw, f"{prod}[{pw - 1}:{shift}]")
    m.decls.append(f"wire unused_{prod};")  # the fraction of the scaled quotient: dropped by design
    m.assigns.append(f"assign unused_{prod} = ^{prod}[{shift - 1}:0];")
    m.wire(q, qw + 1, f"{src}[{width - 1}] ? (~{{1'b0, {qm}}} + {qw + 1}'d1) : {{1'b0, {qm}}}")
    return q, qw + 1


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
                wa = acc_t.width + 1  # signed view of the accum code
                a_s = f"a{j}"
                m.wire(a_s, wa, ("{" + f"{acc}[{acc_t.width - 1}], {acc}" + "}") if acc_t.signed else "{1'b0, " + acc + "}")
                q, wa = divide_toward_zero(m, a_s, wa, count, str(j))
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
        if layer.pool_op == "avg":
            src, width = divide_toward_zero(m, src, width, n, str(ch))
        y = cast_instance(m, f"res{ch}", src, width, acc_t.frac, layer.out_type)
        m.decls.append(f"reg [{layer.out_type.width - 1}:0] y{ch};")
        m.stages[0].append(f"y{ch} <= {y};")
    m.n_stages = 1
    return m, DenseCost(latency=1, ii=1, multipliers=0, adders=ops)
