"""The in-memory pipeline: convert -> extract -> reference -> golden -> generate -> lint -> simulate.

The flow's stages wrap these steps with a run directory and a cache; the fuzzer, the conformance
run, the benchmarks and the tests call them directly. Each step does one thing and returns what the
next needs; none of them writes outside the directory it is given.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from codesign import design as design_io
from codesign.config import Config
from codesign.csim import CSim
from codesign.graph import Graph


@dataclass
class Converted:
    """A model converted by hls4ml: its ModelGraph, our hardware IR and the C-sim directory."""

    hls_model: Any
    graph: Graph
    hls_dir: Path
    hls_config: dict[str, Any]

    def csim(self) -> CSim:
        """hls4ml's compiled bit-accurate C simulation (the reference)."""
        return CSim.for_graph(self.hls_dir, self.graph)


def convert(cfg: Config, model: Any, hls_dir: Path, *, compile: bool = True) -> Converted:
    """hls4ml conversion (and C-sim compilation unless ``compile`` is false) plus IR extraction."""
    from codesign.convert import convert_model
    from codesign.layers import from_hls4ml

    hls_model, hls_cfg, stripped = convert_model(cfg, model, Path(hls_dir), compile=compile)
    return Converted(hls_model, from_hls4ml(hls_model, softmax_stripped=stripped), Path(hls_dir), hls_cfg)


def reference(graph: Graph, csim: CSim, inputs: np.ndarray,
              labels: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Test vectors: inputs, the C-sim's expected outputs and the golden model's per-layer codes."""
    from codesign import vectors

    return vectors.build(graph, csim, inputs, labels)


def golden_agreement(graph: Graph, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """How the integer golden model's outputs agree with the C-sim's (mismatched vectors / outputs)."""
    from codesign import vectors

    return vectors.golden_agreement(graph, arrays)


def generate(graph: Graph, rtl_dir: Path, *, top: str = "codesign_top", levels_per_stage: int = 2,
             adder_graph: bool = True, clock_period_ns: float = design_io.DEFAULT_CLOCK_NS,
             fold_architecture: str = "auto", fuse_activations: bool = True) -> dict[str, Any]:
    """The RTL backend: Verilog, filelist.f and design.json in ``rtl_dir``; returns design.json.
    ``fold_architecture`` is rtl.fold_architecture: how layers with RF > 1 are folded;
    ``fuse_activations`` rtl.fuse_activations."""
    from codesign import rtlgen

    design = rtlgen.generate(graph, Path(rtl_dir), top=top, levels_per_stage=levels_per_stage,
                             adder_graph=adder_graph, clock_period_ns=clock_period_ns,
                             fold_architecture=fold_architecture, fuse_activations=fuse_activations)
    design_io.write(rtl_dir, design)
    return design


def lint(rtl_dir: Path, design: dict[str, Any], log_path: Path) -> None:
    """``verilator --lint-only -Wall`` on the design; raises ToolError with the warnings."""
    from codesign import simtools

    simtools.verilator_lint([Path(rtl_dir) / f for f in design["files"]], design["top"], log_path)


def simulate(rtl_dir: Path, design: dict[str, Any], arrays: dict[str, np.ndarray], work: Path, *,
             simulator: str = "verilator", seed: int = 1, waves_on_failure: bool = False) -> dict[str, Any]:
    """Stream ``arrays`` through the cocotb testbench; verify.json's contents plus ``problems``: every
    way the run falls short of bit-exact with the latency and II design.json promises (empty: passed)."""
    from codesign.verify import verify_design

    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    npz = work / "vectors.npz"
    np.savez(npz, **arrays)
    t0 = time.monotonic()
    out = verify_design(rtl_dir, npz, work / f"sim_{simulator}", simulator=simulator, seed=seed,
                        waves_on_failure=waves_on_failure)
    out["seconds"] = round(time.monotonic() - t0, 3)
    problems = list(out.get("failures") or [])
    if out.get("mismatches"):
        problems.append(f"{out['mismatches']} mismatching vectors, first {out.get('first_mismatch')}")
    lat = (out.get("latency_min"), out.get("latency_max"))
    if lat != (design["latency"], design["latency"]):
        problems.append(f"measured latency {lat} != design.json {design['latency']}")
    if out.get("ii") != design["ii"]:
        problems.append(f"measured II {out.get('ii')} != design.json {design['ii']}")
    if out.get("vectors_checked") != len(arrays["inputs"]):
        problems.append(f"checked {out.get('vectors_checked')} of {len(arrays['inputs'])} vectors")
    if not out.get("passed") and not problems:
        problems.append("testbench did not pass")
    out["problems"] = problems
    return out
