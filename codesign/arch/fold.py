"""Which folded architecture a Dense layer (reuse factor R > 1) is built with: the cost model.

Three architectures, all II = R and bit-exact:

- ``lanes`` (:func:`codesign.arch.dense.folded`): ceil(nonzeros / R) multiplier lanes, each an
  R:1 input multiplexer, a weight ROM and a general multiplier, gated per-neuron accumulators. The
  fallback: it builds every layer the others do not (power-of-two products refuse at RF > 1).
- ``digit_serial`` (:mod:`codesign.arch.digit_serial`): the RF 1 shared adder graph on
  ceil(W / R)-bit input digits plus one serial accumulator per partial sum; exact products without
  per-product rounding and ``rtl.adder_graph`` on (where RF 1 uses the adder graph).
- ``input_serial`` (:mod:`codesign.arch.input_serial`): ceil(n_in / R) inputs per cycle from a
  shift register, that many multipliers per output with their weights in cycle-indexed ROMs.

:func:`choose` estimates the LUTs and flip-flops of every architecture the layer allows
(multipliers counted as LUTs, about ``x_bits * w_bits`` each; with ``rtl.multipliers: dsp`` as DSP
blocks) and keeps the one with the fewest LUTs + FFs, the fabric area (ties: fewer LUTs), among
those that spend at most ceil(nonzeros / R) DSP blocks, the products per cycle the layer needs. By
LUTs alone, qkeras_3layer at RF 16 with DSP multipliers took input-serial in every layer and came
to 11,740 LUT + 6,432 FF (bench_fold, commit 1912569), more than at RF 8; with fc1 digit-serial, as
LUT + FF picks, 10,758 + 5,150, but with 196 DSPs where 118 products per cycle are needed; within
that bound every layer is digit-serial: 10,380 + 5,026, no DSP (commit 5a9a2e8).
``rtl.fold_architecture`` overrides it; an architecture the layer cannot use falls back to
``lanes`` with a logged note that design.json records too (``fold_note``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from codesign.arch import digit_serial, input_serial
from codesign.arch.adder_timing import CLOCK_NS
from codesign.arch.csd import csd
from codesign.arch.dense import exact_product_range, multiplier_cost, needs_product_rounding
from codesign.arch.input_serial import rom_luts
from codesign.arch.netlist import signed_width
from codesign.graph import Layer

log = logging.getLogger(__name__)

ARCHITECTURES = ("lanes", "digit_serial", "input_serial")
#: Values of ``rtl.fold_architecture``.
CHOICES = ("auto",) + ARCHITECTURES
#: ``auto`` plans a digit-serial adder graph only for layers with at most this many nonzero
#: canonical signed digits in their weights: planning runs the graph's common-subexpression search,
#: which grows faster than linearly (a 64x32 layer of 16-bit float weights, ~6,400 digits, took
#: minutes). ``rtl.fold_architecture: digit_serial`` builds it at any size. Since the incremental
#: search (issue 15) that layer plans in ~7 s of CPU at RF 8, but lifting the limit changes auto's
#: choice for the locked KERAS_3layer RF 8 design (tests/test_rtl_lock.py), so it stays.
AUTO_DIGIT_SERIAL_MAX_DIGITS = 2500


@dataclass
class Choice:
    """The architecture picked for one layer, the estimates it was picked by, and why."""

    arch: str
    estimates: dict[str, dict[str, int]]  #: architecture -> {"lut", "ff"} for each one available
    unavailable: dict[str, str]  #: architecture -> reason
    note: str = ""
    plans: dict[str, Any] = field(default_factory=dict)


def lanes_estimate(layer: Layer, multipliers: str = "auto") -> dict[str, int]:
    """Estimated LUTs / FFs / DSPs of :func:`codesign.arch.dense.folded` (multipliers as LUTs unless
    ``multipliers`` is dsp)."""
    assert layer.weights is not None and layer.accum_type is not None
    R = layer.reuse_factor
    rounding = needs_product_rounding(layer)
    acc_t = layer.accum_type
    terms = [(j, i, int(layer.weights[i, j])) for j in range(layer.n_out) for i in range(layer.n_in)
             if layer.weights[i, j] != 0]
    x_w = layer.in_type.width + (0 if layer.in_type.signed else 1)
    lut = ff = dsp = 0
    contrib = [0] * layer.n_out
    lo = [0] * layer.n_out
    hi = [0] * layer.n_out
    for lane in range(-(-len(terms) // R)):
        sched = terms[lane * R:(lane + 1) * R]
        wmax = max(abs(w) for _, _, w in sched)
        w_w = signed_width(-wmax, wmax)
        # R:1 input mux (a LUT6 is a 4:1 mux), weight ROM, multiplier, product register
        lut += x_w * max(1, -(-(len(sched) - 1) // 3)) + rom_luts(w_w, len(sched))
        mult_lut, mult_dsp = multiplier_cost(x_w, w_w, multipliers)
        lut, dsp = lut + mult_lut, dsp + mult_dsp
        ff += x_w + w_w
        for j in sorted({jj for jj, _, _ in sched}):
            contrib[j] += 1
        for j, _, w in sched:
            a, b = (acc_t.min_code, acc_t.max_code) if rounding else exact_product_range(layer, w)
            lo[j], hi[j] = lo[j] + min(a, 0), hi[j] + max(b, 0)
    for j in range(layer.n_out):
        a_w = signed_width(lo[j], hi[j])
        lut += a_w * contrib[j] + acc_t.width // 2  # gated adds into the accumulator, bias and casts
        ff += a_w + layer.out_type.width
    ff += layer.n_in * layer.in_type.width + 8
    return {"lut": lut, "ff": ff, "dsp": dsp} if multipliers == "dsp" else {"lut": lut, "ff": ff}


def _csd_digits(layer: Layer) -> int:
    """Nonzero canonical signed digits of the layer's weights: the adder graph's input terms."""
    assert layer.weights is not None
    return sum(len(csd(int(w))) for w in layer.weights.ravel() if w)


def choose(layer: Layer, choice: str = "auto", *, adder_graph: bool = True, clock_ns: float = CLOCK_NS,
           multipliers: str = "auto") -> Choice:
    """The folded architecture of ``layer`` (reuse factor > 1) for ``rtl.fold_architecture`` = ``choice``;
    ``multipliers`` (``rtl.multipliers``) says whether a general multiplier costs LUTs or a DSP block."""
    if choice not in CHOICES:
        raise ValueError(f"fold architecture {choice!r}; valid: {', '.join(CHOICES)}")
    R = layer.reuse_factor
    why: dict[str, str] = {}
    if layer.product == "po2":
        why["digit_serial"] = why["input_serial"] = "power-of-two products are built by the lanes only"
    else:
        ds = digit_serial.unavailable(layer, adder_graph)
        digits = _csd_digits(layer)
        if not ds and choice == "auto" and digits > AUTO_DIGIT_SERIAL_MAX_DIGITS:
            ds = (f"{digits} nonzero weight digits exceed the {AUTO_DIGIT_SERIAL_MAX_DIGITS} that auto plans "
                  f"a digit-serial graph for (set rtl.fold_architecture: digit_serial to build it)")
        if ds:
            why["digit_serial"] = ds
        ins = input_serial.unavailable(layer)
        if ins:
            why["input_serial"] = ins
    wanted = [a for a in ARCHITECTURES if a not in why and (choice == "auto" or a == choice or a == "lanes")]
    est: dict[str, dict[str, int]] = {}
    plans: dict[str, Any] = {}
    if layer.product == "po2":
        wanted = ["lanes"]
    for a in wanted:
        if a == "lanes":
            est[a] = lanes_estimate(layer, multipliers) if layer.product == "exact" else {"lut": 0, "ff": 0}
        elif a == "digit_serial":
            p = digit_serial.plan(layer, R, clock_ns)
            plans[a], est[a] = p, {"lut": p.lut, "ff": p.ff}
        else:
            q = input_serial.plan(layer, R, multipliers)
            plans[a], est[a] = q, {"lut": q.lut, "ff": q.ff} | ({"dsp": q.dsp} if multipliers == "dsp" else {})
    note = ""
    if choice == "auto":
        arch = min(_within_dsp_bound(layer, est), key=lambda a: (est[a]["lut"] + est[a]["ff"], est[a]["lut"],
                                                                 ARCHITECTURES.index(a)))
    elif choice in why:
        arch = "lanes"
        note = f"rtl.fold_architecture {choice} is not available for layer {layer.name}: {why[choice]}; built with lanes"
        log.warning(note)
    else:
        arch = choice
    return Choice(arch, est, why, note, plans)


def _within_dsp_bound(layer: Layer, est: dict[str, dict[str, int]]) -> list[str]:
    """The candidates that spend no more DSP blocks than ceil(nonzeros / R), the products the layer
    needs per cycle (all of them when none does). Input-serial multiplies every weight slot, pruned
    or not, so on a sparse layer it would take more DSPs than there are products: qkeras_3layer's
    fc2 at RF 16 128 against 71."""
    bound = -(-layer.nonzero_weights // layer.reuse_factor)
    within = [a for a in est if est[a].get("dsp", 0) <= bound]
    return within or list(est)
