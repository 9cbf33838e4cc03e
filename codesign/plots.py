"""Plots for run reports and sweep reports (matplotlib, Agg backend, PNG files).

Every function takes measured data and a path, writes one PNG and returns the path; none invents
a value. Pareto fronts are computed here (:func:`pareto_front`) so they can be tested without images.
"""

from __future__ import annotations

import base64
import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import NullLocator  # noqa: E402
import numpy as np  # noqa: E402

DPI = 90


@contextlib.contextmanager
def _figure(path: Path, ncols: int = 1, nrows: int = 1, size: tuple[float, float] = (5.0, 3.6)) -> Iterator[Any]:
    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False)
    try:
        yield fig, axes
        fig.tight_layout()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=DPI, format="png")
    finally:
        plt.close(fig)


def png_base64(path: Path) -> str:
    """The file's bytes as base64 text, for ``<img src="data:image/png;base64,...">``."""
    return base64.b64encode(Path(path).read_bytes()).decode("ascii")


# ----------------------------------------------------------------------------- per-run plots

def sparsity_heatmap(name: str, codes: np.ndarray, path: Path) -> Path:
    """Neuron x input image of a dense layer's weights: dark where a weight is nonzero.

    Args:
        codes: n_in x n_out weight codes (graph.json layout); shown transposed (rows = neurons).
    """
    mask = (np.asarray(codes) != 0).T.astype(float)
    n_out, n_in = mask.shape
    with _figure(path, size=(max(3.5, min(9.0, 2.0 + n_in / 10)), max(2.8, min(7.0, 1.5 + n_out / 10)))) as (_, ax):
        a = ax[0][0]
        a.imshow(mask, cmap="Greys", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
        a.set_xlabel(f"input (n_in = {n_in})")
        a.set_ylabel(f"neuron (n_out = {n_out})")
        a.set_title(f"{name}: {int(mask.sum())}/{mask.size} nonzero ({1 - mask.mean():.1%} sparse)")
    return path


def weight_histogram(name: str, codes: np.ndarray, frac: int, path: Path) -> Path:
    """Histogram of a layer's weight integer codes (x axis in code units; value = code * 2^-frac)."""
    c = np.asarray(codes).ravel().astype(np.int64)
    lo, hi = int(c.min()), int(c.max())
    bins = np.arange(lo - 0.5, hi + 1.5, max(1, math.ceil((hi - lo + 1) / 64)))
    with _figure(path) as (_, ax):
        a = ax[0][0]
        a.hist(c, bins=bins, color="#3b6ea5")
        a.set_yscale("log")
        a.set_xlabel(f"weight code (value = code x 2^-{frac})")
        a.set_ylabel("count")
        a.set_title(f"{name}: {c.size} weights, codes {lo}..{hi}")
    return path


def quant_error_histogram(errors: Mapping[str, np.ndarray], path: Path, lsb: Mapping[str, float]) -> Path:
    """Per-layer histogram of (float weight - quantized weight), pruned weights excluded.

    Args:
        errors: layer name -> array of errors in real units.
        lsb: layer name -> size of the weight quantization step, marked as +-LSB/2 guides.
    """
    names = list(errors)
    with _figure(path, ncols=max(1, len(names))) as (_, ax):
        for a, n in zip(ax[0], names):
            e = np.asarray(errors[n]).ravel()
            a.hist(e, bins=41, color="#a5563b")
            step = lsb.get(n)
            if step:
                for x in (-step / 2, step / 2):
                    a.axvline(x, color="k", lw=0.8, ls="--")
            a.set_xlabel("float - quantized weight")
            a.set_title(f"{n}: max |err| {np.max(np.abs(e)) if e.size else 0:.3g}")
        ax[0][0].set_ylabel("count")
    return path


def code_histograms(codes: Mapping[str, np.ndarray], path: Path) -> Path:
    """All layers' weight codes side by side (used when float weights are unavailable)."""
    names = list(codes)
    with _figure(path, ncols=max(1, len(names))) as (_, ax):
        for a, n in zip(ax[0], names):
            c = np.asarray(codes[n]).ravel()
            a.hist(c, bins=np.arange(c.min() - 0.5, c.max() + 1.5), color="#3b6ea5")
            a.set_xlabel("weight code")
            a.set_title(f"{n} (float weights not available)")
        ax[0][0].set_ylabel("count")
    return path


# ----------------------------------------------------------------------------- sweep plots

def pareto_front(xs: Sequence[float], ys: Sequence[float]) -> list[int]:
    """Indices of points not dominated when minimising x and maximising y, sorted by x.

    A point is dominated if another has x <= and y >= with at least one strict.
    """
    idx = sorted(range(len(xs)), key=lambda i: (xs[i], -ys[i]))
    front: list[int] = []
    best = -math.inf
    for i in idx:
        if ys[i] > best:
            front.append(i)
            best = ys[i]
    return front


def _num(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def pareto_plot(rows: Sequence[Mapping[str, Any]], x: str, y: str, path: Path, label: str = "slug") -> Path | None:
    """Scatter of y (maximised) against x (minimised) with the Pareto front drawn; None if no data."""
    pts = [(r, _num(r.get(x)), _num(r.get(y))) for r in rows]
    pts = [(r, a, b) for r, a, b in pts if a is not None and b is not None]
    if not pts:
        return None
    xs = [p[1] for p in pts]
    ys = [p[2] for p in pts]
    front = pareto_front(xs, ys)
    with _figure(path, size=(6.0, 4.2)) as (_, ax):
        a = ax[0][0]
        a.scatter(xs, ys, color="#999999", label="points")
        fx, fy = [xs[i] for i in front], [ys[i] for i in front]
        a.step(fx, fy, where="post", color="#c0392b")
        a.scatter(fx, fy, color="#c0392b", label="Pareto front")
        for i in front:
            a.annotate(str(pts[i][0].get(label, "")), (xs[i], ys[i]), fontsize=6, xytext=(3, 3),
                       textcoords="offset points")
        a.set_xlabel(x)
        a.set_ylabel(y)
        a.set_title(f"{y} vs {x}")
        a.legend(fontsize=7)
    return path


def series_plot(rows: Sequence[Mapping[str, Any]], x: str, ys: Sequence[str], path: Path,
                group: str | None = None) -> Path | None:
    """One panel per y key: y against x, one marker series per value of ``group``; None if no data."""
    panels = []
    for y in ys:
        pts = [(r, _num(r.get(x)), _num(r.get(y))) for r in rows]
        pts = [p for p in pts if p[1] is not None and p[2] is not None]
        if pts:
            panels.append((y, pts))
    if not panels:
        return None
    with _figure(path, ncols=len(panels), size=(4.6, 3.6)) as (_, ax):
        for a, (y, pts) in zip(ax[0], panels):
            groups: dict[str, list[tuple[float, float]]] = {}
            for r, px, py in pts:
                key = f"{group}={r.get(group)}" if group else y
                groups.setdefault(key, []).append((px, py))
            for key, xy in sorted(groups.items()):
                xy.sort()
                a.plot([p[0] for p in xy], [p[1] for p in xy], marker="o", label=key)
            a.set_xlabel(x)
            a.set_ylabel(y)
            if "reuse_factor" in x and all(p[1] > 0 for p in pts):
                a.set_xscale("log", base=2)
                ticks = sorted({p[1] for p in pts})  # the swept reuse factors themselves (3, 9: not powers of 2)
                a.set_xticks(ticks, [f"{t:g}" for t in ticks])
                a.xaxis.set_minor_locator(NullLocator())
            a.legend(fontsize=7)
    return path


# ----------------------------------------------------------------------------- search plots

def search_front_plot(rows: Sequence[Mapping[str, Any]], x: str, y: str, path: Path) -> Path | None:
    """A search's trials, y against x: the front (flag ``on_front``) red and labelled, dominated
    trials grey, infeasible ones grey crosses; None if no trial has both numbers."""
    pts = [(r, _num(r.get(x)), _num(r.get(y))) for r in rows]
    pts = [(r, a, b) for r, a, b in pts if a is not None and b is not None]
    if not pts:
        return None
    with _figure(path, size=(6.0, 4.2)) as (_, ax):
        a = ax[0][0]
        for kind, color, marker in (("dominated", "#bbbbbb", "o"), ("infeasible", "#bbbbbb", "x"),
                                    ("front", "#c0392b", "o")):
            sel = [(px, py) for r, px, py in pts
                   if (kind == "front") == bool(r.get("on_front"))
                   and (kind == "infeasible") == (not r.get("on_front") and not r.get("feasible", True))]
            if sel:
                a.scatter([p[0] for p in sel], [p[1] for p in sel], color=color, marker=marker, label=kind)
        for r, px, py in pts:
            if r.get("on_front"):
                a.annotate(str(r.get("trial", "")), (px, py), fontsize=7, xytext=(3, 3), textcoords="offset points")
        a.set_xlabel(x)
        a.set_ylabel(y)
        a.set_title(f"{y} vs {x}")
        a.legend(fontsize=7)
    return path


def estimate_plot(points: Mapping[str, Mapping[str, Any]], path: Path) -> Path | None:
    """Per resource, the calibrated estimate of each synthesized point against Yosys (the diagonal
    is a perfect estimate); ``points``: resource -> {"points": [{"estimate", "yosys"}]}."""
    panels = [(k, v["points"]) for k, v in points.items() if v.get("points")]
    if not panels:
        return None
    with _figure(path, ncols=len(panels), size=(4.0, 3.6)) as (_, ax):
        for a, (k, pts) in zip(ax[0], panels):
            ys = [p["yosys"] for p in pts]
            es = [p["estimate"] for p in pts]
            a.scatter(ys, es, color="#2c7fb8")
            hi = max(ys + es) * 1.05 or 1.0
            a.plot([0, hi], [0, hi], color="#999999", linewidth=0.8)
            a.set_xlabel(f"Yosys {k}")
            a.set_ylabel(f"estimated {k}")
            a.set_title(k)
    return path


def ptq_bits_plot(record: Mapping[str, Any], path: Path) -> Path | None:
    """PTQ (codesign.ptq's record): accuracy against the uniform fractional bit count, then per knob
    (the input, each layer's weights, each layer's results) the accuracy drop and the relative RMS
    error of the outputs against the float model when only that knob's bits fall, others held."""
    uniform = record.get("uniform_search") or []
    sens = record.get("sensitivity") or {}
    if not uniform:
        return None
    with _figure(path, ncols=3 if sens else 1, size=(4.4, 3.6)) as (_, ax):
        a = ax[0][0]
        a.plot([r["frac_bits"] for r in uniform], [100 * r["accuracy"] for r in uniform], marker="o",
               color="#2c7fb8", label="PTQ (golden model)")
        a.axhline(100 * record["float_accuracy_calibration"], color="#999999", linestyle="--", label="float")
        a.set_xlabel("fractional bits (every knob)")
        a.set_ylabel("accuracy on calibration inputs (%)")
        a.set_title("accuracy vs bits (uniform)")
        a.legend(fontsize=7)
        if sens:
            for knob, rows in sens.items():
                f = [r["frac_bits"] for r in rows]
                ax[0][1].plot(f, [100 * r["drop"] for r in rows], marker=".", label=knob)
                ax[0][2].plot(f, [max(r["output_rel_rms_error"], 1e-6) for r in rows], marker=".", label=knob)
            ax[0][1].axhline(100 * record["target_drop"], color="#d95f02", linestyle=":", label="target")
            ax[0][1].set_ylabel("accuracy drop (points)")
            ax[0][2].set_ylabel("output relative RMS error")
            ax[0][2].set_yscale("log")
            for a, title in ((ax[0][1], "per-layer sensitivity"), (ax[0][2], "per-layer quantization error")):
                a.set_xlabel("fractional bits of one knob (others held)")
                a.set_title(title)
                a.legend(fontsize=6)
    return path



# ----------------------------------------------------------------------------- training levers

def learning_curves(curve: Sequence[float], path: Path, round_starts: Sequence[int] = (),
                    teacher: Sequence[float] | None = None, label: str = "student") -> Path:
    """Test accuracy per epoch of the model stage (distillation / rewinding), as result.json
    records it: dashed lines where a pruning round starts (after a rewind), the teacher's own curve
    when there is one."""
    with _figure(path, size=(6.0, 3.6)) as (_, ax):
        a = ax[0][0]
        a.plot(range(1, len(curve) + 1), curve, marker=".", label=label)
        if teacher:
            a.plot(range(1, len(teacher) + 1), teacher, marker=".", label="float teacher")
        for k, start in enumerate(round_starts):
            if start > 0:
                a.axvline(start + 0.5, color="grey", linestyle="--", linewidth=0.8,
                          label="pruning round starts" if k == 1 else None)
        a.set_xlabel("epoch")
        a.set_ylabel("test accuracy")
        a.legend(fontsize=7)
    return path
