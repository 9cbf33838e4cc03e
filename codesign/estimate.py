"""The fast resource estimate of ``codesign search``: from design.json, calibrated against Yosys.

A trial of a search runs the flow up to the rtl stage only; what it costs in LUTs, flip-flops and
DSPs comes from what the RTL generator recorded in design.json while it built the netlist
(:func:`raw`): per layer

- folded (RF > 1) Dense/conv layers: the LUT and FF estimate of the architecture
  :func:`codesign.arch.fold.choose` picked (``fold_estimates[fold_architecture]``; its model counts
  multipliers as LUTs, which the calibration absorbs where Yosys puts them into DSP blocks),
- parallel (RF 1) layers: adders x accumulator width (LUTs; a carry-chain adder is about one LUT
  per bit, :mod:`codesign.arch.adder_lower`) and pipeline registers x outputs x width (FFs; the
  output register at the width of an activation fused into it),
- element-wise layers (ReLU, casts): one LUT per output bit,
- general multipliers (``multipliers``): the DSP count.

:func:`calibrate` fits the estimate to Yosys on the trials that were synthesized: one least-squares
scale per resource (y = s * x, through the origin: a design with nothing in it costs nothing), and
for LUTs, once enough trials were synthesized, one non-negative weight per LUT feature (the folded
layers' cost model, the parallel layers' adders x widths, the element-wise and output-cast bits:
:func:`fit_model`);
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


#: LUT features (see :func:`raw`): the folded layers' cost-model LUTs, the parallel layers' adders x
#: widths, the element-wise layers' and parallel layers' output bits (casts, ReLUs, their registers'
#: inputs). The third had no weight of its own before: on the 21 synthesized trials of a 40-trial
#: bench_search its own weight took the leave-one-out median LUT error from 10.3 % to 6.0 %.
LUT_FEATURES = ("folded_cost_model", "parallel_adders_x_width", "elementwise_output_bits")
#: points needed before the LUT fit weighs each feature (non-negative least squares) instead of one scale
MULTI_MIN_POINTS = 6


def raw(design: Mapping[str, Any]) -> dict[str, Any]:
    """Uncalibrated LUT/FF/DSP of a generated core, from its design.json, and the LUT features."""
    folded = parallel = elem = ff = dsp = 0.0
    # a layer's output register holds the type of an activation fused into it (rtl.fuse_activations)
    fused_w = {str(lay["fused_into"]): int(lay["out_type"]["width"])
               for lay in design.get("layers", []) if lay.get("fused_into")}
    for layer in design.get("layers", []):
        out_w = int((layer.get("out_type") or {}).get("width") or 0)
        acc_w = int((layer.get("accum_type") or {}).get("width") or out_w)
        n_out = int(layer.get("n_out") or 0)
        dsp += int(layer.get("multipliers") or 0)
        arch = layer.get("fold_architecture")
        est = (layer.get("fold_estimates") or {}).get(arch) if arch else None
        if est:
            folded += float(est["lut"])
            ff += float(est["ff"])
        elif layer.get("adders") is not None:
            stages = int(layer.get("pipeline_stages") or 0)
            parallel += int(layer["adders"]) * acc_w
            elem += n_out * out_w
            ff += (max(stages, 1) - 1) * n_out * acc_w + n_out * fused_w.get(str(layer.get("name")), acc_w)
        else:
            elem += n_out * out_w
            ff += int(layer.get("latency") or 0) * n_out * out_w
    return {"LUT": folded + parallel + elem, "FF": ff, "DSP": dsp, "features": [folded, parallel, elem]}


def _nnls(rows: Sequence[Sequence[float]], ys: Sequence[float]) -> list[float]:
    import numpy as np
    from scipy.optimize import nnls

    w, _ = nnls(np.asarray(rows, dtype=float), np.asarray(ys, dtype=float))
    return [float(x) for x in w]


def fit_model(points: Sequence[Mapping[str, Any]], resource: str) -> list[float] | None:
    """Weights of the calibrated estimate of ``resource`` fitted on ``points`` (None: nothing to fit).

    LUT with at least :data:`MULTI_MIN_POINTS` points: one non-negative weight per LUT feature
    (least squares), as the folded cost model and the parallel adders x widths proxy are off from
    Yosys by different factors; fewer points, and FF and DSP: one scale of the raw figure ([s]).
    """
    usable = [p for p in points if p["yosys"].get(resource) is not None and p["raw"].get(resource) is not None]
    if resource == "LUT" and len(usable) >= MULTI_MIN_POINTS and all("features" in p["raw"] for p in usable):
        return _nnls([p["raw"]["features"] for p in usable], [float(p["yosys"]["LUT"]) for p in usable])
    sc = fit([(float(p["raw"][resource]), float(p["yosys"][resource])) for p in usable])
    return None if sc is None else [sc]


def predict(raw_est: Mapping[str, Any], resource: str, weights: Sequence[float] | None) -> float:
    """The calibrated figure (the raw one while uncalibrated): one weight scales the raw figure,
    several weigh the features."""
    if weights is None:
        return float(raw_est[resource])
    if len(weights) == 1:
        return float(raw_est[resource]) * weights[0]
    return float(sum(w * f for w, f in zip(weights, raw_est["features"])))


def fit(pairs: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares scale s minimising sum (y - s x)^2; None without a point with x > 0."""
    sxx = sum(x * x for x, _ in pairs)
    if sxx <= 0:
        return None
    return sum(x * y for x, y in pairs) / sxx


def calibrate(points: Sequence[Mapping[str, Any]]) -> dict[str, list[float] | None]:
    """Per resource the weights fitted on ``points`` (each with ``raw`` and the Yosys figures)."""
    return {r: fit_model(points, r) for r in RESOURCES}


def apply(raw_est: Mapping[str, Any], model: Mapping[str, Sequence[float] | None]) -> dict[str, float]:
    """Calibrated estimate of every resource."""
    return {r: predict(raw_est, r, model.get(r)) for r in RESOURCES}


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
            w = fit_model([q for j, q in enumerate(usable) if j != i], r)
            y = float(p["yosys"][r])
            if w is None or y == 0:
                continue
            est = predict(p["raw"], r, w)
            rows.append({"trial": p.get("trial"), "estimate": round(est, 1), "yosys": y,
                         "rel_error": abs(est - y) / y})
        errs = [x["rel_error"] for x in rows]
        out[r] = {"n": len(rows), "median": statistics.median(errs) if errs else None,
                  "max": max(errs) if errs else None, "points": rows}
    return out
