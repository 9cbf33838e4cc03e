"""Lowering an adder graph to hardware: every signal's unsigned code, width and polarity, the LUT estimate.

Measured with Yosys ``synth_xilinx``: a carry-chain adder costs one LUT per bit where both
operands have variable bits, plus an inverter per bit where the propagate signal is a complemented
variable bit; a bit with one constant-0 operand is free. So signals are carried *unsigned* (offset
binary, ``H = pol * v + off >= 0``): a narrow term added to a wide sum costs only its own bits,
where two's complement pays a LUT for every sign-extension bit of it. Signed inputs get their sign
bit flipped (``off = 2^(w-1)``); a subtraction adds the complement (``pol`` picks, per node, the
cheaper polarity: :func:`lower`, then :func:`refine`); the offsets of all terms are added once per
output together with the bias, in the one constant adder the output needs anyway
(:func:`out_const`, :func:`const_add_forms`). The Verilog is written so that Yosys keeps these
adders as they are (see :func:`codesign.arch.adder_emit.emit_node`). :func:`hw_evaluate` computes
the codes as the Verilog does.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from codesign.arch.adder_build import AdderGraph
from codesign.arch.netlist import signed_width


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
    node_costs: tuple[int, ...] = ()  #: each node's share of ``cost`` (its adder and output constant)


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


def out_const(h: HwSignal, neg: bool, bias: int, k: int) -> tuple[int, bool]:
    """``(K, inv)`` with ``bias ± (v << k) = K + (H' << k)``, ``H' = ~H`` when ``inv`` (v = pol * (H - off))."""
    if (-h.pol if neg else h.pol) > 0:
        return bias - (h.off << k), False
    return bias + (h.off << k) - (((1 << h.width) - 1) << k), True  # -H = ~H - (2^width - 1)


def const_add_forms(c: int, width: int, inv: bool) -> tuple[int, int]:
    """Inverters of ``c + H'`` (``width``-bit H', ``H' = ~H`` when ``inv``) written ``c + H'`` and
    ``(c - 1) - {1..1, ~H'}``: a carry-chain bit whose propagate signal is ``~h`` (H's bit against a
    constant 1, or H's complement against a constant 0) needs an inverter (see adder_emit._output).
    ``c + ~H`` is not offered: Yosys may take ``~H`` for the generate inputs, one more inverter per
    bit."""
    win = (1 << width) - 1
    if inv:
        return width + 1, width - bin((c - 1) & win).count("1")
    return bin(c & win).count("1"), bin((c - 1) & win).count("1")


def _out_cost(h: HwSignal, neg: bool, bias: int, k: int) -> int:
    """Inverters of the output's constant adder (:func:`codesign.arch.adder_emit._output`)."""
    kc, inv = out_const(h, neg, bias, k)
    if kc >> k == 0 and not inv:
        return 0
    return min(const_add_forms(kc >> k, h.width, inv))


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
    roots = _roots(g, out_consts)
    nodes: list[HwNode] = []
    costs: list[int] = []
    for k in range(len(g.nodes)):
        cost, h, hn = _lower_node(g, k, sigs, (1, -1) if pols is None else (pols[k],), roots)
        costs.append(cost)
        sigs.append(h)
        nodes.append(hn)
    return Hardware(tuple(sigs), tuple(nodes), sum(costs), tuple(costs))


def _roots(g: AdderGraph, out_consts: Sequence[tuple[int, int]] | None) -> dict[int, list[tuple[bool, int, int]]]:
    """Signal -> (negated, bias, shift) of every output it is the root of."""
    roots: dict[int, list[tuple[bool, int, int]]] = {}
    for j, t in enumerate(g.outputs):
        if t is not None:
            bias, k = out_consts[j] if out_consts is not None else (0, 0)
            roots.setdefault(t.sig, []).append((t.neg, bias, k))
    return roots


def _lower_node(g: AdderGraph, k: int, sigs: Sequence[HwSignal], polarities: Sequence[int],
                roots: dict[int, list[tuple[bool, int, int]]]) -> tuple[int, HwSignal, HwNode]:
    """Node k's cheapest representation among ``polarities``, given its operands' (``sigs``)."""
    n = g.nodes[k]
    best: tuple[int, HwSignal, HwNode] | None = None
    for p in polarities:
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
            best = (cost, h, HwNode(inv_a, inv_b, cin))
    assert best is not None
    return best


def _consumers(g: AdderGraph) -> list[list[int]]:
    """Signal -> the nodes that read it (in increasing order)."""
    cons: list[list[int]] = [[] for _ in range(g.n_in + len(g.nodes))]
    for j, n in enumerate(g.nodes):
        cons[n.a].append(j)
        if n.b != n.a:
            cons[n.b].append(j)
    return cons


def _relower(g: AdderGraph, hw: Hardware, pols: Sequence[int], k: int,
             roots: dict[int, list[tuple[bool, int, int]]], consumers: list[list[int]] | None = None) -> Hardware:
    """:func:`lower` with fixed ``pols`` that differ from ``hw``'s only at node k: nodes before k
    keep their representation, and a later node is recomputed only when an operand's changed (the
    result is :func:`lower`'s, node for node). The nodes to recompute are found through their
    operands' ``consumers`` and taken in increasing order, so only the changed cone is visited."""
    if consumers is None:
        consumers = _consumers(g)
    sigs, nodes, costs = list(hw.signals), list(hw.nodes), list(hw.node_costs)
    todo, queued = [k], {k}
    while todo:
        j = heapq.heappop(todo)
        cost, h, hn = _lower_node(g, j, sigs, (pols[j],), roots)
        if h != sigs[g.n_in + j]:
            for c in consumers[g.n_in + j]:
                if c not in queued:
                    queued.add(c)
                    heapq.heappush(todo, c)
        sigs[g.n_in + j], nodes[j], costs[j] = h, hn, cost
    return Hardware(tuple(sigs), tuple(nodes), sum(costs), tuple(costs))


def refine(g: AdderGraph, hw: Hardware, out_consts: Sequence[tuple[int, int]] | None = None,
           passes: int = 1) -> Hardware:
    """Improve :func:`lower`'s greedy polarities by local search: flip one node's polarity at a time
    (its consumers then see the other complement) and keep the flip when the total estimate drops."""
    pols = [s.pol for s in hw.signals[g.n_in:]]
    roots = {t.sig for t in g.outputs if t is not None}
    root_consts = _roots(g, out_consts)
    consumers = _consumers(g)
    if len(hw.node_costs) != len(g.nodes):  # a Hardware built elsewhere: lower it once with its polarities
        hw = lower(g, out_consts, pols)
    for _ in range(passes):
        improved = False
        # a flip can only help where a complement is used now: in the node, by a consumer, at an output
        seen = {n.a for n, hn in zip(g.nodes, hw.nodes) if hn.inv_a} | {n.b for n, hn in zip(g.nodes, hw.nodes) if hn.inv_b}
        for k in range(len(pols)):
            if not (hw.nodes[k].inv_a or hw.nodes[k].inv_b or g.n_in + k in seen or g.n_in + k in roots):
                continue
            pols[k] = -pols[k]
            trial = _relower(g, hw, pols, k, root_consts, consumers)
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

