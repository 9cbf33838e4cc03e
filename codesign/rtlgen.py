"""The RTL backend: hardware IR (graph.json) -> synthesizable Verilog + design.json.

One module per layer, built by its kind (:mod:`codesign.layers`; constants inlined), a top with the docs/DESIGN.md interface, the hand-written
primitives from ``codesign/primitives/``, a file list and design.json describing ports,
element types, per-layer cost, latency and II. Output is deterministic: same graph, same bytes.
"""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import jinja2

from codesign import design as design_io
from codesign import graph as hwgraph
from codesign.arch import stream as stream_arch
from codesign.arch import stream_timing
from codesign.config import Config
from codesign.errors import RtlGenError
from codesign.graph import Graph, Layer
from codesign.layers import LayerKind, Rendered, RenderOptions, for_layer
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
             fold_architecture: str = "auto", multipliers: str = "auto",
             fuse_activations: bool = True) -> dict[str, Any]:
    """Write the Verilog and filelist.f for ``graph`` into ``out_dir``; return design.json's contents
    (:func:`codesign.pipeline.generate` writes it). ``clock_period_ns`` is the delay budget the adder
    graphs' pipeline registers are placed by; ``fold_architecture`` (``rtl.fold_architecture``) the
    architecture of layers with reuse factor > 1 (:mod:`codesign.arch.fold`; per layer in
    design.json's ``architecture`` / ``fold_architecture``), ``multipliers`` (``rtl.multipliers``) how
    their general multipliers are built (:data:`codesign.arch.dense.MULTIPLIERS`). An io_stream graph becomes a streaming
    dataflow (:func:`_stream_chain`), anything else one module per layer at II = the slowest layer's,
    where ``fuse_activations`` (``rtl.fuse_activations``) lets a reuse-factor-1 Dense / conv apply the
    ReLU / cast after it before its output register (design.json: ``fused_activation`` on the layer,
    ``fused_into`` on the activation)."""
    if not graph.layers:
        raise RtlGenError("the model has no layers after the input")
    env = _env()
    out_dir.mkdir(parents=True, exist_ok=True)
    kinds = [for_layer(layer) for layer in graph.layers]  # refuses an unsupported layer by name
    opts = RenderOptions(levels_per_stage, adder_graph, clock_period_ns, fold_architecture, multipliers,
                         fuse_activations)
    build = _stream_chain if graph.io_type == "io_stream" else _parallel_chain
    chain, layer_info, timing = build(env, graph, kinds, top, opts)
    prims: list[str] = []
    for stage in chain:
        (out_dir / f"{stage.r.module}.v").write_text(stage.r.text)
        prims.extend(p for p in stage.r.primitives if p not in prims)
    beats = timing.get("beats", 1)
    in_bits, out_bits = graph.n_in // beats * graph.input_type.width, graph.n_out * graph.output_type.width
    top_text = env.get_template("top.v.j2").render(
        top=top, description=f"{len(graph.layers)}-layer network, {graph.n_in} -> {graph.n_out}",
        n_in=graph.n_in // beats, n_out=graph.n_out, in_type=str(graph.input_type), out_type=str(graph.output_type),
        latency=timing["latency"], ii=timing["ii"], latency_last=timing.get("latency_after_last_pixel"),
        beats=beats, beat_bits=max(1, (beats - 1).bit_length()), in_bits=in_bits, out_bits=out_bits,
        pace_bits=max(1, (timing["ii"] - 1).bit_length()),
        layers=[{"name": st.wire, "module": st.r.module, "src": st.src, "clocked": st.r.clocked,
                 "out_bits": st.out_bits, "summary": st.summary} for st in chain],
        last=chain[-1].wire, any_clocked=any(st.r.clocked for st in chain),
    )
    (out_dir / f"{top}.v").write_text(top_text)
    for p in prims:
        src_file = PRIMITIVES / p
        if not src_file.is_file():
            raise RtlGenError(f"RTL primitive {src_file} is missing from the package")
        shutil.copyfile(src_file, out_dir / p)
    files = prims + [f"{st.r.module}.v" for st in chain] + [f"{top}.v"]
    (out_dir / "filelist.f").write_text("".join(f"{f}\n" for f in files))
    inp = {"n": graph.n_in // beats, "type": graph.input_type.to_json(), "port": "in_data", "bits": in_bits}
    if beats > 1:
        inp["beats"] = beats
    design = {
        "format": DESIGN_FORMAT, "top": top, "files": files,
        "input": inp,
        "output": {"n": graph.n_out, "type": graph.output_type.to_json(), "port": "out_data", "bits": out_bits},
        **timing, "softmax_stripped": graph.softmax_stripped,
        "multipliers": sum(i["multipliers"] for i in layer_info),
        "nonzero_weights": sum(i["nonzero_weights"] for i in layer_info),
        "levels_per_stage": levels_per_stage, "adder_graph": adder_graph, "layers": layer_info,
        "clock_period_ns": clock_period_ns,
    }
    design.pop("beats", None)
    return design


@dataclass
class _Stage:
    """One module instance of the top's chain."""

    r: Rendered
    wire: str  #: prefix of its output wires in the top (<wire>_out_valid / _ready / _data)
    src: str  #: prefix of the wires it reads ("in", "paced" or the previous stage's <wire>_out)
    out_bits: int
    summary: str


def _layer_info(layer: Layer, kind: LayerKind, rendered: list[Rendered], wire: str) -> dict[str, Any]:
    """A layer's entry in design.json (its last module's figures and fields; ``modules`` all)."""
    last = rendered[-1]
    info = {
        "name": layer.name, "kind": layer.kind, "source": layer.source, "module": last.module,
        "n_in": layer.n_in, "n_out": layer.n_out, "in_type": layer.in_type.to_json(),
        "out_type": layer.out_type.to_json(), "reuse_factor": kind.reuse_factor(layer),
        "nonzero_weights": layer.nonzero_weights, "weights": kind.stored_weights(layer),
        "multipliers": sum(r.multipliers for r in rendered), "latency": sum(r.latency for r in rendered),
        "ii": max(r.ii for r in rendered),
        "probe": {"data": f"{wire}_out_data", "valid": f"{wire}_out_valid", "ready": f"{wire}_out_ready"},
    }
    for r in rendered:
        info.update(r.extra)
    if len(rendered) > 1:
        info["modules"] = [r.module for r in rendered]
    if layer.accum_type is not None:
        info["accum_type"] = layer.accum_type.to_json()
    return info


def _parallel_chain(env: jinja2.Environment, graph: Graph, kinds: list[LayerKind], top: str,
                    opts: RenderOptions) -> tuple[list[_Stage], list[dict[str, Any]], dict[str, Any]]:
    """io_parallel: one module per layer, the whole vector on every bus; the top paces vectors to
    the slowest layer's II so every vector sees the same latency. With ``opts.fuse_activations``, a
    layer followed by an element-wise activation may apply it before its own output register
    (:meth:`LayerKind.render_fused`): the activation then has no module (:func:`_fused_info`)."""
    ii = max(1, *(kind.ii(layer) for kind, layer in zip(kinds, graph.layers)))
    src = "paced" if ii > 1 else "in"
    chain, layer_info = [], []
    layers, k, registered = graph.layers, 0, False
    while k < len(layers):
        kind, layer = kinds[k], layers[k]
        name = verilog_name(layer.name)
        module = f"{top}_{name}"
        lopts = replace(opts, registered_inputs=registered)
        nxt = layers[k + 1] if k + 1 < len(layers) else None
        act = kinds[k + 1].activation(nxt) if nxt is not None and opts.fuse_activations else None
        r = None
        if act is not None and nxt is not None and (nxt.n_in, nxt.in_type) == (layer.n_out, layer.out_type):
            r = kind.render_fused(env, layer, module, lopts, act)
        if r is None:
            r = kind.render(env, layer, module, lopts)
        fused = nxt if nxt is not None and r.extra.get("fused_activation") == nxt.name else None
        summary = f"{layer.name}: {layer.source}, latency {r.latency}, II {r.ii}"
        if fused is not None:
            summary += f"; {fused.name} ({fused.source}) fused into its output register"
        chain.append(_Stage(r, name, src, layer.n_out * (fused or layer).out_type.width, summary))
        info = _layer_info(layer, kind, [r], name)
        layer_info.append(info)
        if fused is not None:
            del info["probe"]  # its own result_t values are on no wire: the register holds the activation's
            layer_info.append(_fused_info(fused, kinds[k + 1], layer.name, module, name))
            k += 1
        registered = fused is not None
        src = f"{name}_out"
        k += 1
    assert ii == max(st.r.ii for st in chain)
    return chain, layer_info, {"latency": sum(st.r.latency for st in chain), "ii": ii}


def _fused_info(layer: Layer, kind: LayerKind, into: str, module: str, wire: str) -> dict[str, Any]:
    """design.json's entry of an activation fused into layer ``into``: no module of its own
    (``modules`` empty; ``module`` the one computing it), latency 0 as before, and probed at
    ``into``'s output wires, which carry its values now."""
    r = Rendered(module, "", 0, 1, 0, False, (),
                 {"architecture": f"fused into {into}'s output register", "fused_into": into})
    info = _layer_info(layer, kind, [r], wire)
    info["modules"] = []
    return info


def input_beats(graph: Graph) -> int:
    """Stream beats per image at the input of an io_stream graph: the first conv / pooling layer's
    input pixels (element-wise layers before it keep the beat), 1 for a network that starts with a
    Dense (the whole vector in one beat)."""
    for layer in graph.layers:
        if layer.geometry is not None:
            return layer.geometry.in_h * layer.geometry.in_w
        if layer.kind == "dense":
            return 1
    return 1


def _stream_chain(env: jinja2.Environment, graph: Graph, kinds: list[LayerKind], top: str,
                  opts: RenderOptions) -> tuple[list[_Stage], list[dict[str, Any]], dict[str, Any]]:
    """io_stream: each layer's modules (window generator, kernel, gather, ...) joined valid/ready,
    one pixel (all channels) per beat; a final gather when the last layer streams several beats.
    Latency and II per image come from the cycle model of those modules (stream_timing)."""
    beats_in = beats = input_beats(graph)
    chain, layer_info = [], []  # the stages' sources are wired once the FIFOs are in (_with_fifos)
    for kind, layer in zip(kinds, graph.layers):
        name = verilog_name(layer.name)
        if layer.n_in % beats:
            raise RtlGenError(f"layer {layer.name}: {layer.n_in} inputs do not split into {beats} stream beats")
        rendered = kind.render_stream(env, layer, f"{top}_{name}", opts, beats)
        first_stage = len(chain)
        beats_out = kind.beats_out(layer, beats)
        for k, r in enumerate(rendered):
            last = k == len(rendered) - 1
            wire = name if last else r.module[len(top) + 1:]
            out_bits = layer.n_out // beats_out * layer.out_type.width if last else _out_bits(r.text)
            chain.append(_Stage(r, wire, "", out_bits, f"{layer.name}: {layer.source}, {r.extra.get('architecture', r.module)}"))
        info = _layer_info(layer, kind, rendered, name)
        info["first_stage"] = first_stage  # (dropped once the FIFOs are placed)
        # the cycles per image it needs at least: one per beat in, R per output beat, one per
        # position of a window generator's padded raster
        raster = [r.handshake[1]["hp"] * r.handshake[1]["wp"] for r in rendered if r.handshake[0] == "window"]
        busy = max(beats, beats_out * rendered[-1].ii, *raster)
        info.update(beats_in=beats, beats_out=beats_out, busy_cycles_per_image=busy)
        del info["probe"]  # a layer's output is a stream of beats; the testbench probes vectors only
        layer_info.append(info)
        beats = beats_out
    if beats > 1:  # the image's last layer streams: its outputs leave as one vector
        last_layer = graph.layers[-1]
        pw = last_layer.n_out // beats * last_layer.out_type.width
        module = f"{top}_out_gather"
        text, handshake = stream_arch.gather(env, module, beats, pw, f"network output: {beats} beats -> one vector")
        r = Rendered(module, text, 1, 1, 0, True, (), {}, handshake)
        chain.append(_Stage(r, "out_gather", "", beats * pw, "output vector"))
    chain, fifos, t = _with_fifos(env, top, chain, layer_info, beats_in)
    if beats_in == 1 and t.ii == 1:
        chain[0].src = "in"
    slowest = max(layer_info, key=lambda i: i["busy_cycles_per_image"])
    stream = {"bottleneck": slowest["name"], "bottleneck_cycles_per_image": slowest["busy_cycles_per_image"],
              "fifos": fifos}
    return chain, layer_info, {"latency": t.latency, "ii": t.ii, "latency_after_last_pixel": t.latency_after_last_pixel,
                               "io_type": "io_stream", "stream": stream, "beats": beats_in}


def _with_fifos(env: jinja2.Environment, top: str, chain: list[_Stage], layer_info: list[dict[str, Any]],
                beats_in: int) -> tuple[list[_Stage], list[dict[str, Any]], stream_timing.Timing]:
    """The chain with the FIFOs the cycle model sizes (``stream_timing.size_fifos``), its sources
    rewired, the FIFOs as design.json lists them, and the network's timing. A FIFO may go in front
    of any module that is not element-wise (one in front of those is the same as one after them),
    its word the bits of the bus there."""
    handshakes = [st.r.handshake for st in chain]
    widths = {k: chain[k - 1].out_bits for k in range(1, len(chain)) if handshakes[k][0] != "comb"}
    busy = max(i["busy_cycles_per_image"] for i in layer_info)
    depths, t = stream_timing.size_fifos(handshakes, widths, beats_in, lower_bound=busy)
    starts = {i.pop("first_stage"): i["name"] for i in layer_info}
    owner, out, fifos = "", [], []
    for k, st in enumerate(chain):
        owner = starts.get(k, owner)
        if k in depths:
            wire = f"fifo_{len(fifos)}"
            text, handshake = stream_arch.fifo(env, f"{top}_{wire}", depths[k], widths[k],
                                               f"FIFO in front of {chain[k].r.module}")
            r = Rendered(f"{top}_{wire}", text, 1, 1, 0, True, (), {}, handshake)
            out.append(_Stage(r, wire, "", widths[k], f"FIFO, {depths[k]} x {widths[k]} bits"))
            fifos.append({"module": r.module, "before": chain[k].r.module, "layer": owner, "depth": depths[k],
                          "width_bits": widths[k], "bits": depths[k] * widths[k]})
        out.append(st)
    src = "paced"  # the first module's source; "in" once the schedule shows no pacing is needed
    for st in out:
        st.src, src = src, f"{st.wire}_out"
    return out, fifos, t


_OUT_PORT = re.compile(r"output wire \[(\d+):0\] out_data")


def _out_bits(verilog: str) -> int:
    """The out_data width a rendered module declares."""
    m = _OUT_PORT.search(verilog)
    if m is None:
        raise RtlGenError("a generated stream module declares no out_data port")
    return int(m.group(1)) + 1


def run(cfg: Config, run_dir: Path) -> dict[str, Any]:
    """The 'rtl' stage: ``<run>/hls/graph.json`` -> ``<run>/rtl/``."""
    hls_res = require(run_dir, "hls", "rtl")
    g = hwgraph.load(Path(run_dir) / "hls" / "graph.json")
    with stage_dir(run_dir, "rtl") as out:
        t0 = time.time()
        design = generate(g, out, levels_per_stage=cfg.rtl.levels_per_stage, adder_graph=cfg.rtl.adder_graph,
                          clock_period_ns=hls_res.get("clock_period_ns", cfg.hls.clock_period_ns),
                          fold_architecture=cfg.rtl.fold_architecture, multipliers=cfg.rtl.multipliers,
                          fuse_activations=cfg.rtl.fuse_activations)
        design_io.write(out, design)
        lines = sum(len((out / f).read_text().splitlines()) for f in design["files"])
        result = {"design_file": "design.json", "top": design["top"], "latency": design["latency"],
                  "ii": design["ii"], "multipliers": design["multipliers"],
                  "adders": design_io.total_adders(design), "verilog_lines": lines,
                  "generate_seconds": round(time.time() - t0, 3)}
        write_json(out / "result.json", result)
    return result
