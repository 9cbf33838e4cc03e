"""Benchmarks that print measured figures (``make bench`` / ``python -m codesign.tools.bench``).

Kept out of the test suite: they take minutes and their figures depend on the machine.

  python -m codesign.tools.bench flow     per-stage wall times of the default flow (cold, then cached)
  python -m codesign.tools.bench rtlgen   RTL generation time and Verilog line count, RF 1 / 4 / 32
  python -m codesign.tools.bench verify   Verilator build cold before (cocotb's own settings) / after
                                          (codesign's), cached, an unchanged re-verify, vectors/s of the
                                          cocotb and the compiled testbench, hls4ml's C-sim compile time
                                          (--run DIR: any run directory, e.g. an imported model's); then
                                          the same for the float KERAS_3layer, its cold build against
                                          its C-sim compile side by side (--no-jet skips it)
  python -m codesign.tools.bench sweep    a 12-point sweep (RF x bits x sparsity): per-point and total times
  python -m codesign.tools.bench gen      RTL generation seconds and lines: qkeras_3layer at RF 1-16, a float
                                          batch-norm MLP (codesign.tools.bench_gen; its own options there)
  python -m codesign.tools.bench all      flow, rtlgen, verify, gen (the sweep is separate: it takes longest)

Related long runs with their own commands: ``python -m codesign.tools.conformance`` (every reuse factor,
test set + 10,000 random vectors), ``python -m codesign.tools.fuzz --cases 500`` (random models),
``python -m codesign.tools.bench_da4ml`` (RF 1 QoR against da4ml and alkaid),
``python -m codesign.tools.bench_fold`` (area per reuse factor).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _line(name: str, **figures: Any) -> None:
    print(f"{name}: " + ", ".join(f"{k}={v}" for k, v in figures.items()), flush=True)


def bench_flow(work: Path) -> Path:
    """The whole default flow from nothing, then again (every stage cached)."""
    from codesign.config import Config
    from codesign.flow import run_flow

    run = work / "flow"
    cfg = Config().replace(output_dir=str(run))
    t0 = time.time()
    res = run_flow(cfg, run)
    total = time.time() - t0
    _line("flow (cold)", total_seconds=round(total, 1), **{f"{k}_s": v for k, v in res["seconds"].items()})
    sim = res["sim"]
    _line("flow result", passed=sim["passed"], vectors=sim["vectors_checked"], mismatches=sim["mismatches"],
          latency=sim["latency_min"], ii=sim["ii"], accuracy=sim["accuracy"], LUT=res["synth"].get("LUT"))
    t0 = time.time()
    again = run_flow(cfg, run)
    _line("flow (cached)", total_seconds=round(time.time() - t0, 1), stages_rerun=len(again["ran"]))
    return run


def bench_rtlgen(run: Path) -> None:
    """Generation time and size of the default model's RTL at several reuse factors."""
    from dataclasses import replace

    from codesign import graph as hwgraph
    from codesign import rtlgen
    from codesign.layers import dense

    g = hwgraph.load(run / "hls" / "graph.json")
    for rf in (1, 4, 32):
        layers = tuple(replace(layer, reuse_factor=rf) if layer.kind == dense.KIND.kind else layer for layer in g.layers)
        g_rf = replace(g, layers=layers)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            design = rtlgen.generate(g_rf, Path(tmp))
            dt = time.perf_counter() - t0
            lines = sum(len((Path(tmp) / f).read_text().splitlines()) for f in design["files"])
        _line(f"rtlgen rf={rf}", seconds=round(dt, 3), verilog_lines=lines, latency=design["latency"],
              ii=design["ii"], multipliers=design["multipliers"])


def bench_verify_default(run: Path, work: Path) -> None:
    """The run's Verilator build before (cocotb's own settings) and after (codesign's), cached and
    unchanged rebuilds, both testbenches' vectors/s; and hls4ml's C-sim compile of the same model,
    side by side."""
    from codesign.verify import bench_verify

    figures = bench_verify(run / "rtl", run / "sim" / "vectors.npz", work / "verify_bench",
                           print_fn=lambda s: print(s, flush=True))
    from codesign import fastsim

    inputs = np.load(run / "sim" / "vectors.npz")["inputs"]
    shutil.rmtree(work / "fastsim", ignore_errors=True)  # a build from scratch (the runtime from the cache)
    fast = fastsim.run_stream(run / "rtl", inputs, build_dir=work / "fastsim")
    _line("compiled stream testbench (fastsim)", build_seconds=fast["build_seconds"], vectors=len(inputs),
          vectors_per_second=round(len(inputs) / fast["run_seconds"], 1) if fast["run_seconds"] else None,
          cycles_per_second=fast["cycles_per_second"])
    csim_s = csim_compile_seconds(run, work / "csim_bench")
    _line("hls4ml C-sim compile of the same model", seconds=csim_s)
    cold = figures["build_cold_seconds"]
    _line("goal: demo cold Verilator build <= 15 s (a design never built, no ccache; Verilator's runtime "
          "compiled once per machine)", build_cold_seconds=cold,
          first_build_on_machine_seconds=figures["build_first_on_machine_seconds"], met="yes" if cold <= 15 else "NO")
    _line("goal: unchanged re-verify <= 5 s", seconds=figures["reverify_unchanged_seconds"],
          met="yes" if figures["reverify_unchanged_seconds"] <= 5 else "NO")


#: hls4ml's public float jet-tagging MLP (16->64->32->32->5, Keras float weights: hls4ml's default
#: fixed<16,6> everywhere), the issue-17 model whose Verilator build is set against its C-sim compile.
JET_MODEL = Path(__file__).resolve().parents[2] / "tests" / "reference_models" / "KERAS_3layer"


def bench_verify_jet(work: Path, vectors: int = 2000) -> None:
    """The float KERAS_3layer: hls4ml's C-sim compile, our RTL generation, then the same Verilator
    build figures as the default model's (:func:`codesign.verify.bench_verify`), the build set side by
    side against the C-sim compile of the same model."""
    from codesign import config, pipeline
    from codesign import vectors as vec
    from codesign.model_io import load_model
    from codesign.verify import bench_verify

    jet = work / "jet"
    model = load_model(JET_MODEL.with_suffix(".json"), JET_MODEL.parent / f"{JET_MODEL.name}_weights.h5")
    conv = pipeline.convert(config.from_dict({}), model, jet / "hls", compile=False)
    t0 = time.perf_counter()
    conv.hls_model.compile()
    csim_s = round(time.perf_counter() - t0, 1)
    graph = conv.graph
    arrays = pipeline.reference(graph, conv.csim(), vec.random_codes(graph, vectors, seed=1))
    np.savez_compressed(jet / "vectors.npz", **arrays)
    t0 = time.perf_counter()
    design = pipeline.generate(graph, jet / "rtl")
    gen_s = round(time.perf_counter() - t0, 1)
    lines = sum(len((jet / "rtl" / f).read_text().splitlines()) for f in design["files"])
    _line("KERAS_3layer (float, fixed<16,6>)", rtl_generate_seconds=gen_s, verilog_lines=lines,
          latency=design["latency"], csim_compile_seconds=csim_s)
    fig = bench_verify(jet / "rtl", jet / "vectors.npz", work / "verify_bench_jet",
                       print_fn=lambda line: print(f"KERAS_3layer {line}", flush=True))
    cold = fig["build_cold_seconds"]
    _line("KERAS_3layer goal: cold Verilator build (no ccache, runtime compiled once per machine) <= hls4ml "
          "C-sim compile", build_cold_seconds=cold, first_build_on_machine_seconds=fig["build_first_on_machine_seconds"],
          csim_compile_seconds=csim_s, met="yes" if cold <= csim_s else "NO")


def csim_compile_seconds(run: Path, work: Path) -> float:
    """Seconds hls4ml takes to compile the C-sim of the run's model (conversion not counted)."""
    from codesign import config, pipeline
    from codesign.model_io import load_model

    cfg = config.load(run / "config.yaml")
    conv = pipeline.convert(cfg, load_model(run / "model" / "model.h5"), work, compile=False)
    t0 = time.perf_counter()
    conv.hls_model.compile()
    return round(time.perf_counter() - t0, 1)


#: The README's 12-point sweep (its plot docs/sweep_pareto_lut.png); bench_search runs it against the search.
README_GRID = {"hls.reuse_factor": [1, 4, 16], "model.bits": [4, 6], "pruning.target_sparsity": [0.5, 0.8]}


def bench_sweep(work: Path) -> None:
    from codesign import sweep

    spec = sweep.spec_from_dict({
        "base": {},
        "grid": README_GRID,
    }, out=work / "sweep")
    t0 = time.time()
    rows = sweep.run_sweep(spec, progress=lambda s: print(s, flush=True))
    ok = [r for r in rows if r.get("status") == "ok"]
    _line("sweep", points=len(rows), ok=len(ok), total_seconds=round(time.time() - t0, 1),
          report=str(work / "sweep" / "report.html"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m codesign.tools.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["all", "flow", "rtlgen", "verify", "sweep", "gen"])
    p.add_argument("--work", help="work directory (default: a fresh temporary one, removed afterwards)")
    p.add_argument("--run", help="an existing run directory for rtlgen/verify (default: run the flow first)")
    p.add_argument("--no-jet", action="store_true", help="verify: skip the float KERAS_3layer side-by-side")
    args = p.parse_args(argv)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="codesign-bench-"))
    try:
        run = Path(args.run) if args.run else None
        if args.what in ("all", "flow") or (run is None and args.what in ("rtlgen", "verify")):
            run = bench_flow(work)
        if args.what in ("all", "rtlgen"):
            assert run is not None
            bench_rtlgen(run)
        if args.what in ("all", "verify"):
            assert run is not None
            bench_verify_default(run, work)
            if not args.no_jet:
                bench_verify_jet(work)
        if args.what == "sweep":
            bench_sweep(work)
        if args.what in ("all", "gen"):  # generation time of wide-type models (issue 15)
            from codesign.tools import bench_gen

            bench_gen.run(list(bench_gen.DEFAULT_RFS), None, work / "gen")
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
