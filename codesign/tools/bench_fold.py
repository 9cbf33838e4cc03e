"""Benchmark (issue 15): area of the folded Dense architectures against the reuse factor.

``python -m codesign.tools.bench_fold [--rf 1,2,4,8,16] [--fold auto] [--nodsp] [--vectors 200] [--work DIR]``

For every reuse factor: converts ``tests/reference_models/qkeras_3layer`` (16->64->32->32->5,
QKeras 6-bit; :func:`codesign.tools.bench_da4ml.convert`, hls4ml's C-sim compiled), generates our
RTL (``rtl.fold_architecture`` = ``--fold``, per layer the architecture :mod:`codesign.arch.fold`
picks), checks it bit-exactly against the C-sim with the cocotb testbench (Verilator, random
on-grid vectors, measured latency and II against design.json; ``--vectors 0`` skips it),
synthesizes it with the same Yosys command as ``bench_da4ml`` (``synth_xilinx -family xcup
-flatten -noiopad``; ``--nodsp`` maps multipliers to LUTs) and prints LUT/FF/DSP/CARRY, latency,
II and the architecture of every Dense layer. All figures are measured by this run; they also go
to ``<work>/bench_fold.json``.
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


def generate(graph: Any, out: Path, fold_architecture: str) -> dict[str, Any]:
    from codesign import design as design_io
    from codesign import rtlgen

    if out.exists():
        shutil.rmtree(out)
    t0 = time.time()
    design = rtlgen.generate(graph, out, top=TOP, fold_architecture=fold_architecture)
    design_io.write(out, design)
    design["generate_seconds"] = round(time.time() - t0, 3)
    return design


def main(argv: list[str] | None = None) -> int:
    from codesign.arch.fold import CHOICES

    ap = argparse.ArgumentParser(prog="python -m codesign.tools.bench_fold", description=__doc__.split("\n\n")[0])
    ap.add_argument("--rf", default="1,2,4,8,16", help="reuse factors")
    ap.add_argument("--fold", default="auto", choices=CHOICES, help="rtl.fold_architecture")
    ap.add_argument("--nodsp", action="store_true", help="synthesize multipliers as LUTs")
    ap.add_argument("--vectors", type=int, default=200, help="random vectors of the bit-exact check (0: none)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "bench_fold", help="work directory")
    args = ap.parse_args(argv)
    rfs = sorted({int(r) for r in args.rf.split(",") if r.strip()})
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    tag = f"{args.fold}{'_nodsp' if args.nodsp else ''}"
    results: dict[str, Any] = {"model": MODEL, "fold_architecture": args.fold, "nodsp": args.nodsp, "rf": {}}
    rows = [["RF", "LUT", "FF", "DSP", "CARRY", "latency", "II", "verified (measured lat/II)", "gen s",
             "Dense architectures"]]
    for rf in rfs:
        graph, hls_dir = convert(rf, work)
        rtl = work / f"rtl_{tag}_rf{rf}"
        design = generate(graph, rtl, args.fold)
        archs = [f"{d['name']}:{d.get('fold_architecture') or d['architecture']}" for d in design["layers"]
                 if d["kind"] == "dense"]
        log(f"RF={rf}: generated in {design['generate_seconds']} s, latency {design['latency']}, II {design['ii']}, "
             f"{' '.join(archs)}")
        check = "not run"
        entry: dict[str, Any] = {"latency": design["latency"], "ii": design["ii"], "architectures": archs,
                                 "generate_seconds": design["generate_seconds"]}
        if args.vectors > 0:
            ver = verify(graph, hls_dir, rtl, work / f"verify_{tag}_rf{rf}", args.vectors, args.seed)
            ok = (bool(ver.get("passed")) and ver.get("mismatches") == 0
                  and ver.get("latency_min") == ver.get("latency_max") == design["latency"]
                  and ver.get("ii") == design["ii"] and ver.get("vectors_checked") == args.vectors)
            check = (f"{'yes' if ok else 'NO'}: {ver.get('vectors_checked')} vectors, {ver.get('mismatches')} mism., "
                     f"{ver.get('latency_min')}..{ver.get('latency_max')}/{ver.get('ii')}")
            entry["verify"] = {k: ver.get(k) for k in ("passed", "vectors_checked", "mismatches", "latency_min",
                                                       "latency_max", "ii", "golden_vs_csim")}
            entry["verified"] = ok
            log(f"RF={rf}: verify {check}")
        res = synth(rtl, TOP, design["files"], work / f"synth_{tag}_rf{rf}") if not args.nodsp else _synth_nodsp(
            rtl, design["files"], work / f"synth_{tag}_rf{rf}")
        entry.update({k: res.get(k) for k in ("LUT", "FF", "DSP", "CARRY", "wall_seconds")})
        results["rf"][str(rf)] = entry
        log(f"RF={rf}: LUT {res['LUT']} FF {res['FF']} DSP {res['DSP']} (synth {res['wall_seconds']} s)")
        rows.append([str(rf), str(res["LUT"]), str(res["FF"]), str(res["DSP"]), str(res["CARRY"]),
                     str(design["latency"]), str(design["ii"]), check, str(design["generate_seconds"]),
                     " ".join(archs)])
    print()
    print(f"{MODEL}, rtl.fold_architecture={args.fold}, Yosys synth_xilinx -family xcup"
          f"{' -nodsp' if args.nodsp else ''} (figures measured by this run)")
    print(table(rows))
    luts = [results["rf"][str(rf)]["LUT"] for rf in rfs]
    falls = all(b < a for a, b in zip(luts, luts[1:]))
    print(f"LUTs fall at every step of RF: {'yes' if falls else 'NO'}")
    (work / f"bench_fold_{tag}.json").write_text(json.dumps(results, indent=1, default=str))
    return 0


def _synth_nodsp(rtl: Path, files: list[str], out: Path) -> dict[str, Any]:
    from codesign.synth import synthesize

    return synthesize(rtl, TOP, files, out, family="xcup", nodsp=True)


if __name__ == "__main__":
    raise SystemExit(main())
