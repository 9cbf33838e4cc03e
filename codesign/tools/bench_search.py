"""Benchmark (issue 18): the hardware-aware search against the README's 12-point grid sweep.

``python -m codesign.tools.bench_search [--search docs/search_example.yaml] [--trials 12] [--work DIR]``

1. The grid: the README's 12-point sweep (:data:`codesign.tools.bench.README_GRID`, reuse factor
   1/4/16 x 4/6 bits x 50/80 % sparsity) on the search file's base configuration, so both train,
   verify and synthesize alike; every point verified bit-exact and synthesized (``<work>/grid``,
   a sweep: rerunning the command reuses finished points).
2. The search: ``codesign search`` of the search file with ``--trials`` trials (default 12: as many
   trials as the grid has points) into ``<work>/search_<trials>``, every front point verified and
   synthesized. Its wall time is measured from a fresh directory (``--fresh`` removes an old one).
3. The comparison, on the search's objectives (accuracy from the verified RTL, LUT from Yosys,
   latency from design.json) and under its constraints: for every grid point within the
   constraints, the search front point that dominates it (at least as good in every objective) or
   "not dominated"; and the hypervolume of each set (objectives normalised to [0, 1] by the
   constraint bound or the two sets' worst value, reference point 1.1; larger is better).

Everything printed is measured in this run or read from the two result files it names.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from codesign.tools.tables import log, table

REPO = Path(__file__).resolve().parents[2]


def grid_rows(search_file: Path, work: Path) -> tuple[list[dict[str, Any]], float]:
    """The README's grid on the search file's base: (sweep rows, wall seconds)."""
    from codesign import search, sweep
    from codesign.tools.bench import README_GRID

    spec = search.load_spec(search_file)
    sw = sweep.spec_from_dict({"base": spec.base, "grid": README_GRID}, out=work / "grid")
    t0 = time.time()
    rows = sweep.run_sweep(sw, progress=lambda s: log(f"grid: {s}"), worker_output=False)
    return rows, time.time() - t0


def search_rows(search_file: Path, trials: int, work: Path, fresh: bool) -> tuple[dict[str, Any], float, Path]:
    """Run the search; (summary, wall seconds, out dir)."""
    from codesign import search

    out = work / f"search_{trials}"
    if fresh and out.exists():
        shutil.rmtree(out)
    spec = search.load_spec(search_file, out=out, trials=trials)
    t0 = time.time()
    summary = search.run_search(spec, progress=lambda s: log(f"search: {s}"), worker_output=False)
    return summary, time.time() - t0, out


def hypervolume(points: Sequence[Sequence[float]], ref: Sequence[float]) -> float:
    """Exact hypervolume (all objectives minimised) dominated by ``points`` up to ``ref``.

    The union of boxes [p, ref] is measured on the grid of the points' own coordinates: a cell
    counts when some point is at or below its lower corner in every objective. Exact and fine for
    the few dozen points a search has.
    """
    pts = np.array([p for p in points if all(x < r for x, r in zip(p, ref))], dtype=float)
    if len(pts) == 0:
        return 0.0
    axes = [np.unique(np.append(pts[:, k], ref[k])) for k in range(len(ref))]
    total = 0.0
    for cell in itertools.product(*[range(len(a) - 1) for a in axes]):
        lower = np.array([axes[k][i] for k, i in enumerate(cell)])
        if np.any(np.all(pts <= lower, axis=1)):
            total += float(np.prod([axes[k][i + 1] - axes[k][i] for k, i in enumerate(cell)]))
    return total


def compare(objectives: Sequence[str], bounds: dict[str, float], grid: list[dict[str, Any]],
            front: list[dict[str, Any]]) -> dict[str, Any]:
    """Which grid points a front point dominates, and both sets' hypervolumes.

    ``grid`` and ``front`` rows carry each objective under its own name ("accuracy" maximised, the
    rest minimised); ``bounds`` are the constraint bounds of minimised objectives.
    """
    from codesign.search_space import METRICS

    sign = {o: (-1.0 if METRICS[o] == "max" else 1.0) for o in objectives}

    def vec(r: dict[str, Any]) -> list[float]:
        return [sign[o] * float(r[o]) for o in objectives]

    dominated = []
    for g in grid:
        by = [f for f in front if all(a <= b for a, b in zip(vec(f), vec(g)))]
        dominated.append(min(by, key=lambda f: vec(f)) if by else None)
    # normalised: accuracy -> 1 - accuracy; a minimised objective -> value / bound (its constraint,
    # else the worst value of either set); the reference point 1.1 in every objective, a little
    # beyond the worst, so that the worst point still counts
    scale = {}
    for o in objectives:
        if sign[o] > 0:
            scale[o] = bounds.get(o) or max(float(r[o]) for r in grid + front) or 1.0

    def norm(r: dict[str, Any]) -> list[float]:
        return [1.0 - float(r[o]) if sign[o] < 0 else float(r[o]) / scale[o] for o in objectives]

    ref = [1.1] * len(objectives)
    return {"dominated_by": dominated,
            "hv_grid": hypervolume([norm(r) for r in grid], ref),
            "hv_search": hypervolume([norm(r) for r in front], ref)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m codesign.tools.bench_search", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--search", default=str(REPO / "docs" / "search_example.yaml"), help="search file")
    p.add_argument("--trials", type=int, default=12, help="search trials (default 12: the grid's point count)")
    p.add_argument("--work", default="runs/bench_search", help="work directory (kept: both runs resume)")
    p.add_argument("--fresh", action="store_true", help="remove an old search directory first (timed from scratch)")
    p.add_argument("--no-grid", action="store_true", help="only the search and its timing")
    args = p.parse_args(argv)
    from codesign import search
    from codesign.search_space import load_spec

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    spec = load_spec(args.search, out=work / f"search_{args.trials}", trials=args.trials)
    objectives = list(spec.objectives)
    summary, search_s, out = search_rows(Path(args.search), args.trials, work, args.fresh)
    log(f"search: {summary['finished']} trials in {search_s:.0f} s ({search_s / 60:.1f} min), front "
        f"{len(summary['front'])} points, all verified and synthesized: {summary['front_verified']}")
    loo = summary["calibration"]["leave_one_out"].get("LUT")
    if loo:
        log(f"search: LUT estimate vs Yosys, leave-one-out median error {100 * loo['median']:.1f} % "
            f"(max {100 * loo['max']:.1f} %, {loo['n']} synthesized trials); goal median < 10 %: "
            f"{'met' if loo['median'] < 0.10 else 'NOT met'}")
    if args.trials >= 40:
        log(f"goal: 40 trials in under 40 min on this machine: {'met' if search_s < 2400 else 'NOT met'}"
            f" ({search_s / 60:.1f} min for {args.trials})")
    if args.no_grid:
        return 0
    grid, grid_s = grid_rows(Path(args.search), work)
    ok = [r for r in grid if r.get("status") == "ok"]
    gridm = [{"accuracy": r["acc_rtl"], "LUT": r["LUT"], "FF": r["FF"], "DSP": r["DSP"], "latency": r["latency"],
              "ii": r["ii"], "name": r["slug"]} for r in ok]
    feasible = [g for g in gridm if search.feasible(spec, g)]
    front = [dict(r, name=f"trial {r['trial']}") for r in summary["rows"] if r["on_front"]]
    bounds = {c.metric: c.bound for c in spec.constraints if c.op in ("<=", "<")}
    res = compare(objectives, bounds, feasible, front)
    log(f"grid: {len(ok)}/{len(grid)} points verified and synthesized in {grid_s:.0f} s, "
        f"{len(feasible)} within the constraints {', '.join(c.text() for c in spec.constraints)}")
    rows = [["grid point", *objectives, "dominated by", *[f"its {o}" for o in objectives]]]
    for g, f in zip(feasible, res["dominated_by"]):
        rows.append([g["name"], *[_fmt(o, g[o]) for o in objectives], f["name"] if f else "not dominated",
                     *[_fmt(o, f[o]) if f else "" for o in objectives]])
    print(table(rows), flush=True)
    n_dom = sum(f is not None for f in res["dominated_by"])
    log(f"hypervolume (normalised, larger is better): search front {res['hv_search']:.4f} "
        f"({len(front)} points, {summary['finished']} trials), grid {res['hv_grid']:.4f} ({len(feasible)} "
        f"feasible of {len(grid)} points)")
    log(f"goal: the search front ({summary['finished']} trials) dominates the {len(grid)}-point grid: "
        f"{'met' if n_dom == len(feasible) and summary['finished'] <= len(grid) else 'NOT met'} "
        f"({n_dom} of {len(feasible)} feasible grid points dominated)")
    return 0


def _fmt(objective: str, v: Any) -> str:
    if objective == "accuracy":
        return f"{100 * float(v):.2f} %"
    return f"{float(v):,.0f}"


if __name__ == "__main__":
    raise SystemExit(main())
