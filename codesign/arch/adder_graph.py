"""Constant-coefficient Dense layers (reuse factor 1) as one shared adder graph per layer.

``y_j = sum_i w_ij * x_i`` for a constant matrix W is a constant matrix-vector multiplication
(CMVM). Instead of one shift-add tree per neuron (:func:`codesign.arch.dense.parallel`), the
whole matrix becomes one adder graph whose intermediate sums are shared between neurons.
:func:`parallel_shared`, the entry point, runs these steps, one module each:

1. **Build** (:mod:`codesign.arch.adder_build`): every weight in canonical signed digits, common
   subexpressions shared across all columns (Hartley's method, as in da4ml, arXiv:2507.04535),
   the terms left in a column summed in a tree of the earliest-arriving terms; every adder's width
   from the exact value range of its result.
2. **Lower** (:mod:`codesign.arch.adder_lower`): every signal carried unsigned (offset binary,
   ``H = pol * v + off >= 0``) with the cheaper polarity per node, so a narrow term added to a wide
   sum costs only its own bits; the offsets of all terms are added once per output with the bias.
   :attr:`~codesign.arch.adder_lower.Hardware.cost` estimates the adders' LUTs (measured with
   Yosys ``synth_xilinx``).
3. **Schedule** (:mod:`codesign.arch.adder_schedule`): pipeline registers placed by the delay
   budget of the clock, not by adder levels (delay model: :mod:`codesign.arch.adder_timing`);
   every output of the layer has the same latency.
4. **Emit** (:mod:`codesign.arch.adder_emit`): the Verilog netlist, written so that Yosys keeps
   the adders as they are, the outputs through the bias/offset constant adder and the accum/result
   casts of :func:`codesign.arch.dense.output_stage` (same casts, same order), and a fused
   activation when one is given and fits in the last stage (:func:`parallel_shared`).

:func:`parallel_shared` builds the graph with each of ``SELECT_METHODS`` and keeps the one with
the fewest pipeline stages, then the lowest LUT estimate, and improves its polarities
(:func:`codesign.arch.adder_lower.refine`) before emitting it.

To use it in the flow, the dense layer kind (``codesign.layers.dense``) calls
``adder_graph.parallel_shared(layer, module, levels_per_stage)`` instead of ``dense.parallel``.
"""

from __future__ import annotations

from codesign.arch.adder_build import AdderGraph, build
from codesign.arch.adder_emit import emit
from codesign.arch.adder_lower import Hardware, lower, refine
from codesign.arch.adder_schedule import Schedule, output_delay, schedule
from codesign.arch.adder_timing import CLOCK_NS, INPUT_ARRIVAL_NS
from codesign.arch.dense import DenseCost, bias_codes, product_frac, check_exact
from codesign.arch.netlist import FusedActivation, Module
from codesign.graph import Layer

#: CSE pattern selections :func:`parallel_shared` tries; it keeps the graph with the fewest pipeline
#: stages, then the lowest LUT estimate (:attr:`Hardware.cost`). The other scores of ``adder_build._SCORES`` gave
#: 1-2% lower estimates on the issue-9 model's layers, but the whole flattened design did not follow:
#: Yosys/ABC then stopped folding the ReLU's output muxes into the next layer's first adders (+450 LUT).
SELECT_METHODS = ("count", "cost")


def parallel_shared(layer: Layer, module_name: str, levels_per_stage: int = 2, *, clock_ns: float = CLOCK_NS,
                    max_depth: int | None = None, cse: bool = True, act: FusedActivation | None = None,
                    registered_inputs: bool = False) -> tuple[Module, DenseCost]:
    """Reuse factor 1 as a shared adder graph; same contract as :func:`codesign.arch.dense.parallel`.

    ``levels_per_stage`` is accepted for that contract and ignored: registers are placed by the
    delay budget of ``clock_ns`` (:mod:`codesign.arch.adder_schedule`). Render with ``dense_parallel.v.j2``.

    ``act``, the activation layer after this one, is fused into the last stage when the delay
    model has room for it there without another stage and that saves register bits; otherwise
    the module leaves it out (``Module.fused`` is None) and the activation keeps its own
    combinational module. ``registered_inputs``: the inputs come straight from registers (the layer
    before fused the activation between them), with no ReLU cast in front of the first stage
    (:func:`_fewest_registers`).
    """
    del levels_per_stage
    assert layer.weights is not None and layer.bias is not None and layer.accum_type is not None
    check_exact(layer)
    if layer.product != "exact":
        raise ValueError(f"layer {layer.name}: the adder graph takes exact products only, not {layer.product!r}")
    t_in = layer.in_type
    acc_shift = layer.accum_type.frac - product_frac(layer)
    bias_acc = bias_codes(layer)
    best: tuple[tuple[int, int], AdderGraph, Hardware, Schedule, list[tuple[int, int]]] | None = None
    for select in SELECT_METHODS if cse else ("count",):
        g = build(layer.weights, [t_in.min_code] * layer.n_in, [t_in.max_code] * layer.n_in, cse=cse,
                  max_depth=max_depth, select=select)
        out_consts = [(int(bias_acc[j]), (t.shift if t is not None else 0) + acc_shift) for j, t in enumerate(g.outputs)]
        hw = lower(g, out_consts)
        sch = schedule(g, [output_delay(layer, t, g) for t in g.outputs], clock_ns)
        key = (sch.out_stage, hw.cost)  # fewest stages, then fewest LUTs
        if best is None or key < best[0]:
            best = (key, g, hw, sch, out_consts)
    assert best is not None
    _, g, hw, sch, out_consts = best
    if act is not None or registered_inputs:
        sch, act = _fewest_registers(layer, g, sch, clock_ns, act, 0.0 if registered_inputs else INPUT_ARRIVAL_NS)
    hw = refine(g, hw, out_consts)
    m = emit(layer, module_name, g, hw, sch, act)
    return m, DenseCost(latency=m.n_stages, ii=1, multipliers=0, adders=len(g.nodes))


def _fewest_registers(layer: Layer, g: AdderGraph, sch: Schedule, clock_ns: float, act: FusedActivation | None,
                      input_arrival_ns: float) -> tuple[Schedule, FusedActivation | None]:
    """Of the schedules of ``g`` with as many stages as ``sch`` (made for no activation and inputs
    at INPUT_ARRIVAL_NS), the one with the fewest register bits (pipeline and output registers),
    and the activation it takes: ``act`` in the last stage or none, the inputs at
    ``input_arrival_ns`` or the conservative INPUT_ARRIVAL_NS. An activation in the last stage can
    push adders into earlier stages and their wide sums into pipeline registers, so it is taken
    where its narrower output register saves more than that costs (ties: taken, which also gives
    the next layer registered inputs). A layer's latency never depends on fusing."""
    best: tuple[int, Schedule, FusedActivation | None] | None = None
    options = [(act, input_arrival_ns), (act, INPUT_ARRIVAL_NS), (None, input_arrival_ns), (None, INPUT_ARRIVAL_NS)]
    for rank, (a, arrival) in enumerate(options):
        if rank < 2 and a is None:
            continue
        s = (sch if (a, arrival) == (None, INPUT_ARRIVAL_NS) else
             schedule(g, [output_delay(layer, t, g, fused=a is not None) for t in g.outputs], clock_ns, arrival))
        if s.out_stage != sch.out_stage:
            continue
        bits = s.register_bits(g) + layer.n_out * (a or layer).out_type.width
        if best is None or bits < best[0]:
            best = (bits, s, a)
    assert best is not None
    return best[1], best[2]
