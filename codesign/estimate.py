"""The fast resource estimate of ``codesign search``: from design.json, calibrated against Yosys.

A trial of a search runs the flow up to the rtl stage only; what it costs in LUTs, flip-flops and
DSPs comes from what the RTL generator recorded in design.json while it built the netlist
(:func:`raw`): per layer

- folded (RF > 1) Dense/conv layers: the LUT and FF estimate of the architecture
  :func:`codesign.arch.fold.choose` picked (``fold_estimates[fold_architecture]``; its model counts
  multipliers as LUTs, which the calibration absorbs where Yosys puts them into DSP blocks),
- parallel (RF 1) layers: adders x accumulator width (LUTs; a carry-chain adder is about one LUT
  per bit, :mod:`codesign.arch.adder_lower`) and pipeline registers x outputs x width (FFs),
- element-wise layers (ReLU, casts): one LUT per output bit,
- general multipliers (``multipliers``): the DSP count.

:func:`fit` calibrates one least-squares scale per resource (y = s * x, through the origin: a
design with nothing in it costs nothing) on the trials that were synthesized, and
:func:`errors` reports how far the calibrated estimate is from Yosys: each synthesized point
predicted by the scale fitted on the *other* points (leave-one-out), so the figure is a
prediction error and not a fit residual.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

#: Resources the estimate covers (the keys of resources.json it is calibrated against).
RESOURCES = ("LUT", "FF", "DSP")


def raw(design: Mapping[str, Any]) -> dict[str, float]:
    """Uncalibrated LUT/FF/DSP of a generated core, from its design.json."""
    lut = ff = dsp = 0.0
    for layer in design.get("layers", []):
        out_w = int((layer.get("out_type") or {}).get("width") or 0)
        acc_w = int((layer.get("accum_type") or {}).get("width") or out_w)
        n_out = int(layer.get("n_out") or 0)
        mults = int(layer.get("multipliers") or 0)
        dsp += mults
        arch = layer.get("fold_architecture")
        est = (layer.get("fold_estimates") or {}).get(arch) if arch else None
        if est:
            lut += float(est["lut"])
            ff += float(est["ff"])
        elif layer.get("adders") is not None:
            stages = int(layer.get("pipeline_stages") or 0)
            lut += int(layer["adders"]) * acc_w + n_out * out_w
            ff += max(stages, 1) * n_out * acc_w
        else:
            lut += n_out * out_w
            ff += int(layer.get("latency") or 0) * n_out * out_w
    return {"LUT": lut, "FF": ff, "DSP": dsp}


def fit(pairs: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares scale s minimising sum (y - s x)^2; None without a point with x > 0."""
    sxx = sum(x * x for x, _ in pairs)
    if sxx <= 0:
        return None
    return sum(x * y for x, y in pairs) / sxx


def calibrate(points: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    """Per resource the scale fitted on ``points`` (each with ``raw`` and the Yosys figure)."""
    scales: dict[str, float | None] = {}
    for r in RESOURCES:
        pairs = [(float(p["raw"][r]), float(p["yosys"][r])) for p in points
                 if p["yosys"].get(r) is not None and p["raw"].get(r) is not None]
        scales[r] = fit(pairs)
    return scales


def apply(raw_est: Mapping[str, float], scales: Mapping[str, float | None]) -> dict[str, float]:
    """Calibrated estimate; an uncalibrated resource keeps its raw figure."""
    return {r: raw_est[r] * (scales.get(r) if scales.get(r) is not None else 1.0) for r in RESOURCES}  # type: ignore[operator]


def errors(points: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Leave-one-out relative errors of the calibrated estimate against Yosys, per resource.

    Returns {resource: {"n", "median", "max", "points": [{"trial", "estimate", "yosys", "rel_error"}]}};
    a point whose Yosys figure is 0 is left out of the relative error (it has none).
    """
    out: dict[str, Any] = {}
    for r in RESOURCES:
        rows = []
        usable = [p for p in points if p["yosys"].get(r) is not None]
        for i, p in enumerate(usable):
            others = [(float(q["raw"][r]), float(q["yosys"][r])) for j, q in enumerate(usable) if j != i]
            s = fit(others) if others else None
            y = float(p["yosys"][r])
            if s is None or y == 0:
                continue
            est = float(p["raw"][r]) * s
            rows.append({"trial": p.get("trial"), "estimate": round(est, 1), "yosys": y,
                         "rel_error": abs(est - y) / y})
        errs = [x["rel_error"] for x in rows]
        out[r] = {"n": len(rows), "median": statistics.median(errs) if errs else None,
                  "max": max(errs) if errs else None, "points": rows}
    return out
