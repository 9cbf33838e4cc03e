"""RF conformance run (issue 3): RTL == hls4ml C-sim on every output integer, for every reuse factor.

``python -m codesign.tools.conformance [--rf 1,2,3,4,8,16,32,max] [--vectors 10000] [--out runs/conformance]``

Trains the default digits model once (flow stage "train" in ``<out>/base``), then for each reuse
factor runs convert + rtl in ``<out>/rf_<RF>`` (the trained model is copied in, so its stage stays
cached), builds the test set plus N random on-grid inputs (:func:`codesign.vectors.make_vectors`:
inputs, C-sim expected outputs, golden per-layer outputs), and checks

- golden model == C-sim on every output integer,
- RTL == C-sim on every output integer, streamed through the compiled ``codesign/testbenches/tb_stream.v``
  (:mod:`codesign.fastsim`, Verilator) with random input gaps and output back-pressure,
- no AXI4-Stream hold-rule violation, no spurious or surplus output, no timeout,
- smallest measured latency == design.json latency, smallest accept distance == design.json II.

``max`` sets each Dense layer's reuse factor to its own n_in*n_out (cfg.hls.layer_reuse_factor),
so every layer is fully folded. One line per RF, then ``conformance: N passed, M failed``; the exit
code is 1 when any RF failed. All figures go to ``<out>/conformance.json``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from codesign import layers as layer_kinds

log = logging.getLogger(__name__)
DEFAULT_RFS = "1,2,3,4,8,16,32,max"


def dense_sizes(model_h5: Path) -> dict[str, tuple[int, int]]:
    """{Dense layer name: (n_in, n_out)} of a trained Keras/QKeras model."""
    from codesign.model_io import load_model

    model = load_model(model_h5)
    sizes = {}
    for layer in model.layers:
        if type(layer).__name__ in layer_kinds.dense.KIND.keras_classes:
            kernel = layer.get_weights()[0]
            sizes[layer.name] = (int(kernel.shape[0]), int(kernel.shape[1]))
    return sizes


def parse_rfs(text: str) -> list[str]:
    """"1,2,max" -> ["1", "2", "max"]; raise ValueError naming a bad entry."""
    rfs = [t.strip() for t in text.split(",") if t.strip()]
    for t in rfs:
        if t != "max" and not (t.isdigit() and int(t) >= 1):
            raise ValueError(f"--rf: {t!r} is neither a positive integer nor 'max'")
    if not rfs:
        raise ValueError("--rf: no reuse factor given")
    return rfs


def check_rf(cfg: Any, rf_dir: Path, base_dir: Path, *, simulator: str = "verilator", gap_pct: int = 20,
             bp_pct: int = 20, seed: int = 1) -> dict[str, Any]:
    """convert + rtl + vectors + fast simulation for one configuration; return its figures."""
    import numpy as np

    from codesign import fastsim, vectors
    from codesign import graph as hwgraph
    from codesign.flow import COMMANDS, run_flow, run_stage

    rf_dir.mkdir(parents=True, exist_ok=True)
    if not (rf_dir / "model").exists():
        shutil.copytree(base_dir / "model", rf_dir / "model")
    t0 = time.monotonic()
    run_flow(cfg, rf_dir, stages="train")
    # Always convert in this process: the compiled C-sim library loads its weights from the
    # <run>/.hls.partial directory it was built in (renamed to hls/ afterwards), so a cached hls
    # stage's library exits the process when called from a new one. Loaded here, it keeps them.
    run_stage(COMMANDS["convert"], cfg, rf_dir, force=True)
    run_stage(COMMANDS["rtl"], cfg, rf_dir)
    flow_s = time.monotonic() - t0
    t0 = time.monotonic()
    work = rf_dir / "conformance"
    work.mkdir(exist_ok=True)
    vec_path = vectors.make_vectors(cfg, rf_dir, work / "vectors.npz")
    graph = hwgraph.load(rf_dir / "hls" / "graph.json")
    with np.load(vec_path) as z:
        arrays = {k: np.asarray(z[k]) for k in z.files}
    golden = vectors.golden_agreement(graph, arrays)
    vectors_s = time.monotonic() - t0
    sim = fastsim.run_stream(rf_dir / "rtl", arrays["inputs"], simulator=simulator, gap_pct=gap_pct,
                             bp_pct=bp_pct, seed=seed, build_dir=rf_dir / ".cache" / "fastsim" / simulator)
    cmp = fastsim.compare(sim["outputs"], arrays["expected"])
    failures = []
    if golden["mismatched_outputs"]:
        failures.append(f"golden != C-sim on {golden['mismatched_outputs']} output integers")
    if cmp["mismatched_vectors"]:
        failures.append(f"RTL != C-sim on {cmp['mismatched_outputs']} output integers of {cmp['mismatched_vectors']} "
                        f"vectors; first {cmp['first_mismatch']}")
    for key, what in (("protocol_violations", "AXI4-Stream hold-rule violations"),
                      ("spurious_outputs", "outputs without an accepted input"),
                      ("extra_outputs", "outputs after the last vector")):
        if sim[key]:
            failures.append(f"{sim[key]} {what}")
    if sim["timeout"]:
        failures.append(f"timeout after {sim['cycles']} cycles ({sim['received']} of {sim['vectors']} outputs)")
    if sim["latency_min"] != sim["latency_expected"]:
        failures.append(f"latency {sim['latency_min']} measured, design.json says {sim['latency_expected']}")
    if sim["ii_min"] is not None and sim["ii_min"] != sim["ii_expected"]:
        failures.append(f"II {sim['ii_min']} measured, design.json says {sim['ii_expected']}")
    sim_public = {k: v for k, v in sim.items() if k not in ("outputs", "latencies", "files")}
    return {"rf_dir": str(rf_dir), "vectors": int(len(arrays["inputs"])), "golden": golden, "rtl": cmp,
            "sim": sim_public, "flow_seconds": round(flow_s, 2), "vectors_seconds": round(vectors_s, 2),
            "failures": failures, "passed": not failures}


def format_line(label: str, res: dict[str, Any]) -> str:
    """One line of the conformance table."""
    if "error" in res:
        return f"RF {label:>5}  ERROR  {res['error']}"
    s = res["sim"]
    cps = s["cycles_per_second"]
    return (f"RF {label:>5}  vectors {res['vectors']}  golden_mismatch {res['golden']['mismatched_outputs']}  "
            f"rtl_mismatch {res['rtl']['mismatched_outputs']}  latency {s['latency_min']}..{s['latency_max']} "
            f"(design {s['latency_expected']})  II {s['ii_min']} (design {s['ii_expected']})  cycles {s['cycles']}  "
            f"sim {s['run_seconds']:.2f} s  {cps / 1e6 if cps else 0:.2f} M cycles/s  "
            f"build {s['build_seconds']:.1f} s  {'PASS' if res['passed'] else 'FAIL: ' + '; '.join(res['failures'])}")


def run(rfs: list[str], n_vectors: int, out: Path, *, simulator: str = "verilator",
        print_fn: Callable[[str], None] = print) -> dict[str, Any]:
    """Train once, check every RF; return {"results": {label: figures}, "passed", "failed"}."""
    from codesign.config import Config
    from codesign.errors import CodesignError
    from codesign.flow import run_flow
    from codesign.rundir import write_json

    out = Path(out)
    base_dir = out / "base"
    cfg0 = Config().replace(**{"output_dir": str(base_dir), "verify.random_vectors": n_vectors})
    t0 = time.monotonic()
    run_flow(cfg0, base_dir, stages="train")
    print_fn(f"trained the default digits model in {base_dir} ({time.monotonic() - t0:.1f} s)")
    sizes = dense_sizes(base_dir / "model" / "model.h5")
    results: dict[str, Any] = {}
    for label in rfs:
        if label == "max":
            per_layer = {name: n_in * n_out for name, (n_in, n_out) in sizes.items()}
            cfg = cfg0.replace(**{"hls.reuse_factor": 1, "hls.layer_reuse_factor": per_layer})
        else:
            per_layer = {name: int(label) for name in sizes}
            cfg = cfg0.replace(**{"hls.reuse_factor": int(label)})
        rf_dir = out / f"rf_{label}"
        cfg = cfg.replace(output_dir=str(rf_dir))
        t0 = time.monotonic()
        try:
            res = check_rf(cfg, rf_dir, base_dir, simulator=simulator)
        except Exception as e:  # recorded as this RF's failure (with its type); the other RFs go on
            if not isinstance(e, CodesignError):
                log.exception("RF %s crashed", label)
            res = {"error": f"{type(e).__name__}: {e}", "passed": False, "failures": [str(e)]}
        res["layer_reuse_factor"] = per_layer
        res["seconds"] = round(time.monotonic() - t0, 2)
        results[label] = res
        print_fn(format_line(label, res))
        write_json(out / "conformance.json", {"vectors": n_vectors, "results": results})
    passed = sum(1 for r in results.values() if r["passed"])
    summary = {"vectors": n_vectors, "simulator": simulator, "results": results, "passed": passed,
               "failed": len(results) - passed}
    write_json(out / "conformance.json", summary)
    print_fn(f"conformance: {passed} passed, {len(results) - passed} failed")
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m codesign.tools.conformance", description=__doc__.splitlines()[0])
    ap.add_argument("--rf", default=DEFAULT_RFS, help=f"reuse factors, 'max' = each layer's n_in*n_out "
                    f"(default {DEFAULT_RFS})")
    ap.add_argument("--vectors", type=int, default=10000, help="random on-grid vectors after the test set")
    ap.add_argument("--out", type=Path, default=Path("runs/conformance"), help="output directory")
    ap.add_argument("--simulator", default="verilator", choices=("verilator", "icarus"))
    args = ap.parse_args(argv)
    try:
        rfs = parse_rfs(args.rf)
    except ValueError as e:
        ap.error(str(e))
    if args.vectors < 0:
        ap.error("--vectors must be >= 0")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    summary = run(rfs, args.vectors, args.out, simulator=args.simulator)
    return 0 if summary["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
