"""Constant-coefficient Dense layers (reuse factor 1) as one shared adder graph per layer.

``y_j = sum_i w_ij * x_i`` for a constant matrix W is a constant matrix-vector multiplication
(CMVM). Instead of one shift-add tree per neuron (:func:`codesign.arch.dense.parallel`), the
whole matrix becomes one adder graph whose intermediate sums are shared between neurons:

1. **Digits.** Every weight is written in canonical signed digits (non-adjacent form), so column j
   is a list of terms ``±(x_i << k)``.
2. **Common subexpressions** (Hartley's method, as in da4ml, arXiv:2507.04535). A *pattern* is a
   pair of terms in the same column up to a common shift and sign: ``s1 ± (s2 << d)``. The most
   frequent pattern over all columns (``select="count"``; ``"cost"``: the one saving the most
   adder bits, count weighted by the bits its two terms overlap; ties: the shallowest, then the
   lowest key) becomes a new signal, every non-overlapping occurrence is replaced by one term of it, the pair counts are
   updated incrementally, and this repeats while some pattern occurs at least twice. New signals
   take part in later patterns, so sums of sums are shared as well. ``max_depth`` optionally caps
   the adder depth of a shared signal.
3. **Per-output trees.** The terms left in a column are summed in a tree that always combines
   the two earliest-arriving terms (delay-optimal for given arrival times; Huffman-style).

Every adder's width comes from the *exact* value range of its result: each signal is a linear form
``sum c_i x_i`` of independent inputs, so its range is ``sum min/max(c_i*lo_i, c_i*hi_i)``. The
``d`` low bits of ``a + (b << d)`` are a's bits and bypass the adder, which only spans the upper
bits.

**Hardware representation** (:func:`lower`, measured with Yosys ``synth_xilinx``). A carry-chain
adder costs one LUT per bit where both operands have variable bits, plus an inverter per bit where
the propagate signal is a complemented variable bit; a bit with one constant-0 operand is free. So
signals are carried *unsigned* (offset binary, ``H = pol * v + off >= 0``): a narrow term added to
a wide sum costs only its own bits, where two's complement pays a LUT for every sign-extension bit
of it. Signed inputs get their sign bit flipped (``off = 2^(w-1)``); a subtraction adds the
complement (``pol`` picks, per node, the cheaper polarity); the offsets of all terms are added
once per output together with the bias, in the one constant adder the output needs anyway. The
Verilog is written so that Yosys keeps these adders as they are (see :func:`_emit_node`).
:func:`parallel_shared` builds the graph with each of ``SELECT_METHODS`` and keeps the one with
the fewest pipeline stages, then the lowest LUT estimate (:attr:`Hardware.cost`).

Pipelining is by delay budget, not by adder levels. Delay model (UltraScale+, documented
estimates, not timing analysis): an adder whose carry chain spans ``n`` bits takes
``ADDER_BASE_NS + ADDER_PER_BIT_NS * n`` (LUT, carry-in and routing, plus ~0.12 ns per CARRY8);
a stage may use ``clock_ns - FF_OVERHEAD_NS`` (clock-to-out, setup, clock uncertainty); the
layer's inputs arrive ``INPUT_ARRIVAL_NS`` into the first stage (the element-wise ReLU cast in
front of it). The stage count is that of the as-soon-as-possible placement (an adder that would
overrun the budget starts a new stage with registered operands); the adders are then placed
either as soon or as late as possible, whichever needs fewer pipeline register bits. Signals
consumed in later stages travel through register chains, and all outputs leave through the
output register of the same final stage, after the constant (bias and offsets) add of
:func:`_output` and the accum/result casts of :func:`codesign.arch.dense._output_stage` (same
casts, same order). So every output of the layer has the same latency.

To use it in the flow, the dense layer kind (``codesign.layers.dense``) calls
``adder_graph.parallel_shared(layer, module, levels_per_stage)`` instead of ``dense.parallel``.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from codesign.graph import Layer
from codesign.arch.csd import csd
from codesign.arch.dense import (DenseCost, _bias_acc, _output_stage, _product_frac,
                                   check_exact)
from codesign.arch.netlist import Module, cast_instance, const, signed_width

#: CSE pattern selections :func:`parallel_shared` tries; it keeps the graph with the fewest pipeline
#: stages, then the lowest LUT estimate (:attr:`Hardware.cost`). The other scores of ``_SCORES`` gave
#: 1-2% lower estimates on the issue-9 model's layers, but the whole flattened design did not follow:
#: Yosys/ABC then stopped folding the ReLU's output muxes into the next layer's first adders (+450 LUT).
SELECT_METHODS = ("count", "cost")
#: Target clock period (ns) of the delay budget (hls4ml's default 5 ns, 200 MHz).
CLOCK_NS = 5.0
#: Per-stage overhead: flip-flop clock-to-out + setup + clock uncertainty (ns).
FF_OVERHEAD_NS = 0.5
#: Fixed part of an adder's delay: LUT, entry into the carry chain, local routing (ns).
ADDER_BASE_NS = 0.55
#: Carry propagation per bit of an adder's carry chain (CARRY8: ~0.12 ns per 8 bits).
ADDER_PER_BIT_NS = 0.015
#: Arrival of a dense layer's inputs inside the first stage (the combinational ReLU cast before it).
INPUT_ARRIVAL_NS = 0.8


def adder_delay(carry_bits: int) -> float:
    """Estimated delay (ns) of an adder whose carry chain spans ``carry_bits`` bits."""
    return ADDER_BASE_NS + ADDER_PER_BIT_NS * max(carry_bits, 1)


@dataclass(frozen=True)
class Term:
    """``±(signal << shift)``: one summand of an output."""

    sig: int
    shift: int
    neg: bool


@dataclass(frozen=True)
class AddNode:
    """``a + (b << shift)`` (or ``a - (b << shift)`` when ``sub``); a, b are signal ids."""

    a: int
    b: int
    shift: int
    sub: bool
    lo: int  #: exact minimum of the node's value over the input box
    hi: int  #: exact maximum

    @property
    def width(self) -> int:
        return signed_width(self.lo, self.hi)

    @property
    def carry_bits(self) -> int:
        """Bits the carry chain spans: the ``shift`` low bits are a's bits and bypass it."""
        return max(self.width - self.shift, 1)


@dataclass
class AdderGraph:
    """Signals ``0 .. n_in-1`` are the inputs, signal ``n_in + k`` is ``nodes[k]``."""

    n_in: int
    in_lo: tuple[int, ...]
    in_hi: tuple[int, ...]
    nodes: list[AddNode]
    outputs: list[Term | None]  #: one per output; None: the output is 0 (all weights zero)
    shared: int = 0  #: how many nodes are shared subexpressions (the rest are tree adders)

    def range_of(self, sig: int) -> tuple[int, int]:
        if sig < self.n_in:
            return self.in_lo[sig], self.in_hi[sig]
        node = self.nodes[sig - self.n_in]
        return node.lo, node.hi

    def width_of(self, sig: int) -> int:
        return signed_width(*self.range_of(sig))

    @property
    def adders(self) -> int:
        return len(self.nodes)

    @property
    def adder_bits(self) -> int:
        """Sum of carry-chain widths: about the LUTs the adders cost."""
        return sum(n.carry_bits for n in self.nodes)

    def depth(self) -> int:
        """Adder levels on the longest input -> output path."""
        d = [0] * self.n_in
        for n in self.nodes:
            d.append(max(d[n.a], d[n.b]) + 1)
        return max((d[t.sig] for t in self.outputs if t is not None), default=0)

    def signal_values(self, x: np.ndarray) -> list[np.ndarray]:
        """Every signal's value (inputs, then nodes) for input codes ``x`` (N x n_in)."""
        x = np.asarray(x, dtype=np.int64)
        if x.ndim != 2 or x.shape[1] != self.n_in:
            raise ValueError(f"expected N x {self.n_in} inputs, got shape {x.shape}")
        vals = [x[:, i] for i in range(self.n_in)]
        for n in self.nodes:
            b = vals[n.b] << n.shift
            vals.append(vals[n.a] - b if n.sub else vals[n.a] + b)
        return vals

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        """Outputs (N x n_out, int64) for input codes ``x`` (N x n_in), exactly as the hardware adds."""
        vals = self.signal_values(x)
        out = np.zeros((len(vals[0]) if vals else 0, len(self.outputs)), dtype=np.int64)
        for j, t in enumerate(self.outputs):
            if t is not None:
                v = vals[t.sig] << t.shift
                out[:, j] = -v if t.neg else v
        return out


# ----------------------------------------------------------------------------- construction

_Key = tuple[int, int, int, int]  # (s1, s2, d, g): s1 + g * (s2 << d), or (s1 << -d) + g * s2


class _Builder:
    """Mutable state of the CSE search: signals with exact linear forms, columns of terms."""

    def __init__(self, weights: np.ndarray, in_lo: Sequence[int], in_hi: Sequence[int]) -> None:
        self.n_in, self.n_out = weights.shape
        self.in_lo, self.in_hi = tuple(int(v) for v in in_lo), tuple(int(v) for v in in_hi)
        if len(self.in_lo) != self.n_in or len(self.in_hi) != self.n_in:
            raise ValueError(f"{self.n_in} inputs but {len(self.in_lo)} / {len(self.in_hi)} input bounds")
        self.coef: list[dict[int, int]] = [{i: 1} for i in range(self.n_in)]  # sparse linear forms
        self.lo: list[int] = list(self.in_lo)
        self.hi: list[int] = list(self.in_hi)
        self.depth: list[int] = [0] * self.n_in
        self.time: list[float] = [0.0] * self.n_in
        self.nodes: list[AddNode] = []
        # column j: signal -> {shift: sign}
        self.cols: list[dict[int, dict[int, int]]] = [{} for _ in range(self.n_out)]
        self.sig_cols: dict[int, set[int]] = {}
        for j in range(self.n_out):
            for i in range(self.n_in):
                for shift, sign in csd(int(weights[i, j])):
                    self._add_term(j, i, shift, sign)

    # -- signals
    def new_node(self, a: int, b: int, shift: int, sub: bool) -> int:
        g = -1 if sub else 1
        coef = dict(self.coef[a])
        for i, c in self.coef[b].items():
            coef[i] = coef.get(i, 0) + g * (c << shift)
        coef = {i: c for i, c in coef.items() if c}
        lo = sum(min(c * self.in_lo[i], c * self.in_hi[i]) for i, c in coef.items())
        hi = sum(max(c * self.in_lo[i], c * self.in_hi[i]) for i, c in coef.items())
        if max(abs(lo), abs(hi)) >= 1 << 62:
            raise ValueError("adder graph values exceed 62 bits")
        node = AddNode(a, b, shift, sub, lo, hi)
        sig = self.n_in + len(self.nodes)
        self.nodes.append(node)
        self.coef.append(coef)
        self.lo.append(lo)
        self.hi.append(hi)
        self.depth.append(max(self.depth[a], self.depth[b]) + 1)
        self.time.append(max(self.time[a], self.time[b]) + adder_delay(node.carry_bits))
        return sig

    # -- columns
    def _add_term(self, j: int, sig: int, shift: int, sign: int) -> None:
        col = self.cols[j].setdefault(sig, {})
        assert shift not in col, "duplicate term"
        col[shift] = sign
        self.sig_cols.setdefault(sig, set()).add(j)

    def _remove_term(self, j: int, sig: int, shift: int) -> None:
        col = self.cols[j][sig]
        del col[shift]
        if not col:
            del self.cols[j][sig]
            self.sig_cols[sig].discard(j)

    def terms(self, j: int) -> list[tuple[int, int, int]]:
        return [(s, k, g) for s, ks in sorted(self.cols[j].items()) for k, g in sorted(ks.items())]


def _key(t1: tuple[int, int, int], t2: tuple[int, int, int]) -> tuple[_Key, int] | None:
    """The pattern of two terms and the sign of its occurrence (``sign * (pattern << min shift)``)."""
    (s1, k1, g1), (s2, k2, g2) = t1, t2
    if (s1, k1) > (s2, k2):
        (s1, k1, g1), (s2, k2, g2) = (s2, k2, g2), (s1, k1, g1)
    if s1 == s2 and k1 == k2:
        return None
    return (s1, s2, k2 - k1, g1 * g2), g1


def _pattern_node(b: _Builder, key: _Key) -> tuple[int, int]:
    """Create the signal of a pattern; return (signal, sign) so that pattern = sign * signal."""
    s1, s2, d, g = key
    if d >= 0:
        return b.new_node(s1, s2, d, g < 0), 1
    if g > 0:  # (s1 << e) + s2 = s2 + (s1 << e)
        return b.new_node(s2, s1, -d, False), 1
    # (s1 << e) - s2 = -(s2 - (s1 << e)): keep the unshifted operand positive
    return b.new_node(s2, s1, -d, True), -1


def _overlap(b: _Builder, key: _Key) -> int:
    """Bits where the two terms of a pattern overlap: about the LUTs of its adder."""
    s1, s2, d, _ = key
    w1, w2 = (max(abs(b.lo[s]), abs(b.hi[s])).bit_length() for s in (s1, s2))
    lo1, lo2 = (0, d) if d >= 0 else (-d, 0)
    return max(0, min(lo1 + w1, lo2 + w2) - max(lo1, lo2))


#: Pattern scores of the cost-aware selections: (count, overlap bits, shift difference) -> score.
_SCORES = {
    "cost": lambda c, ov, d: (c - 1) * ov - c,  # bits saved: one adder instead of c, each a bit wider
    "cost-overlap": lambda c, ov, d: (c - 1) * ov,
    "cost-count": lambda c, ov, d: c * ov,
    "cost-shift": lambda c, ov, d: 4 * (c - 1) * ov - c * abs(d),  # prefer close digits
}


def _cse(b: _Builder, max_depth: int | None, select: str = "count") -> int:
    """Hartley-style common-subexpression elimination over all columns; returns nodes created.

    ``select``: "count" takes the most frequent pattern; "cost" the one that saves the most adder
    bits, ``(count - 1) * overlap - count`` (one adder of the pattern's overlap instead of
    ``count`` tree adders of about that overlap each, the pattern's terms being a bit wider); the
    other ``_SCORES`` are variants of it.
    """
    if select != "count" and select not in _SCORES:
        raise ValueError(f"select must be 'count' or one of {sorted(_SCORES)}, got {select!r}")
    counts: dict[_Key, int] = {}
    heap: list[tuple[int, int, _Key]] = []
    ov: dict[_Key, int] = {}

    def prio(key: _Key) -> int:
        return max(b.depth[key[0]], b.depth[key[1]])

    def score(key: _Key, c: int) -> int:
        if select == "count":
            return c
        if key not in ov:
            ov[key] = _overlap(b, key)
        return int(_SCORES[select](c, ov[key], key[2]))

    def bump(key: _Key, by: int) -> None:
        c = counts.get(key, 0) + by
        counts[key] = c
        if by > 0 and c >= 2 and (max_depth is None or prio(key) < max_depth) and score(key, c) > 0:
            heapq.heappush(heap, (-score(key, c), prio(key), key))

    for j in range(b.n_out):
        ts = b.terms(j)
        for x in range(len(ts)):
            for y in range(x + 1, len(ts)):
                kk = _key(ts[x], ts[y])
                if kk is not None:
                    bump(kk[0], 1)
    created = 0
    while heap:
        negc, _, key = heapq.heappop(heap)
        c = counts.get(key, 0)
        if c < 2 or score(key, c) <= 0:
            continue
        if score(key, c) != -negc:  # stale (counts only drop between pushes): re-queue with the current score
            heapq.heappush(heap, (-score(key, c), prio(key), key))
            continue
        s1, s2, d, g = key
        sig: int | None = None
        sig_sign = 1
        for j in sorted(b.sig_cols.get(s1, ())):
            if s2 not in b.cols[j]:
                continue
            for k1 in sorted(b.cols[j].get(s1, {})):
                col = b.cols[j]
                k2 = k1 + d
                if s1 not in col or k1 not in col[s1] or s2 not in col or k2 not in col[s2]:
                    continue
                if (s1, k1) == (s2, k2) or col[s1][k1] * col[s2][k2] != g:
                    continue
                g1 = col[s1][k1]
                if sig is None:
                    sig, sig_sign = _pattern_node(b, key)
                    created += 1
                a_t, b_t = (s1, k1, g1), (s2, k2, col[s2][k2])
                b._remove_term(j, s1, k1)
                b._remove_term(j, s2, k2)
                rest = b.terms(j)
                bump(key, -1)
                for u in rest:
                    for t in (a_t, b_t):
                        kk = _key(t, u)
                        if kk is not None:
                            bump(kk[0], -1)
                new_t = (sig, min(k1, k2), g1 * sig_sign)
                b._add_term(j, *new_t)
                for u in rest:
                    kk = _key(new_t, u)
                    if kk is not None:
                        bump(kk[0], 1)
    return created


def _merge(b: _Builder, t1: tuple[int, int, int], t2: tuple[int, int, int]) -> tuple[int, int, int]:
    """One adder summing two terms (signal, shift, sign); returns the sum as a term."""
    (s1, k1, g1), (s2, k2, g2) = t1, t2
    if (k1, s1) > (k2, s2):
        k1, s1, g1, k2, s2, g2 = k2, s2, g2, k1, s1, g1
    if k1 == k2 and g1 < 0 < g2:  # keep the unshifted operand positive
        s1, g1, s2, g2 = s2, g2, s1, g1
    # g1*(s1 << k1) + g2*(s2 << k2) = g1 * ((s1 + g1*g2*(s2 << (k2-k1))) << k1)
    return b.new_node(s1, s2, k2 - k1, g1 * g2 < 0), k1, g1


def _tree(b: _Builder, terms: list[tuple[int, int, int]], order: str = "time") -> Term | None:
    """Sum the terms of one column, always adding the two earliest-arriving ones."""
    if not terms:
        return None

    def prio(s: int, k: int) -> float:
        if order == "time":
            return b.time[s]
        return float((max(abs(b.lo[s]), abs(b.hi[s])) << k).bit_length())

    heap = [(prio(s, k), k, s, n, g) for n, (s, k, g) in enumerate(terms)]
    heapq.heapify(heap)
    tie = len(terms)
    while len(heap) > 1:
        _, k1, s1, _, g1 = heapq.heappop(heap)
        _, k2, s2, _, g2 = heapq.heappop(heap)
        sig, k1, g1 = _merge(b, (s1, k1, g1), (s2, k2, g2))
        heapq.heappush(heap, (prio(sig, k1), k1, sig, tie, g1))
        tie += 1
    _, k, s, _, g = heap[0]
    return Term(s, k, g < 0)


def build(weights: np.ndarray, in_lo: Sequence[int], in_hi: Sequence[int], *, cse: bool = True,
          max_depth: int | None = None, tree: str = "time", select: str = "count") -> AdderGraph:
    """The adder graph of ``y = W^T x`` for integer ``weights`` (n_in x n_out) and input bounds.

    Args:
        weights: integer weight codes, n_in x n_out.
        in_lo, in_hi: bounds of every input code (inclusive).
        cse: share subexpressions across outputs (False: plain CSD trees, for comparison).
        max_depth: shared subexpressions are at most this many adders deep (None: no limit).
    """
    weights = np.asarray(weights)
    if weights.ndim != 2:
        raise ValueError(f"weights must be n_in x n_out, got shape {weights.shape}")
    b = _Builder(weights.astype(np.int64), in_lo, in_hi)
    shared = _cse(b, max_depth, select) if cse else 0
    outputs = [_tree(b, b.terms(j), tree) for j in range(b.n_out)]
    return AdderGraph(b.n_in, b.in_lo, b.in_hi, b.nodes, outputs, shared)


# ----------------------------------------------------------------------------- pipelining

@dataclass(frozen=True)
class Schedule:
    """Stage of every signal (stage s: computed from stage s-1's registers) and of the outputs."""

    stage: tuple[int, ...]
    arrival: tuple[float, ...]  #: ns into its stage at which the signal is ready
    out_stage: int  #: the output registers' stage; latency = out_stage + 1
    kind: str = "asap"

    def last_use(self, g: AdderGraph) -> list[int]:
        """The last stage whose combinational logic reads each signal."""
        last = list(self.stage)
        for k, n in enumerate(g.nodes):
            s = self.stage[g.n_in + k]
            last[n.a] = max(last[n.a], s)
            last[n.b] = max(last[n.b], s)
        for t in g.outputs:
            if t is not None:
                last[t.sig] = max(last[t.sig], self.out_stage)
        return last

    def register_bits(self, g: AdderGraph) -> int:
        """Flip-flops of the pipeline registers between adders (output registers excluded)."""
        last = self.last_use(g)
        return sum(g.width_of(sig) * (last[sig] - self.stage[sig]) for sig in range(len(self.stage)))


def _asap(g: AdderGraph, out_delays: Sequence[float], budget: float, input_arrival: float) -> Schedule:
    stage = [0] * g.n_in
    arr = [input_arrival] * g.n_in
    for n in g.nodes:
        d = adder_delay(n.carry_bits)
        s = max(stage[n.a], stage[n.b])
        t = max(arr[x] if stage[x] == s else 0.0 for x in (n.a, n.b))
        if t + d > budget and t > 0.0:
            s, t = s + 1, 0.0
        stage.append(s)
        arr.append(t + d)
    out_stage = 0
    for t_out, dl in zip(g.outputs, out_delays):
        if t_out is None:
            continue
        s = stage[t_out.sig]
        if arr[t_out.sig] + dl > budget and arr[t_out.sig] > 0.0:
            s += 1
        out_stage = max(out_stage, s)
    return Schedule(tuple(stage), tuple(arr), out_stage, "asap")


def _alap(g: AdderGraph, out_delays: Sequence[float], budget: float, input_arrival: float,
          out_stage: int) -> Schedule | None:
    """Every adder as late as the same output stage allows (None when that is not feasible)."""
    n_sig = g.n_in + len(g.nodes)
    need: list[tuple[int, float]] = [(out_stage + 1, 0.0)] * n_sig  # latest (stage, ready time)
    for t_out, dl in zip(g.outputs, out_delays):
        if t_out is not None:
            need[t_out.sig] = min(need[t_out.sig], (out_stage, budget - dl) if dl <= budget else (out_stage - 1, budget))
    stage = [0] * n_sig
    arr = [input_arrival] * n_sig
    for k in range(len(g.nodes) - 1, -1, -1):
        n, sig = g.nodes[k], g.n_in + k
        d = adder_delay(n.carry_bits)
        s, f = need[sig]
        if s > out_stage:  # unused (cannot happen: every node feeds an output)
            s, f = out_stage, budget
        f = min(f, budget)
        if f - d < 0.0 and d <= budget:
            s, f = s - 1, budget
        if s < 0:
            return None
        stage[sig], arr[sig] = s, f
        for x in (n.a, n.b):
            need[x] = min(need[x], (s, f - d))
    for k, n in enumerate(g.nodes):  # check: operands are ready in time
        sig = g.n_in + k
        start = arr[sig] - adder_delay(n.carry_bits)
        for x in (n.a, n.b):
            if stage[x] > stage[sig] or (stage[x] == stage[sig] and arr[x] > start + 1e-9):
                return None
    return Schedule(tuple(stage), tuple(arr), out_stage, "alap")


def schedule(g: AdderGraph, out_delays: Sequence[float], clock_ns: float = CLOCK_NS,
             input_arrival_ns: float = INPUT_ARRIVAL_NS) -> Schedule:
    """Place pipeline registers by the delay budget (see the module docstring).

    The number of stages is the as-soon-as-possible one; between the as-soon-as-possible and the
    as-late-as-possible placement of the adders (same number of stages) the one with fewer
    pipeline register bits wins: late placement registers the narrow inputs and shared sums
    instead of the wide partial sums of the output trees.
    """
    budget = clock_ns - FF_OVERHEAD_NS
    asap = _asap(g, out_delays, budget, input_arrival_ns)
    alap = _alap(g, out_delays, budget, input_arrival_ns, asap.out_stage)
    if alap is not None and alap.register_bits(g) < asap.register_bits(g):
        return alap
    return asap


def _output_delay(layer: Layer, root: Term | None, g: AdderGraph) -> float:
    """Bias add (and a rounding/saturating result cast) after the tree root."""
    assert layer.accum_type is not None
    if root is None:
        return 0.0
    acc, out = layer.accum_type, layer.out_type
    d = adder_delay(acc.width)
    if (out.frac < acc.frac and out.rounding != "TRN") or (out.overflow != "WRAP" and out.integer < acc.integer):
        d += adder_delay(out.width)
    return d


# ----------------------------------------------------------------------------- hardware representation

@dataclass(frozen=True)
class HwSignal:
    """How a signal is carried in hardware: an unsigned ``width``-bit code ``H = pol * v + off``.

    Signed sums pay a LUT for every sign-extension bit of the narrower operand; unsigned ones do
    not (a carry-chain bit with one constant-0 operand is a plain carry propagate). So every signal
    is carried offset-binary: ``H >= 0``, and the constants ``off`` of all the terms of an output
    are added once, with the bias (a constant operand costs carry cells, no LUTs). ``pol = -1``
    carries the negated value, so a subtraction can be computed as an addition of a complement.
    """

    pol: int
    off: int
    lo: int  #: exact minimum of H (>= 0)
    hi: int  #: exact maximum of H

    @property
    def width(self) -> int:
        return max(1, self.hi.bit_length())


@dataclass(frozen=True)
class HwNode:
    """``H = A + ((B + cin) << shift)``, A = H_a or its complement ``~H_a`` (``inv_a``), B likewise.

    With one operand complemented the adder is written as a subtraction of the other one extended
    with ones, ``X - {1..1, Y} = X + ~Y + 1`` (``cin = 1``): the carry chain then takes its generate
    input from the true operand and the bits only X has pass as they are, so the complement costs
    no inverters (``X + ~Y`` would put ``~Y`` on the generate inputs: one inverter per bit).
    """

    inv_a: bool
    inv_b: bool
    cin: int


@dataclass(frozen=True)
class Hardware:
    signals: tuple[HwSignal, ...]
    nodes: tuple[HwNode, ...]
    cost: int  #: estimated LUTs of the adders (overlapping operand bits plus inverted pass-through bits)


def _complement(h: HwSignal) -> tuple[int, int, int]:
    """(off, lo, hi) of ``~H`` = 2^width - 1 - H, which carries ``-pol * v``."""
    top = (1 << h.width) - 1
    return top - h.off, top - h.hi, top - h.lo


def _node_cost(ua: int, ub: int, d: int, u: int, inv_a: bool, inv_b: bool) -> int:
    """LUTs of ``A + (B << d)`` (u result bits): one per bit where both operands have bits, one per
    inverted bit that passes the adder alone (it needs an inverter in front of the carry chain)."""
    cost = max(0, min(ua, d + ub, u) - d)
    if inv_a:
        cost += min(d, ua) + max(0, min(ua, u) - max(d, d + ub))
    if inv_b:
        cost += max(0, min(d + ub, u) - max(d, ua))
    return cost


def _out_const(h: HwSignal, neg: bool, bias: int, k: int) -> tuple[int, bool]:
    """``(K, inv)`` with ``bias ± (v << k) = K + (H' << k)``, ``H' = ~H`` when ``inv`` (v = pol * (H - off))."""
    if (-h.pol if neg else h.pol) > 0:
        return bias - (h.off << k), False
    return bias + (h.off << k) - (((1 << h.width) - 1) << k), True  # -H = ~H - (2^width - 1)


def _const_add_forms(c: int, width: int, inv: bool) -> tuple[int, int]:
    """Inverters of ``c + H'`` (``width``-bit H', ``H' = ~H`` when ``inv``) written ``c + H'`` and
    ``(c - 1) - {1..1, ~H'}``: a carry-chain bit whose propagate signal is ``~h`` (H's bit against a
    constant 1, or H's complement against a constant 0) needs an inverter (see _output). ``c + ~H``
    is not offered: Yosys may take ``~H`` for the generate inputs, one more inverter per bit."""
    win = (1 << width) - 1
    if inv:
        return width + 1, width - bin((c - 1) & win).count("1")
    return bin(c & win).count("1"), bin((c - 1) & win).count("1")


def _out_cost(h: HwSignal, neg: bool, bias: int, k: int) -> int:
    """Inverters of the output's constant adder (:func:`_output`)."""
    kc, inv = _out_const(h, neg, bias, k)
    if kc >> k == 0 and not inv:
        return 0
    return min(_const_add_forms(kc >> k, h.width, inv))


def lower(g: AdderGraph, out_consts: Sequence[tuple[int, int]] | None = None,
          pols: Sequence[int] | None = None) -> Hardware:
    """Choose every signal's hardware representation (:class:`HwSignal`), greedily per node.

    Inputs: unsigned ones as they are; signed ones with their sign bit flipped (``off = 2^(w-1)``).
    Each node takes the polarity whose adder costs fewer LUTs (:func:`_node_cost`), counting for a
    node that is the root of an output the inverters of its constant adder (:func:`_out_cost`;
    ``out_consts``: per output, the bias in accumulator units and the root's shift k in them).
    ``pols``: the polarity of every node, fixed (no choice).
    """
    sigs: list[HwSignal] = []
    for i in range(g.n_in):
        lo, hi = g.in_lo[i], g.in_hi[i]
        off = 0 if lo >= 0 else 1 << (signed_width(lo, hi) - 1)
        sigs.append(HwSignal(1, off, lo + off, hi + off))
    roots: dict[int, list[tuple[bool, int, int]]] = {}
    for j, t in enumerate(g.outputs):
        if t is not None:
            bias, k = out_consts[j] if out_consts is not None else (0, 0)
            roots.setdefault(t.sig, []).append((t.neg, bias, k))
    nodes: list[HwNode] = []
    total = 0
    for k, n in enumerate(g.nodes):
        best: tuple[float, int, HwSignal, HwNode] | None = None
        for p in (1, -1) if pols is None else (pols[k],):
            a, b = sigs[n.a], sigs[n.b]
            inv_a, inv_b = a.pol != p, b.pol != p * (-1 if n.sub else 1)
            ca = _complement(a)[0] if inv_a else a.off
            cb = _complement(b)[0] if inv_b else b.off
            cin = 1 if inv_a != inv_b and (n.shift == 0 or a.width > n.shift) else 0
            off = ca + ((cb + cin) << n.shift)
            lo, hi = sorted((p * n.lo + off, p * n.hi + off))
            assert lo >= 0, "offset-binary node value below 0"
            h = HwSignal(p, off, lo, hi)
            cost = _node_cost(a.width, b.width, n.shift, h.width, inv_a, inv_b)
            cost += sum(_out_cost(h, neg, bias, kk) for neg, bias, kk in roots.get(g.n_in + k, ()))
            if best is None or cost < best[0]:
                best = (cost, cost, h, HwNode(inv_a, inv_b, cin))
        assert best is not None
        total += best[1]
        sigs.append(best[2])
        nodes.append(best[3])
    return Hardware(tuple(sigs), tuple(nodes), total)


def refine(g: AdderGraph, hw: Hardware, out_consts: Sequence[tuple[int, int]] | None = None,
           passes: int = 1) -> Hardware:
    """Improve :func:`lower`'s greedy polarities by local search: flip one node's polarity at a time
    (its consumers then see the other complement) and keep the flip when the total estimate drops."""
    pols = [s.pol for s in hw.signals[g.n_in:]]
    roots = {t.sig for t in g.outputs if t is not None}
    for _ in range(passes):
        improved = False
        # a flip can only help where a complement is used now: in the node, by a consumer, at an output
        seen = {n.a for n, hn in zip(g.nodes, hw.nodes) if hn.inv_a} | {n.b for n, hn in zip(g.nodes, hw.nodes) if hn.inv_b}
        for k in range(len(pols)):
            if not (hw.nodes[k].inv_a or hw.nodes[k].inv_b or g.n_in + k in seen or g.n_in + k in roots):
                continue
            pols[k] = -pols[k]
            trial = lower(g, out_consts, pols)
            if trial.cost < hw.cost:
                hw, improved = trial, True
            else:
                pols[k] = -pols[k]
        if not improved:
            break
    return hw


def hw_evaluate(g: AdderGraph, hw: Hardware, x: np.ndarray) -> list[np.ndarray]:
    """Every signal's hardware code H for input codes ``x`` (N x n_in), computed as the Verilog does:
    unsigned additions of (complemented) operands, modulo 2^width of the result."""
    x = np.asarray(x, dtype=np.int64)
    vals = [x[:, i] + hw.signals[i].off for i in range(g.n_in)]
    for k, (n, hn) in enumerate(zip(g.nodes, hw.nodes)):
        a_s, b_s, h = hw.signals[n.a], hw.signals[n.b], hw.signals[g.n_in + k]
        a = ((1 << a_s.width) - 1 - vals[n.a]) if hn.inv_a else vals[n.a]
        b = ((1 << b_s.width) - 1 - vals[n.b]) if hn.inv_b else vals[n.b]
        vals.append((a + ((b + hn.cin) << n.shift)) & ((1 << h.width) - 1))
    return vals


# ----------------------------------------------------------------------------- Verilog

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


def _emit_node(m: Module, name: str, d: int, h: HwSignal, a: str, ha: HwSignal, b: str, hb: HwSignal,
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


def _output(m: Module, layer: Layer, j: int, src: str, h: HwSignal, t: Term, stage: int) -> None:
    """``y_j = (result_t)(accum_t)(bias_j ± (v << shift))`` from the root's code H, registered in ``stage``.

    ``v = pol * (H - off)``, so the accumulator value is ``K + (H' << k)`` with a constant K (bias
    and offsets) and ``H' = H`` or ``~H``: one constant adder (carry cells, plus an inverter per bit
    where the propagate signal is an inverted H bit: :func:`_const_add_forms`), then the casts of
    :func:`codesign.arch.dense._output_stage` (same casts, same order).
    """
    assert layer.accum_type is not None
    acc_t = layer.accum_type
    k = t.shift + acc_t.frac - _product_frac(layer)  # root lsb in accum units (>= 0: check_exact)
    bias = int(_bias_acc(layer)[j])
    u = h.width
    kc, inv = _out_const(h, t.neg, bias, k)
    hlo, hhi = ((1 << u) - 1 - h.hi, (1 << u) - 1 - h.lo) if inv else (h.lo, h.hi)
    lo, hi = kc + (hlo << k), kc + (hhi << k)
    w = max(signed_width(lo, hi), k + 1)
    s_name = f"o{j}"
    # acc = ((kc >> k) + H') << k | kc's low k bits: c + H' or (c - 1) - {1..1, ~H'}, whichever puts
    # fewer constant ones against H' bits; H' reaches the adder through an inverter (no $macc merge
    # with the root adder, see _emit_node)
    c, c_lo = kc >> k, kc & ((1 << k) - 1)
    wc = max(w - k, u + 1)
    plain, sub = _const_add_forms(c, u, inv)
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
    m.stages_extend(stage)
    m.decls.append(f"reg [{layer.out_type.width - 1}:0] y{j};")
    m.stages[stage].append(f"y{j} <= {y};")


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


def parallel_shared(layer: Layer, module_name: str, levels_per_stage: int = 2, *, clock_ns: float = CLOCK_NS,
                    max_depth: int | None = None, cse: bool = True) -> tuple[Module, DenseCost]:
    """Reuse factor 1 as a shared adder graph; same contract as :func:`codesign.arch.dense.parallel`.

    ``levels_per_stage`` is accepted for that contract and ignored: registers are placed by the
    delay budget of ``clock_ns`` (module docstring). Render with ``dense_parallel.v.j2``.
    """
    del levels_per_stage
    assert layer.weights is not None and layer.bias is not None and layer.accum_type is not None
    check_exact(layer)
    if layer.product != "exact":
        raise ValueError(f"layer {layer.name}: the adder graph takes exact products only, not {layer.product!r}")
    m = Module(module_name)
    t_in = layer.in_type
    acc_shift = layer.accum_type.frac - _product_frac(layer)
    bias_acc = _bias_acc(layer)
    best: tuple[tuple[int, int], AdderGraph, Hardware, Schedule] | None = None
    for select in SELECT_METHODS if cse else ("count",):
        g = build(layer.weights, [t_in.min_code] * layer.n_in, [t_in.max_code] * layer.n_in, cse=cse,
                  max_depth=max_depth, select=select)
        out_consts = [(int(bias_acc[j]), (t.shift if t is not None else 0) + acc_shift) for j, t in enumerate(g.outputs)]
        hw = lower(g, out_consts)
        sch = schedule(g, [_output_delay(layer, t, g) for t in g.outputs], clock_ns)
        key = (sch.out_stage, hw.cost)  # fewest stages, then fewest LUTs
        if best is None or key < best[0]:
            best = (key, g, hw, sch, out_consts)
    assert best is not None
    _, g, hw, sch, out_consts = best
    hw = refine(g, hw, out_consts)
    used = {x for n in g.nodes for x in (n.a, n.b)} | {t.sig for t in g.outputs if t is not None}
    names = _input_codes(m, layer, hw, used) + [f"n{k}" for k in range(len(g.nodes))]
    last_use = sch.last_use(g)

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
        _emit_node(m, names[sig], n.shift, hw.signals[sig], at(n.a, s), hw.signals[n.a], at(n.b, s),
                   hw.signals[n.b], hn, local)
    for sig in range(g.n_in + len(g.nodes)):
        if sig not in used:
            continue
        for s in range(sch.stage[sig], last_use[sig]):
            m.reg(s, f"{names[sig]}_r{s}", hw.signals[sig].width, at(sig, s))
    for j, t in enumerate(g.outputs):
        if t is None:
            _output_stage(m, layer, j, None, sch.out_stage, f"y{j}")
        else:
            _output(m, layer, j, at(t.sig, sch.out_stage), hw.signals[t.sig], t, sch.out_stage)
    m.n_stages = sch.out_stage + 1
    return m, DenseCost(latency=m.n_stages, ii=1, multipliers=layer.nonzero_weights, adders=len(g.nodes))
