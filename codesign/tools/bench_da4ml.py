"""Benchmark (issue 9): our shared-adder-graph Dense layers vs da4ml on the jet-tagging MLP.

``python -m codesign.tools.bench_da4ml [--rf 1,2,4,8,16] [--skip-da4ml] [--work DIR]``

1. Imports ``tests/reference_models/qkeras_3layer`` (16->64->32->32->5, QKeras 6-bit),
   strips the softmax and converts it with the automatic hls4ml configuration (input
   ``fixed<16,6>``, Latency strategy) once per reuse factor, compiling hls4ml's C-sim.
2. RF=1: generates our RTL with :func:`codesign.arch.adder_graph.parallel_shared` for every
   Dense layer (``codesign.arch.dense.parallel`` is patched for the duration of the call) and
   checks it bit-exactly against the C-sim with the cocotb testbench (random on-grid vectors).
3. Generates da4ml's RTL for the same hardware IR (same integer weights, biases and types) in a
   separate virtual environment (``.venv-da4ml``, created on demand: da4ml needs numpy >= 2, which
   breaks TensorFlow 2.14 in the project's venv). da4ml is traced with its defaults
   (``HWConfig(1, -1, -1)``, ``hard_dc=2``) and pipelined with ``latency_cutoff=5``. da4ml has no
   RND_CONV rounding: its ReLU casts round with RND (same hardware shape, ties differ), so its
   design is synthesized, not verified.
4. Synthesizes both with the same Yosys command (:func:`codesign.synth.synthesize`:
   ``synth_xilinx -family xcup -flatten -noiopad``) and prints LUT/FF/DSP/CARRY, latency and
   synthesis time with the ratio ours/da4ml.
5. For every other reuse factor: our folded architecture (unchanged), multipliers per layer
   against ceil(nonzeros / RF), and its LUT/FF/DSP.

All figures are measured by this run; the results also go to ``<work>/bench.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from codesign.tools.tables import log, table

REPO = Path(__file__).resolve().parents[2]
#: hls4ml's public example models, kept in the repository (tests/reference_models/README.md).
MODEL_DIR = REPO / "tests" / "reference_models"
MODEL = "qkeras_3layer"
DA4ML_VENV = REPO / ".venv-da4ml"
DA4ML_VERSION = "0.6.0"
TOP = "codesign_top"

#: Runs inside the da4ml venv: hardware-IR spec (JSON) in, da4ml's Verilog project out.
DA4ML_WORKER = r'''
import json, sys, time
from pathlib import Path
import numpy as np
from da4ml.trace import FixedVariableArrayInput, HWConfig, comb_trace
from da4ml.trace.ops import quantize, relu
from da4ml.codegen import VerilogModel

spec = json.loads(Path(sys.argv[1]).read_text())
out = Path(sys.argv[2])
t0 = time.time()

def kif(t):
    return int(t["signed"]), t["integer"] - int(t["signed"]), t["width"] - t["integer"]

inp = FixedVariableArrayInput((spec["n_in"],), hwconf=HWConfig(1, -1, -1),
                              solver_options={"hard_dc": spec["hard_dc"]})
x = quantize(inp, *kif(spec["input"]))
for L in spec["layers"]:
    if L["kind"] == "dense":
        w = np.array(L["weights"], dtype=np.float64) * 2.0 ** -L["weight_frac"]
        b = np.array(L["bias"], dtype=np.float64) * 2.0 ** -L["bias_frac"]
        x = x @ w + b
        for t in (L["accum_type"], L["out_type"]):
            x = quantize(x, *kif(t), "WRAP" if t["overflow"] == "WRAP" else "SAT", "TRN" if t["rounding"] == "TRN" else "RND")
    elif L["kind"] in ("relu", "cast"):
        t = L["out_type"]
        x = quantize(relu(x) if L["kind"] == "relu" else x, *kif(t),
                     "WRAP" if t["overflow"] == "WRAP" else "SAT", "TRN" if t["rounding"] == "TRN" else "RND")
    else:
        raise SystemExit(f"da4ml worker: layer kind {L['kind']} not handled")
comb = comb_trace(inp, x)
model = VerilogModel(comb, "model", out, latency_cutoff=spec["latency_cutoff"], clock_period=spec["clock_ns"])
model.write()
meta = json.loads((out / "metadata.json").read_text())
print(json.dumps({"stages": meta.get("latency"), "cost": float(comb.cost), "reg_bits": meta.get("reg_bits"),
                  "generate_seconds": round(time.time() - t0, 3)}))
'''


class BenchError(Exception):
    pass


# ----------------------------------------------------------------------------- da4ml venv

def ensure_da4ml(venv: Path = DA4ML_VENV) -> tuple[Path | None, str]:
    """The da4ml venv's python (created and installed on demand), or None and the reason."""
    py = venv / "bin" / "python"
    check = [str(py), "-c", "import da4ml, sys; print(da4ml.__version__)"]
    if py.is_file():
        proc = subprocess.run(check, capture_output=True, text=True)
        if proc.returncode == 0:
            return py, proc.stdout.strip()
    log(f"creating {venv} and installing da4ml=={DA4ML_VERSION} (separate from the project venv)")
    steps = [[sys.executable, "-m", "venv", str(venv)],
             [str(py), "-m", "pip", "install", "-q", f"da4ml=={DA4ML_VERSION}"]]
    for cmd in steps:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            return None, f"`{' '.join(cmd)}` failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}"
    proc = subprocess.run(check, capture_output=True, text=True)
    if proc.returncode != 0:
        return None, f"da4ml does not import in {venv}: {proc.stderr.strip().splitlines()[-1:]}"
    return py, proc.stdout.strip()


def run_da4ml(py: Path, graph: Any, out: Path, latency_cutoff: float, hard_dc: int, clock_ns: float) -> dict[str, Any]:
    """Write da4ml's Verilog for ``graph`` into ``out``; return its file list and metadata."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    d = graph.to_json()
    spec = {"n_in": graph.n_in, "input": graph.input_type.to_json(), "layers": d["layers"], "hard_dc": hard_dc,
            "latency_cutoff": latency_cutoff, "clock_ns": clock_ns}
    (out / "spec.json").write_text(json.dumps(spec))
    (out / "worker.py").write_text(DA4ML_WORKER)
    proc = subprocess.run([str(py), str(out / "worker.py"), str(out / "spec.json"), str(out / "prj")],
                          capture_output=True, text=True, cwd=out)
    (out / "worker.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise BenchError(f"da4ml worker failed (see {out / 'worker.log'}): {proc.stderr.strip().splitlines()[-3:]}")
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    src = out / "prj" / "src"
    # lookup_table.v reads a memory placeholder at parse time and is unused without tables (docs/TOOLCHAIN.md)
    files = sorted(str(p.relative_to(src)) for p in (src / "static").glob("*.v") if p.name != "lookup_table.v")
    files += sorted(p.name for p in src.glob("model_stage*.v")) + ["model.v"]
    info.update(src=str(src), files=files, top="model",
                # stage0_inp <= model_inp, ..., model_out <= last stage: one edge per stage plus one
                latency_cycles=int(info["stages"]) + 1)
    return info


# ----------------------------------------------------------------------------- our flow

@contextlib.contextmanager
def shared_adder_graphs() -> Iterator[None]:
    """Generate RF=1 Dense layers with adder_graph.parallel_shared while inside the block."""
    from codesign.arch import adder_graph, dense

    saved = dense.parallel
    dense.parallel = adder_graph.parallel_shared  # type: ignore[assignment]
    try:
        yield
    finally:
        dense.parallel = saved  # type: ignore[assignment]


def convert(rf: int, out: Path) -> tuple[Any, Path]:
    """Convert the reference model at reuse factor ``rf``; return (hardware IR, hls dir)."""
    from codesign import config
    from codesign import graph as hwgraph
    from codesign import layers as layer_kinds
    from codesign.convert import RESERVED_NAMES, convert_model
    from codesign.model_io import load_model

    hls_dir = out / f"hls_rf{rf}"
    graph_file = hls_dir / "graph.json"
    if graph_file.is_file() and list((hls_dir / "firmware").glob("myproject-*.so")):
        return hwgraph.load(graph_file), hls_dir
    if hls_dir.exists():
        shutil.rmtree(hls_dir)
    cfg = config.from_dict({"output_dir": str(out), "hls": {"reuse_factor": rf, "strategy": "Latency"}})
    model = load_model(MODEL_DIR / f"{MODEL}.json", MODEL_DIR / f"{MODEL}_weights.h5")
    for layer in model.layers:  # hls4ml reserves 'input'/'output'; the reference model's last Dense is 'output'
        if layer.name in RESERVED_NAMES:
            layer._name = f"{layer.name}_layer"
    t0 = time.time()
    hls_model, _, stripped = convert_model(cfg, model, hls_dir)
    graph = layer_kinds.from_hls4ml(hls_model, softmax_stripped=stripped)
    graph.save(graph_file)
    log(f"converted RF={rf} in {time.time() - t0:.1f} s (input {graph.input_type})")
    return graph, hls_dir


def generate(graph: Any, out: Path, shared: bool) -> dict[str, Any]:
    from codesign import pipeline

    if out.exists():
        shutil.rmtree(out)
    ctx = shared_adder_graphs() if shared else contextlib.nullcontext()
    t0 = time.time()
    with ctx:
        design = pipeline.generate(graph, out, top=TOP)
    design["generate_seconds"] = round(time.time() - t0, 3)
    return design


def verify(graph: Any, hls_dir: Path, rtl_dir: Path, out: Path, n: int, seed: int) -> dict[str, Any]:
    from codesign import vectors
    from codesign.csim import CSim
    from codesign.verify import verify_design

    out.mkdir(parents=True, exist_ok=True)
    csim = CSim.for_graph(hls_dir, graph)
    arrays = vectors.build(graph, csim, vectors.random_codes(graph, n, seed))
    gold = vectors.golden_agreement(graph, arrays)
    np.savez_compressed(out / "vectors.npz", **arrays)
    res = verify_design(rtl_dir, out / "vectors.npz", out / "sim", seed=seed, build_dir=out / "build")
    res["golden_vs_csim"] = gold
    return res


def synth(rtl_dir: Path, top: str, files: list[str], out: Path) -> dict[str, Any]:
    from codesign.synth import synthesize

    import re

    res = synthesize(rtl_dir, top, files, out, family="xcup", nodsp=False)
    # wall time depends on what else runs on the machine; Yosys' own CPU time less so
    m = re.search(r"CPU: user ([0-9.]+)s system ([0-9.]+)s", (out / "yosys.log").read_text(errors="replace"))
    res["cpu_seconds"] = round(float(m.group(1)) + float(m.group(2)), 2) if m else None
    return res


# ----------------------------------------------------------------------------- tables

def _ratio(a: float, b: float) -> str:
    return f"{a / b:.3f}" if b else "n/a"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m codesign.tools.bench_da4ml", description=__doc__.split("\n\n")[0])
    ap.add_argument("--rf", default="1,2,4,8,16", help="reuse factors (1 = the da4ml comparison)")
    ap.add_argument("--skip-da4ml", action="store_true", help="do not build or run da4ml")
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "bench_da4ml", help="work directory")
    ap.add_argument("--vectors", type=int, default=300, help="random vectors for the RF=1 bit-exact check")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--latency-cutoff", type=float, default=5.0, help="da4ml to_pipeline latency cutoff")
    ap.add_argument("--hard-dc", type=int, default=2, help="da4ml delay constraint per CMVM")
    args = ap.parse_args(argv)
    rfs = sorted({int(r) for r in args.rf.split(",") if r.strip()})
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"model": MODEL, "rf": {}}

    if 1 in rfs:
        graph, hls_dir = convert(1, work)
        design = generate(graph, work / "rtl_ours", shared=True)
        log(f"our RTL: latency {design['latency']}, generated in {design['generate_seconds']} s")
        ver = verify(graph, hls_dir, work / "rtl_ours", work / "verify", args.vectors, args.seed)
        results["verify"] = {k: ver.get(k) for k in ("passed", "vectors_checked", "mismatches", "latency_expected",
                                                     "latency_min", "latency_max", "ii", "golden_vs_csim")}
        log(f"verify: {results['verify']}")
        ours = synth(work / "rtl_ours", TOP, design["files"], work / "synth_ours")
        ours["latency_cycles"] = design["latency"]
        ours["adders"] = sum(layer.get("adders", 0) for layer in design["layers"])
        results["ours"] = ours
        log(f"ours synthesized in {ours['wall_seconds']} s")
        da: dict[str, Any] | None = None
        if args.skip_da4ml:
            results["da4ml_status"] = "skipped (--skip-da4ml)"
        else:
            py, why = ensure_da4ml()
            if py is None:
                results["da4ml_status"] = f"NOT RUN: da4ml could not be installed here: {why}"
            else:
                try:
                    info = run_da4ml(py, graph, work / "da4ml", args.latency_cutoff, args.hard_dc, 5.0)
                    da = synth(Path(info["src"]), info["top"], info["files"], work / "synth_da4ml")
                    da.update(latency_cycles=info["latency_cycles"], da4ml_generate_seconds=info["generate_seconds"],
                              da4ml_cost=info["cost"])
                    results["da4ml"] = da
                    results["da4ml_status"] = f"da4ml {why}, latency_cutoff {args.latency_cutoff}, hard_dc {args.hard_dc}"
                    log(f"da4ml synthesized in {da['wall_seconds']} s")
                except (BenchError, Exception) as e:  # report, keep our figures
                    results["da4ml_status"] = f"NOT RUN: {type(e).__name__}: {e}"
        rows = [["RF=1 (" + MODEL + ")", "ours (adder graph)", "da4ml", "ours/da4ml"]]
        for key, label in (("LUT", "LUT"), ("FF", "FF"), ("DSP", "DSP"), ("CARRY", "CARRY"),
                           ("latency_cycles", "latency (cycles)"), ("wall_seconds", "synth seconds (wall)"),
                           ("cpu_seconds", "synth seconds (Yosys CPU)")):
            a = ours[key]
            b = da[key] if da else None
            if a is None:
                continue
            rows.append([label, f"{a}", f"{b}" if b is not None else "-",
                         _ratio(float(a), float(b)) if b is not None else "-"])
        print()
        print(table(rows))
        print(f"da4ml: {results['da4ml_status']}")
        v = results["verify"]
        print(f"bit-exact check of our RF=1 design vs hls4ml C-sim: passed={v['passed']}, "
              f"{v['vectors_checked']} vectors, {v['mismatches']} mismatches, latency measured "
              f"{v['latency_min']}..{v['latency_max']} (design.json {v['latency_expected']}), II {v['ii']}")
        if da:
            checks = [("LUT <= 0.9 x da4ml", ours["LUT"] <= 0.9 * da["LUT"]), ("0 DSP", ours["DSP"] == 0),
                      ("synth wall time <= da4ml", ours["wall_seconds"] <= da["wall_seconds"]),
                      ("synth CPU time <= da4ml", (ours["cpu_seconds"] or 0) <= (da["cpu_seconds"] or 0))]
            print("targets: " + ", ".join(f"{name}: {'met' if ok else 'NOT met'}" for name, ok in checks))
        print()

    folded = [rf for rf in rfs if rf > 1]
    if folded:
        rows = [["RF", "layer", "nonzeros", "ceil(nz/RF)", "our multipliers", "LUT", "FF", "DSP", "latency", "II"]]
        for rf in folded:
            graph, _ = convert(rf, work)
            design = generate(graph, work / f"rtl_rf{rf}", shared=False)
            res = synth(work / f"rtl_rf{rf}", TOP, design["files"], work / f"synth_rf{rf}")
            entry = {"LUT": res["LUT"], "FF": res["FF"], "DSP": res["DSP"], "CARRY": res["CARRY"],
                     "synth_seconds": res["wall_seconds"], "latency": design["latency"], "ii": design["ii"],
                     "layers": []}
            for layer in design["layers"]:
                if layer["kind"] != "dense":
                    continue
                nz = layer["nonzero_weights"]
                entry["layers"].append({"name": layer["name"], "nonzeros": nz, "bound": math.ceil(nz / rf),
                                        "multipliers": layer["multipliers"]})
                rows.append([str(rf), layer["name"], str(nz), str(math.ceil(nz / rf)), str(layer["multipliers"]),
                             "", "", "", "", ""])
            rows.append([str(rf), "total", "", "", str(sum(x["multipliers"] for x in entry["layers"])),
                         str(res["LUT"]), str(res["FF"]), str(res["DSP"]), str(design["latency"]), str(design["ii"])])
            results["rf"][str(rf)] = entry
            log(f"RF={rf}: synthesized in {res['wall_seconds']} s")
        print(table(rows))
    (work / "bench.json").write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
