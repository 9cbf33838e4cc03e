"""The delay model of the adder graphs: what an adder, a stage and a layer's inputs cost in time.

UltraScale+, documented estimates, not timing analysis: an adder whose carry chain spans ``n``
bits takes ``ADDER_BASE_NS + ADDER_PER_BIT_NS * n`` (LUT, carry-in and routing, plus ~0.12 ns per
CARRY8); a stage may use ``clock_ns - FF_OVERHEAD_NS`` (clock-to-out, setup, clock uncertainty);
the layer's inputs arrive ``INPUT_ARRIVAL_NS`` into the first stage (the element-wise ReLU cast in
front of it), and an activation fused into a layer's last stage costs ``ACTIVATION_NS``. The graph builder (:mod:`codesign.arch.adder_build`) orders its per-output trees by
these arrival times; the scheduler (:mod:`codesign.arch.adder_schedule`) places the pipeline
registers by them.
"""

from __future__ import annotations

#: Target clock period (ns) of the delay budget (hls4ml's default 5 ns, 200 MHz).
CLOCK_NS = 5.0
#: Per-stage overhead: flip-flop clock-to-out + setup + clock uncertainty (ns).
FF_OVERHEAD_NS = 0.5
#: Fixed part of an adder's delay: LUT, entry into the carry chain, local routing (ns).
ADDER_BASE_NS = 0.55
#: Carry propagation per bit of an adder's carry chain (CARRY8: ~0.12 ns per 8 bits).
ADDER_PER_BIT_NS = 0.015
#: An element-wise ReLU / cast (rounding adder, saturation, zero mux) on a layer's results (ns).
ACTIVATION_NS = 0.8
#: Arrival of a dense layer's inputs inside the first stage (the combinational ReLU cast before it).
#: Kept where the layer before fused that activation into its last stage (its inputs then come
#: straight from registers): the extra slack never removes a stage, so fusing changes no latency.
INPUT_ARRIVAL_NS = ACTIVATION_NS


def adder_delay(carry_bits: int) -> float:
    """Estimated delay (ns) of an adder whose carry chain spans ``carry_bits`` bits."""
    return ADDER_BASE_NS + ADDER_PER_BIT_NS * max(carry_bits, 1)
