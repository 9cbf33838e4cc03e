"""The RTL backend: hardware IR (graph.json) -> synthesizable Verilog + design.json.

One module per layer, built by its kind (:mod:`codesign.layers`; constants inlined), a top with the docs/DESIGN.md interface, the hand-written
primitives from ``codesign/primitives/``, a file list and design.json describing ports,
element types, per-layer cost, latency and II. Output is deterministic: same graph, same bytes.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Any

import jinja2

from codesign import design as design_io
from codesign import graph as hwgraph
from codesign.config import Config
from codesign.errors import RtlGenError
from codesign.graph import Graph
from codesign.layers import RenderOptions, for_layer
from codesign.rundir import require, stage_dir, write_json
from codesign.resources import PRIMITIVES, TEMPLATES as TEMPLATE_ROOT

TEMPLATES = TEMPLATE_ROOT / "rtl"
DESIGN_FORMAT = design_io.FORMAT
DEFAULT_CLOCK_NS = design_io.DEFAULT_CLOCK_NS
_IDENT = re.compile(r"[^A-Za-z0-9_]")


def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True, trim_blocks=False, lstrip_blocks=False,
    )


def verilog_name(name: str) -> str:
    """A Verilog identifier for an hls4ml layer name (deterministic)."""
    ident = _IDENT.sub("_", name)
    return ident if ident[:1].isalpha() else f"l_{ident}"


def generate(graph: Graph, out_dir: Path, top: str = "codesign_top", levels_per_stage: int = 2,
             adder_graph: bool = True, clock_period_ns: float = DEFAULT_CLOCK_NS,
             fold_architecture: str = "auto") -> dict[str, Any]:
    """Write the Verilog and filelist.f for ``graph`` into ``out_dir``; return design.json's contents
    (:func:`codesign.pipeline.generate` writes it). ``clock_period_ns`` is the delay budget the adder
    graphs' pipeline registers are placed by; ``fold_architecture`` (``rtl.fold_architecture``) the
    architecture of layers with reuse factor > 1 (:mod:`codesign.arch.fold`; per layer in
    design.json's ``architecture`` / ``fold_architecture``)."""
    if not graph.layers:
        raise RtlGenError("the model has no layers after the input")
    env = _env()
    out_dir.mkdir(parents=True, exist_ok=True)
    rendered, layer_info, prims = [], [], []
    kinds = [for_layer(layer) for layer in graph.layers]  # refuses an unsupported layer by name
    opts = RenderOptions(levels_per_stage, adder_graph, clock_period_ns, fold_architecture)
    ii = max(1, *(kind.ii(layer) for kind, layer in zip(kinds, graph.layers)))
    src = "paced" if ii > 1 else "in"
    for kind, layer in zip(kinds, graph.layers):
        name = verilog_name(layer.name)
        r = kind.render(env, layer, f"{top}_{name}", opts)
        (out_dir / f"{r.module}.v").write_text(r.text)
        rendered.append(r)
        for p in r.primitives:
            if p not in prims:
                prims.append(p)
        info = {
            "name": layer.name, "kind": layer.kind, "source": layer.source, "module": r.module,
            "n_in": layer.n_in, "n_out": layer.n_out, "in_type": layer.in_type.to_json(),
            "out_type": layer.out_type.to_json(), "reuse_factor": kind.reuse_factor(layer),
            "nonzero_weights": layer.nonzero_weights, "weights": kind.stored_weights(layer),
            "multipliers": r.multipliers, "latency": r.latency, "ii": r.ii,
            "probe": {"data": f"{name}_out_data", "valid": f"{name}_out_valid", "ready": f"{name}_out_ready"},
            **r.extra,
        }
        if layer.accum_type is not None:
            info["accum_type"] = layer.accum_type.to_json()
        layer_info.append(info)
        info["_src"], info["_vname"] = src, name
        src = f"{name}_out"
    latency = sum(r.latency for r in rendered)
    assert ii == max(r.ii for r in rendered)
    in_bits, out_bits = graph.n_in * graph.input_type.width, graph.n_out * graph.output_type.width
    top_text = env.get_template("top.v.j2").render(
        top=top, description=f"{len(graph.layers)}-layer network, {graph.n_in} -> {graph.n_out}",
        n_in=graph.n_in, n_out=graph.n_out, in_type=str(graph.input_type), out_type=str(graph.output_type),
        latency=latency, ii=ii, in_bits=in_bits, out_bits=out_bits, pace_bits=max(1, (ii - 1).bit_length()),
        layers=[{"name": i["_vname"], "module": r.module, "src": i["_src"], "clocked": r.clocked,
                 "out_bits": i["n_out"] * graph.layers[k].out_type.width,
                 "summary": f"{i['name']}: {i['source']}, latency {r.latency}, II {r.ii}"}
                for k, (i, r) in enumerate(zip(layer_info, rendered))],
        last=layer_info[-1]["_vname"], any_clocked=any(r.clocked for r in rendered),
    )
    for i in layer_info:
        del i["_src"], i["_vname"]
    (out_dir / f"{top}.v").write_text(top_text)
    for p in prims:
        src_file = PRIMITIVES / p
        if not src_file.is_file():
            raise RtlGenError(f"RTL primitive {src_file} is missing from the package")
        shutil.copyfile(src_file, out_dir / p)
    files = prims + [f"{r.module}.v" for r in rendered] + [f"{top}.v"]
    (out_dir / "filelist.f").write_text("".join(f"{f}\n" for f in files))
    design = {
        "format": DESIGN_FORMAT, "top": top, "files": files,
        "input": {"n": graph.n_in, "type": graph.input_type.to_json(), "port": "in_data", "bits": in_bits},
        "output": {"n": graph.n_out, "type": graph.output_type.to_json(), "port": "out_data", "bits": out_bits},
        "latency": latency, "ii": ii, "softmax_stripped": graph.softmax_stripped,
        "multipliers": sum(i["multipliers"] for i in layer_info),
        "nonzero_weights": sum(i["nonzero_weights"] for i in layer_info),
        "levels_per_stage": levels_per_stage, "adder_graph": adder_graph, "layers": layer_info,
        "clock_period_ns": clock_period_ns,
    }
    return design


def run(cfg: Config, run_dir: Path) -> dict[str, Any]:
    """The 'rtl' stage: ``<run>/hls/graph.json`` -> ``<run>/rtl/``."""
    hls_res = require(run_dir, "hls", "rtl")
    g = hwgraph.load(Path(run_dir) / "hls" / "graph.json")
    with stage_dir(run_dir, "rtl") as out:
        t0 = time.time()
        design = generate(g, out, levels_per_stage=cfg.rtl.levels_per_stage, adder_graph=cfg.rtl.adder_graph,
                          clock_period_ns=hls_res.get("clock_period_ns", cfg.hls.clock_period_ns),
                          fold_architecture=cfg.rtl.fold_architecture)
        design_io.write(out, design)
        lines = sum(len((out / f).read_text().splitlines()) for f in design["files"])
        result = {"design_file": "design.json", "top": design["top"], "latency": design["latency"],
                  "ii": design["ii"], "multipliers": design["multipliers"], "verilog_lines": lines,
                  "generate_seconds": round(time.time() - t0, 3)}
        write_json(out / "result.json", result)
    return result
