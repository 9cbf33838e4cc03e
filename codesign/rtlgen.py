"""The RTL backend: hardware IR (graph.json) -> synthesizable Verilog + design.json.

One module per layer (constants inlined), a top with the docs/DESIGN.md interface, the hand-written
primitives from ``codesign/primitives/``, a file list and design.json describing ports,
element types, per-layer cost, latency and II. Output is deterministic: same graph, same bytes.
"""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from codesign import design as design_io
from codesign import graph as hwgraph
from codesign import ipcore
from codesign.config import Config
from codesign.errors import RtlGenError
from codesign.fixedpoint import OVERFLOW_CODE, QUANT_CODE
from codesign.graph import Graph, Layer
from codesign.arch import adder_graph as adder_graph_mod
from codesign.arch import dense
from codesign.arch import pool as pool_mod
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


@dataclass
class _Rendered:
    module: str
    text: str
    latency: int
    ii: int
    multipliers: int
    clocked: bool
    primitives: tuple[str, ...]
    extra: dict[str, Any]


def _render_layer(env: jinja2.Environment, layer: Layer, module: str, levels_per_stage: int,
                  shared: bool, clock_ns: float) -> _Rendered:
    common = dict(
        name=module, in_bits=layer.n_in * layer.in_type.width, out_bits=layer.n_out * layer.out_type.width,
        n_out=layer.n_out,
        comment=f"layer {layer.name} ({layer.source}): {layer.n_in} x {layer.in_type} -> {layer.n_out} x {layer.out_type}",
    )
    conv: dict[str, Any] = {}
    if layer.kind == "conv":
        g = layer.geometry
        assert g is not None and layer.weights is not None
        if layer.strategy != "latency":
            raise RtlGenError(f"layer {layer.name}: convolutions are generated for hls4ml's Latency strategy only "
                              f"(got {layer.strategy!r})", hint="set hls.layer_strategy for this layer to Latency")
        k, n_filt = layer.weights.shape
        if layer.reuse_factor > k * n_filt:
            raise RtlGenError(f"layer {layer.name}: reuse factor {layer.reuse_factor} is outside 1..{k * n_filt} "
                              f"(kernel n_in*n_out = {k}*{n_filt})")
        kernel_nonzero = layer.nonzero_weights
        layer = hwgraph.dense_equivalent(layer)
        conv = {"pixels": g.pixels, "kernel": [g.k_h, g.k_w, g.n_chan, n_filt], "stride": [g.stride_h, g.stride_w],
                "padding": [g.pad_top, g.pad_left], "kernel_nonzero_weights": kernel_nonzero,
                "expanded_nonzero_weights": layer.nonzero_weights}
    if layer.kind == "pool":
        m, cost = pool_mod.build(layer, module)
        text = env.get_template("dense_parallel.v.j2").render(m=m, n_stages=m.n_stages, **common)
        g = layer.geometry
        assert g is not None
        extra = {"architecture": "parallel comparator trees" if layer.pool_op == "max" else "parallel adder trees",
                 "pool_op": layer.pool_op, "window": [g.k_h, g.k_w], "stride": [g.stride_h, g.stride_w],
                 "operators": cost.adders}
        return _Rendered(module, text, cost.latency, cost.ii, 0, True, ("fxp_cast.v",), extra)
    if layer.kind == "dense":
        if layer.reuse_factor < 1 or layer.reuse_factor > layer.n_in * layer.n_out:
            raise RtlGenError(
                f"layer {layer.name}: reuse factor {layer.reuse_factor} is outside 1..{layer.n_in * layer.n_out} "
                f"(n_in*n_out)"
            )
        if layer.reuse_factor == 1 and dense.needs_sequential(layer):
            m, cost = dense.sequential(layer, module)
            text = env.get_template("dense_parallel.v.j2").render(m=m, n_stages=m.n_stages, **common)
            extra = {"architecture": "sequential saturating", "adders": cost.adders, "pipeline_stages": m.n_stages}
        elif layer.reuse_factor == 1 or layer.nonzero_weights == 0:
            # power-of-two products are wire shifts already: nothing for an adder graph to share
            use_graph = shared and layer.product == "exact" and not dense.needs_product_rounding(layer)
            if use_graph:  # registers placed by the delay budget of the target clock
                m, cost = adder_graph_mod.parallel_shared(layer, module, levels_per_stage, clock_ns=clock_ns)
            else:
                m, cost = dense.parallel(layer, module, levels_per_stage)
            text = env.get_template("dense_parallel.v.j2").render(m=m, n_stages=m.n_stages, **common)
            extra = {"architecture": "parallel", "adder_graph": use_graph, "adders": cost.adders,
                     "pipeline_stages": m.n_stages}
        else:
            m, cost, info = dense.folded(layer, module)
            text = env.get_template("dense_folded.v.j2").render(m=m, R=info["R"], lanes=info["lanes"],
                                                                 tw=info["tw"], **common)
            extra = {"architecture": "folded", "lanes": info["lanes"]}
        if conv:
            # every output pixel has its own copy of the kernel's products (fully parallel over
            # pixels); R > 1 folds the products of all pixels onto ceil(nonzeros / R) lanes
            extra = {**extra, "architecture": f"conv ({extra['architecture']} over {conv['pixels']} pixels)", **conv}
        # ii is what the layer promises at full rate; latency counts clock edges input -> output.
        return _Rendered(module, text, cost.latency, cost.ii, cost.multipliers, True, ("fxp_cast.v",), extra)
    if layer.kind in ("relu", "cast"):
        if layer.n_in != layer.n_out:
            raise RtlGenError(f"layer {layer.name}: element-wise {layer.kind} with n_in != n_out")
        t_in, t_out = layer.in_type, layer.out_type
        prim = "fxp_relu" if layer.kind == "relu" else "fxp_cast"
        text = env.get_template("elementwise.v.j2").render(
            kind=layer.kind, prim=prim, n=layer.n_in, w_in=t_in.width, f_in=t_in.frac, s_in=int(t_in.signed),
            w_out=t_out.width, f_out=t_out.frac, s_out=int(t_out.signed), rnd=QUANT_CODE[t_out.rounding],
            ovf=OVERFLOW_CODE[t_out.overflow], **common,
        )
        prims = ("fxp_cast.v", "fxp_relu.v") if prim == "fxp_relu" else ("fxp_cast.v",)
        return _Rendered(module, text, 0, 1, 0, False, prims, {"architecture": "combinational"})
    raise RtlGenError(
        f"layer {layer.name}: {layer.source or layer.kind} is not supported by the RTL backend; "
        f"supported: Dense, Conv1D/Conv2D, Max/AveragePooling1D/2D, Flatten, BatchNormalization, ReLU / "
        f"quantized ReLU, linear activation (a final Softmax is stripped when hls.strip_softmax is true)"
    )


def _weight_count(layer: Layer) -> int:
    """Stored weights: n_in*n_out of a Dense, the kernel of a conv, none elsewhere."""
    return int(layer.weights.size) if layer.kind in ("dense", "conv") and layer.weights is not None else 0


def _layer_ii(layer: Layer) -> int:
    """Cycles between vectors the layer accepts: R for a folded Dense, 1 otherwise."""
    if layer.kind in ("dense", "conv") and layer.reuse_factor > 1 and layer.nonzero_weights > 0:
        return layer.reuse_factor
    return 1


def generate(graph: Graph, out_dir: Path, top: str = "codesign_top", levels_per_stage: int = 2,
             adder_graph: bool = True, clock_period_ns: float = DEFAULT_CLOCK_NS) -> dict[str, Any]:
    """Write the Verilog and filelist.f for ``graph`` into ``out_dir``; return design.json's contents
    (:func:`codesign.pipeline.generate` writes it). ``clock_period_ns`` is the delay budget the adder
    graphs' pipeline registers are placed by."""
    if not graph.layers:
        raise RtlGenError("the model has no layers after the input")
    env = _env()
    out_dir.mkdir(parents=True, exist_ok=True)
    rendered, layer_info, prims = [], [], []
    ii = max(1, *(_layer_ii(layer) for layer in graph.layers))
    src = "paced" if ii > 1 else "in"
    for layer in graph.layers:
        name = verilog_name(layer.name)
        r = _render_layer(env, layer, f"{top}_{name}", levels_per_stage, adder_graph, clock_period_ns)
        (out_dir / f"{r.module}.v").write_text(r.text)
        rendered.append(r)
        for p in r.primitives:
            if p not in prims:
                prims.append(p)
        info = {
            "name": layer.name, "kind": layer.kind, "source": layer.source, "module": r.module,
            "n_in": layer.n_in, "n_out": layer.n_out, "in_type": layer.in_type.to_json(),
            "out_type": layer.out_type.to_json(), "reuse_factor": layer.reuse_factor if layer.kind in ("dense", "conv") else None,
            "nonzero_weights": layer.nonzero_weights, "weights": _weight_count(layer),
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
        "multipliers": sum(i["multipliers"] for i in layer_info if i["kind"] in ("dense", "conv")),
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
                          clock_period_ns=hls_res.get("clock_period_ns", cfg.hls.clock_period_ns))
        ipcore.package(out, design)  # writes design.json once, with its ip_files
        lines = sum(len((out / f).read_text().splitlines()) for f in design["files"])
        result = {"design_file": "design.json", "top": design["top"], "latency": design["latency"],
                  "ii": design["ii"], "multipliers": design["multipliers"], "verilog_lines": lines,
                  "generate_seconds": round(time.time() - t0, 3)}
        write_json(out / "result.json", result)
    return result
