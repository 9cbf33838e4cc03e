"""QoR benchmark (issue 15): our RF 1 design against da4ml 0.6.0 and alkaid on the jet-tagging MLP.

``python -m codesign.tools.bench_da4ml [--skip-da4ml] [--skip-alkaid] [--hard-dc -1] [--work DIR]``

1. Imports ``tests/reference_models/qkeras_3layer`` (16->64->32->32->5, QKeras 6-bit),
   strips the softmax and converts it with the automatic hls4ml configuration (input
   ``fixed<16,6>``, Latency strategy, reuse factor 1), compiling hls4ml's C-sim.
2. Generates our RTL with the default backend (``rtl.adder_graph``: shared adder graphs, registers
   placed by the delay budget) and checks it bit-exactly against the C-sim with the cocotb
   testbench (Verilator, random on-grid vectors, measured latency and II).
3. Generates the anchors' RTL for the same hardware IR (same integer weights, biases and types),
   each in a virtual environment of its own created on demand (:mod:`codesign.tools.anchors`;
   ``.venv-da4ml``, ``.venv-alkaid``):
   - da4ml 0.6.0 with its area-optimal settings: ``HWConfig(1, -1, -1)`` and ``hard_dc=-1``
     (``--hard-dc``; -1, no delay constraint, is the default), pipelined with ``latency_cutoff=5``.
     da4ml has no RND_CONV: the ReLU casts round with RND (same hardware, other ties), so its
     design cannot be bit-exact;
   - alkaid 0.8.2 (da4ml's successor) with its defaults and ``latency_cutoff=5``; it reproduces
     hls4ml's casts of this model exactly (RND_CONV, SAT).
   Each anchor's own emulator of its traced logic is run on the same vectors and compared with the
   C-sim. An anchor whose casts are all exact (alkaid) has its RTL checked by the same cocotb
   testbench, vectors and seed as ours, through a valid/ready wrapper (:func:`anchors.handshake_top`:
   its formats mapped to hls4ml's types, an output FIFO for back-pressure; simulation only, the
   synthesized figures are the anchor's own top); da4ml's RTL is not simulated (it cannot be exact).
4. Synthesizes all three with the same Yosys command (:func:`codesign.synth.synthesize`:
   ``synth_xilinx -family xcup -flatten -noiopad``) and prints LUT/FF/DSP/CARRY, latency in clock
   cycles, generation and Yosys seconds and what was verified, the ratios ours/da4ml, ours/alkaid
   and ours/best (the anchor with the smaller LUT + FF), and the goal of issue 15: LUT <= 0.80x and
   FF <= 0.80x the better anchor at latency <= 8 cycles, 0 DSP, verified bit-exact.

Folded designs (reuse factor > 1) are ``python -m codesign.tools.bench_fold``'s. A missing anchor
(``--skip-da4ml``, ``--skip-alkaid``, or no network to install it) is reported in the table, not a
crash. All figures are measured by this run; they also go to ``<work>/bench.json``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from codesign.tools import anchors
from codesign.tools.tables import log, table

REPO = Path(__file__).resolve().parents[2]
#: hls4ml's public example models, kept in the repository (tests/reference_models/README.md).
MODEL_DIR = REPO / "tests" / "reference_models"
MODEL = "qkeras_3layer"
TOP = "codesign_top"
#: issue 15's goal for RF 1 against the better anchor
GOAL_RATIO = 0.80
GOAL_LATENCY = 8
CLOCK_NS = 5.0


# ----------------------------------------------------------------------------- our flow

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


def generate(graph: Any, out: Path) -> dict[str, Any]:
    """Our RTL with the backend's defaults (RF 1: shared adder graphs); design.json plus its time."""
    from codesign import pipeline

    if out.exists():
        shutil.rmtree(out)
    t0 = time.time()
    design = pipeline.generate(graph, out, top=TOP)
    design["generate_seconds"] = round(time.time() - t0, 3)
    return design


def verify(graph: Any, hls_dir: Path, rtl_dir: Path, out: Path, n: int, seed: int) -> dict[str, Any]:
    """Random on-grid vectors through the C-sim (``out/vectors.npz``), then the cocotb testbench."""
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


def verify_design_only(rtl_dir: Path, vectors_npz: Path, out: Path, seed: int) -> dict[str, Any]:
    """The cocotb testbench on an existing vectors.npz; the fields the report prints."""
    from codesign.verify import verify_design

    res = verify_design(rtl_dir, vectors_npz, out / "sim", seed=seed, build_dir=out / "build")
    return {k: res.get(k) for k in ("passed", "vectors_checked", "mismatches", "latency_expected", "latency_min",
                                    "latency_max", "ii")}


def synth(rtl_dir: Path, top: str, files: list[str], out: Path) -> dict[str, Any]:
    from codesign.synth import synthesize

    res = synthesize(rtl_dir, top, files, out, family="xcup", nodsp=False)
    # wall time depends on what else runs on the machine; Yosys' own CPU time less so
    m = re.search(r"CPU: user ([0-9.]+)s system ([0-9.]+)s", (out / "yosys.log").read_text(errors="replace"))
    res["cpu_seconds"] = round(float(m.group(1)) + float(m.group(2)), 2) if m else None
    return res


# ----------------------------------------------------------------------------- anchors

def run_anchor(anchor: anchors.Anchor, graph: Any, work: Path, options: dict[str, Any],
               vectors: dict[str, np.ndarray], seed: int) -> dict[str, Any]:
    """Generate, emulate and synthesize one anchor; a dict with ``status`` (and figures if it ran)."""
    py, why = anchors.ensure_venv(anchor)
    if py is None:
        return {"status": f"NOT RUN: {anchor.package}=={anchor.version} could not be installed here: {why}"}
    try:
        spec = anchors.make_spec(anchor, graph.to_json(), **options)
        info = anchors.run(anchor, py, spec, work / anchor.name, check_inputs=vectors["inputs"])
        got, want = info.pop("check_outputs"), vectors["expected"]
        if got is None or got.shape != want.shape:
            raise anchors.AnchorError(f"{anchor.name}'s emulator gave {None if got is None else got.shape} "
                                      f"outputs for C-sim's {want.shape}")
        bad = int((got != want).any(axis=1).sum())
        res = synth(Path(info["src"]), info["top"], info["files"], work / f"synth_{anchor.name}")
    except Exception as e:  # report the anchor, keep the other figures
        return {"status": f"NOT RUN: {type(e).__name__}: {e}"}
    emu = f"its emulator {'==' if bad == 0 else '!='} C-sim ({bad}/{len(want)} vectors differ)"
    sim: dict[str, Any] = {}
    if spec["inexact"]:
        rtl = "RTL not simulated (it cannot be bit-exact: inexact casts)"
    elif not info.get("io"):
        rtl = "RTL not simulated (the worker did not report its ports' formats)"
    else:  # same testbench, vectors and seed as ours, through a valid/ready wrapper
        try:
            tb_dir = anchors.testbench_rtl({**info, "clock_ns": CLOCK_NS}, graph.to_json(), work / anchor.name / "tb_rtl")
            out = work / anchor.name / "verify"
            sim = verify_design_only(tb_dir, work / "verify" / "vectors.npz", out, seed)
            rtl = (f"RTL {'PASSED' if sim['passed'] else 'FAILED'} cocotb + Verilator vs C-sim (through a "
                   f"valid/ready wrapper), {sim['vectors_checked']} vectors, {sim['mismatches']} mismatches, "
                   f"latency measured {sim['latency_min']}..{sim['latency_max']}, II {sim['ii']}")
        except Exception as e:  # the figures stand; the check is reported as not done
            rtl = f"RTL simulation NOT RUN: {type(e).__name__}: {e}"
    opts = ", ".join(f"{k} {v}" for k, v in options.items() if k != "clock_ns")
    exact = "exact casts" if not spec["inexact"] else f"inexact casts: {'; '.join(spec['inexact'])}"
    res.update(latency_cycles=info["latency_cycles"], generate_seconds=info["generate_seconds"],
               anchor_cost=info["cost"], reg_bits=info["reg_bits"], inexact_casts=spec["inexact"],
               emulator_mismatched_vectors=bad, emulator_vectors=int(len(want)), rtl_sim=sim,
               passed=bool(sim.get("passed")) and bad == 0, verified=f"{rtl}; {emu}",
               status=f"{anchor.package} {why}, {opts}; {exact}")
    log(f"{anchor.name}: generated in {info['generate_seconds']} s, synthesized in {res['wall_seconds']} s")
    return res


# ----------------------------------------------------------------------------- tables

def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.3f}" if a is not None and b else "-"


def goals(ours: dict[str, Any], best: dict[str, Any] | None, verified: bool) -> list[tuple[str, bool | None]]:
    """Issue 15's RF 1 goal, item by item: True met, False not met, None cannot be judged."""
    lut = ours["LUT"] <= GOAL_RATIO * best["LUT"] if best else None
    ff = ours["FF"] <= GOAL_RATIO * best["FF"] if best else None
    return [(f"LUT <= {GOAL_RATIO:.2f} x better anchor", lut), (f"FF <= {GOAL_RATIO:.2f} x better anchor", ff),
            (f"latency <= {GOAL_LATENCY} cycles", ours["latency_cycles"] <= GOAL_LATENCY),
            ("0 DSP", ours["DSP"] == 0), ("verified bit-exact vs C-sim", verified)]


def report(ours: dict[str, Any], found: dict[str, dict[str, Any]]) -> str:
    """The printed table, ratios and goal line (``found``: anchor name -> run_anchor's dict)."""
    ran = {k: v for k, v in found.items() if "LUT" in v}
    best_name = min(ran, key=lambda k: ran[k]["LUT"] + ran[k]["FF"]) if ran else None
    best = ran[best_name] if best_name else None
    names = list(found)
    rows = [["RF 1, " + MODEL, "ours", *names, *(f"ours/{n}" for n in names),
             f"ours/best ({best_name or 'none'})"]]
    for key, label in (("LUT", "LUT"), ("FF", "FF"), ("DSP", "DSP"), ("CARRY", "CARRY"),
                       ("latency_cycles", "latency (clock cycles)"), ("generate_seconds", "generation s"),
                       ("wall_seconds", "Yosys s (wall)"), ("cpu_seconds", "Yosys s (CPU)")):
        a = ours.get(key)
        vals = [found[n].get(key) for n in names]
        rows.append([label, str(a), *("-" if v is None else str(v) for v in vals),
                     *(_ratio(a, v) for v in vals), _ratio(a, best.get(key)) if best else "-"])
    lines = [table(rows), "", f"verified: ours: {ours['verified']}"]
    lines += [f"verified: {n}: {found[n].get('verified', '-')}" for n in names]
    lines += [f"{n}: {found[n]['status']}" for n in names]
    verified = bool(ours.get("passed"))
    items = goals(ours, best, verified)
    state = {True: "met", False: "NOT met", None: "cannot be judged (no anchor ran)"}
    overall = "met" if all(ok for _, ok in items) else ("cannot be judged" if any(ok is None for _, ok in items)
                                                         else "NOT met")
    lines.append(f"goal (issue 15, RF 1 vs the better anchor, {best_name or 'none'}): {overall} — "
                 + ", ".join(f"{name}: {state[ok]}" for name, ok in items))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m codesign.tools.bench_da4ml", description=__doc__.split("\n\n")[0])
    ap.add_argument("--skip-da4ml", action="store_true", help="do not install or run da4ml")
    ap.add_argument("--skip-alkaid", action="store_true", help="do not install or run alkaid")
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "bench_da4ml", help="work directory")
    ap.add_argument("--vectors", type=int, default=300, help="random vectors of the bit-exact checks")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--latency-cutoff", type=float, default=5.0, help="the anchors' pipelining latency cutoff")
    ap.add_argument("--hard-dc", type=int, default=-1,
                    help="da4ml's delay constraint per CMVM (-1: none, its area-optimal setting)")
    ap.add_argument("--rf", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.rf is not None:
        ap.error("--rf: folded designs moved to `python -m codesign.tools.bench_fold --rf ...`; "
                 "this benchmark compares RF 1 with the anchors")
    if args.vectors < 1:
        ap.error(f"--vectors {args.vectors}: the bit-exact checks need at least 1 vector")
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)

    graph, hls_dir = convert(1, work)
    design = generate(graph, work / "rtl_ours")
    log(f"our RTL: latency {design['latency']}, generated in {design['generate_seconds']} s")
    ver = verify(graph, hls_dir, work / "rtl_ours", work / "verify", args.vectors, args.seed)
    v = {k: ver.get(k) for k in ("passed", "vectors_checked", "mismatches", "latency_expected", "latency_min",
                                 "latency_max", "ii", "golden_vs_csim")}
    log(f"verify: {v}")
    ours = synth(work / "rtl_ours", TOP, design["files"], work / "synth_ours")
    ours.update(latency_cycles=design["latency"], generate_seconds=design["generate_seconds"],
                adders=sum(layer.get("adders", 0) for layer in design["layers"]), passed=bool(v["passed"]),
                verified=(f"{'PASSED' if v['passed'] else 'FAILED'} cocotb + Verilator vs C-sim, "
                          f"{v['vectors_checked']} vectors, {v['mismatches']} mismatches, latency measured "
                          f"{v['latency_min']}..{v['latency_max']} (design.json {v['latency_expected']}), II {v['ii']}"))
    log(f"ours synthesized in {ours['wall_seconds']} s")

    with np.load(work / "verify" / "vectors.npz") as z:
        vecs = {"inputs": z["inputs"], "expected": z["expected"]}
    found: dict[str, dict[str, Any]] = {}
    common = {"latency_cutoff": args.latency_cutoff, "clock_ns": CLOCK_NS}
    for anchor, skip, options in ((anchors.DA4ML, args.skip_da4ml, {"hard_dc": args.hard_dc, **common}),
                                  (anchors.ALKAID, args.skip_alkaid, common)):
        found[anchor.name] = ({"status": f"skipped (--skip-{anchor.name})"} if skip
                              else run_anchor(anchor, graph, work, options, vecs, args.seed))
    text = report(ours, found)
    print()
    print(text)
    (work / "bench.json").write_text(json.dumps({"model": MODEL, "verify": v, "ours": ours, **found,
                                                 "report": text}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
