"""Benchmark (issue 15): area of the folded Dense architectures against the reuse factor.

``python -m codesign.tools.bench_fold [--rf 1,2,4,8,16] [--fold auto] [--multipliers dsp,lut] [--vectors 200] [--work DIR]``

For every reuse factor: converts ``tests/reference_models/qkeras_3layer`` (16->64->32->32->5,
QKeras 6-bit; :func:`codesign.tools.bench_da4ml.convert`, hls4ml's C-sim compiled) once, then for
every ``rtl.multipliers`` variant (``--multipliers``; default both the DSP variant and the LUT-only
one) generates our RTL (``rtl.fold_architecture`` = ``--fold``, per layer the architecture
:mod:`codesign.arch.fold` picks under that variant's cost), checks it bit-exactly against the C-sim
with the cocotb testbench (Verilator, random on-grid vectors, measured latency and II against
design.json; ``--vectors 0`` skips it), synthesizes it with the same Yosys command as
``bench_da4ml`` (``synth_xilinx -family xcup -flatten -noiopad``; the ``lut`` variant adds
``-nodsp``, so no tool maps anything to a DSP) and prints LUT/FF/DSP/CARRY, latency, II and each
Dense layer's architecture. Then, per variant, the issue's targets: LUT + FF falls at every doubling
of RF, RF 4 and RF 16 against RF 1 (goals 0.6 and 0.3), and the multipliers of every layer against
ceil(nonzeros / RF) (with the Yosys DSP total against their sum). All figures are measured by this
run; they also go to ``<work>/bench_fold_<fold>.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

from codesign.tools.bench_da4ml import MODEL, TOP, convert, synth, verify
from codesign.tools.tables import log, table

REPO = Path(__file__).resolve().parents[2]


def generate(graph: Any, out: Path, fold_architecture: str, multipliers: str = "auto") -> dict[str, Any]:
    from codesign import design as design_io
    from codesign import rtlgen

    if out.exists():
        shutil.rmtree(out)
    t0 = time.time()
    design = rtlgen.generate(graph, out, top=TOP, fold_architecture=fold_architecture, multipliers=multipliers)
    design_io.write(out, design)
    design["generate_seconds"] = round(time.time() - t0, 3)
    return design


def main(argv: list[str] | None = None) -> int:
    from codesign.arch.dense import MULTIPLIERS
    from codesign.arch.fold import CHOICES

    ap = argparse.ArgumentParser(prog="python -m codesign.tools.bench_fold", description=__doc__.split("\n\n")[0])
    ap.add_argument("--rf", default="1,2,4,8,16", help="reuse factors")
    ap.add_argument("--fold", default="auto", choices=CHOICES, help="rtl.fold_architecture")
    ap.add_argument("--multipliers", default="dsp,lut",
                    help=f"rtl.multipliers variants, comma-separated ({', '.join(MULTIPLIERS)}); lut synthesizes with -nodsp")
    ap.add_argument("--vectors", type=int, default=200, help="random vectors of the bit-exact check (0: none)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "bench_fold", help="work directory")
    args = ap.parse_args(argv)
    rfs = sorted({int(r) for r in args.rf.split(",") if r.strip()})
    variants = [v.strip() for v in args.multipliers.split(",") if v.strip()]
    bad = [v for v in variants if v not in MULTIPLIERS]
    if bad or not variants:
        ap.error(f"--multipliers {args.multipliers!r}: valid variants are {', '.join(MULTIPLIERS)}")
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"model": MODEL, "fold_architecture": args.fold, "variants": {v: {} for v in variants}}
    for rf in rfs:
        graph, hls_dir = convert(rf, work)
        for k, variant in enumerate(variants):
            if rf == 1 and k:  # RF 1 is the adder graph: no multiplier, the same design in every variant
                results["variants"][variant]["1"] = results["variants"][variants[0]]["1"]
                continue
            results["variants"][variant][str(rf)] = _point(graph, hls_dir, rf, args.fold, variant, args, work)
            (work / f"bench_fold_{args.fold}.json").write_text(json.dumps(results, indent=1, default=str))
    ok = True
    for variant in variants:
        ok &= _report(results["variants"][variant], rfs, args.fold, variant)
    return 0 if ok else 1


def _point(graph: Any, hls_dir: Path, rf: int, fold: str, variant: str, args: argparse.Namespace,
           work: Path) -> dict[str, Any]:
    """Generate, verify and synthesize one (reuse factor, multipliers variant) point."""
    tag = f"{fold}_{variant}_rf{rf}"
    rtl = work / f"rtl_{tag}"
    design = generate(graph, rtl, fold, variant)
    dense = [d for d in design["layers"] if d["kind"] == "dense"]
    archs = [f"{d['name']}:{d.get('fold_architecture') or d['architecture']}" for d in dense]
    log(f"RF={rf} {variant}: generated in {design['generate_seconds']} s, latency {design['latency']}, "
        f"II {design['ii']}, {' '.join(archs)}")
    entry: dict[str, Any] = {
        "latency": design["latency"], "ii": design["ii"], "architectures": archs,
        "generate_seconds": design["generate_seconds"],
        # the issue's bound: a layer needs no more than ceil(nonzeros / RF) multipliers
        "multipliers": {d["name"]: [d["multipliers"], -(-d["nonzero_weights"] // rf)] for d in dense},
        "check": "not run",
    }
    if args.vectors > 0:
        ver = verify(graph, hls_dir, rtl, work / f"verify_{tag}", args.vectors, args.seed)
        ok = (bool(ver.get("passed")) and ver.get("mismatches") == 0
              and ver.get("latency_min") == ver.get("latency_max") == design["latency"]
              and ver.get("ii") == design["ii"] and ver.get("vectors_checked") == args.vectors)
        entry["check"] = (f"{'yes' if ok else 'NO'}: {ver.get('vectors_checked')} vectors, {ver.get('mismatches')} "
                          f"mism., {ver.get('latency_min')}..{ver.get('latency_max')}/{ver.get('ii')}")
        entry["verify"] = {k: ver.get(k) for k in ("passed", "vectors_checked", "mismatches", "latency_min",
                                                   "latency_max", "ii", "golden_vs_csim")}
        entry["verified"] = ok
        log(f"RF={rf} {variant}: verify {entry['check']}")
    syn_dir = work / f"synth_{tag}"
    res = _synth_nodsp(rtl, design["files"], syn_dir) if variant == "lut" else synth(rtl, TOP, design["files"], syn_dir)
    entry.update({k: res.get(k) for k in ("LUT", "FF", "DSP", "CARRY", "wall_seconds")})
    log(f"RF={rf} {variant}: LUT {res['LUT']} FF {res['FF']} DSP {res['DSP']} (synth {res['wall_seconds']} s)")
    return entry


def _report(points: dict[str, dict[str, Any]], rfs: list[int], fold: str, variant: str) -> bool:
    """Print one variant's table and the issue's targets; False when a point failed its check."""
    rows = [["RF", "LUT", "FF", "LUT+FF", "x RF 1", "DSP", "CARRY", "latency", "II", "verified (measured lat/II)",
             "gen s", "multipliers / ceil(nnz/RF) per layer", "Dense architectures"]]
    base = points.get("1")
    base_sum = base["LUT"] + base["FF"] if base else None
    for rf in rfs:
        e = points[str(rf)]
        total = e["LUT"] + e["FF"]
        ratio = f"{total / base_sum:.2f}" if base_sum else "-"
        mults = " ".join(f"{m}/{b}" for m, b in e["multipliers"].values())
        rows.append([str(rf), str(e["LUT"]), str(e["FF"]), str(total), ratio, str(e["DSP"]), str(e["CARRY"]),
                     str(e["latency"]), str(e["ii"]), e["check"], str(e["generate_seconds"]), mults,
                     " ".join(e["architectures"])])
    print()
    print(f"{MODEL}, rtl.fold_architecture={fold}, rtl.multipliers={variant}, Yosys synth_xilinx -family xcup "
          f"-flatten -noiopad{' -nodsp' if variant == 'lut' else ''} (figures measured by this run)")
    print(table(rows))
    sums = [points[str(rf)]["LUT"] + points[str(rf)]["FF"] for rf in rfs]
    print(f"LUT+FF falls at every step of RF: {'yes' if all(b < a for a, b in zip(sums, sums[1:])) else 'NO'}")
    for rf, goal in ((4, 0.6), (16, 0.3)):
        if base_sum and str(rf) in points:
            r = (points[str(rf)]["LUT"] + points[str(rf)]["FF"]) / base_sum
            print(f"RF {rf} LUT+FF / RF 1: {r:.2f} (goal <= {goal}: {'met' if r <= goal else 'NOT met'})")
    for rf in rfs:
        if rf == 1:
            continue
        e = points[str(rf)]
        over = [f"{n} {m}>{b}" for n, (m, b) in e["multipliers"].items() if m > b]
        bound = sum(b for _, b in e["multipliers"].values())
        print(f"RF {rf}: multipliers within ceil(nonzeros/RF) per layer: {'yes' if not over else 'NO (' + ', '.join(over) + ')'}; "
              f"Yosys DSP {e['DSP']} vs their sum {bound}")
    return all(points[str(rf)].get("verified", True) for rf in rfs)


def _synth_nodsp(rtl: Path, files: list[str], out: Path) -> dict[str, Any]:
    from codesign.synth import synthesize

    return synthesize(rtl, TOP, files, out, family="xcup", nodsp=True)


if __name__ == "__main__":
    raise SystemExit(main())
