"""Pipeline registers of an adder graph, placed by the clock's delay budget (not by adder levels).

With the delay model of :mod:`codesign.arch.adder_timing`, the stage count is that of the
as-soon-as-possible placement (an adder that would overrun the budget starts a new stage with
registered operands); the adders are then placed either as soon or as late as possible,
whichever needs fewer pipeline register bits (:func:`schedule`). Signals consumed in later stages
travel through register chains, and all outputs leave through the output register of the same
final stage, after the constant (bias and offsets) add and the accum/result casts
(:func:`output_delay`; emitted by :mod:`codesign.arch.adder_emit`). So every output of the layer
has the same latency.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from codesign.arch.adder_build import AdderGraph, Term
from codesign.arch.adder_timing import ACTIVATION_NS, CLOCK_NS, FF_OVERHEAD_NS, INPUT_ARRIVAL_NS, adder_delay
from codesign.graph import Layer


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


def output_delay(layer: Layer, root: Term | None, g: AdderGraph, fused: bool = False) -> float:
    """Bias add (and a rounding/saturating result cast) after the tree root, and a fused activation's
    ``ACTIVATION_NS`` when ``fused``."""
    assert layer.accum_type is not None
    if root is None:
        return 0.0
    acc, out = layer.accum_type, layer.out_type
    d = adder_delay(acc.width)
    if (out.frac < acc.frac and out.rounding != "TRN") or (out.overflow != "WRAP" and out.integer < acc.integer):
        d += adder_delay(out.width)
    return d + (ACTIVATION_NS if fused else 0.0)

